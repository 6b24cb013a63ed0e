"""Grades lab 1's basics (labs/basics.py): exercises 1.1 to 1.3."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_close, value_after_the_call

# ---------------------------------------------------------------- 1.1 pairwise distances


@pytest.mark.ex1_1
def test_pairwise_squared_distances_by_hand(basics):
    X = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    Y = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    # row 0: 0, 9+16=25, 1;  row 1: 1+4=5, 4+4=8, 0+4=4
    expected = torch.tensor([[0.0, 25.0, 1.0], [5.0, 8.0, 4.0]])
    assert_close(basics.pairwise_squared_distances(X, Y), expected, "pairwise_squared_distances(X, Y)")


@pytest.mark.ex1_1
@settings(max_examples=20, deadline=None, derandomize=True)  # the same examples every run: grades repeat
@given(n=st.integers(1, 7), m=st.integers(1, 7), d=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_pairwise_squared_distances_matches_torch_cdist(basics, n, m, d, seed):
    g = torch.Generator().manual_seed(seed)
    X, Y = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(m, d, generator=g, dtype=torch.float64)
    assert_close(basics.pairwise_squared_distances(X, Y), torch.cdist(X, Y) ** 2, "pairwise_squared_distances", atol=1e-10)


@pytest.mark.ex1_1
def test_pairwise_squared_distances_is_exact_for_nearby_points(basics):
    # ||x||^2 - 2 x.y + ||y||^2 loses every digit here; the broadcast difference does not.
    X = torch.tensor([[1e4, 1e4]], dtype=torch.float32)
    Y = torch.tensor([[1e4 + 0.5, 1e4]], dtype=torch.float32)
    assert_close(basics.pairwise_squared_distances(X, Y), torch.tensor([[0.25]]), "distance between nearby points")


@pytest.mark.ex1_1
@pytest.mark.provided
def test_pairwise_squared_distances_rejects_mismatched_columns(basics):
    with pytest.raises(ValueError, match="columns"):
        basics.pairwise_squared_distances(torch.zeros(2, 3), torch.zeros(2, 4))


# ---------------------------------------------------------------- 1.2 one-hot


@pytest.mark.ex1_2
def test_one_hot_by_hand(basics):
    expected = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert_close(basics.one_hot(torch.tensor([2, 0, 2]), 3), expected, "one_hot([2, 0, 2], 3)")


@pytest.mark.ex1_2
def test_one_hot_matches_torch(basics):
    y = torch.randint(0, 10, (50,), generator=torch.Generator().manual_seed(0))
    result = basics.one_hot(y, 10)
    assert result.dtype == torch.float32, f"one_hot should return float32, got {result.dtype}"
    assert_close(result, torch.nn.functional.one_hot(y, 10).float(), "one_hot")


@pytest.mark.ex1_2
@pytest.mark.provided
@pytest.mark.parametrize("bad", [torch.tensor([0.0, 1.0]), torch.tensor([[0, 1]]), torch.tensor([0, 3])])
def test_one_hot_rejects_bad_labels(basics, bad):
    with pytest.raises(ValueError, match="one_hot expected"):
        basics.one_hot(bad, 3)


# ---------------------------------------------------------------- 1.3 regression step


def _regression_problem(seed=0, n=64, d=3):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64) + 0.3
    return X, y


@pytest.mark.ex1_3
def test_linear_regression_step_by_hand(basics):
    # One point x=1, y=3, from w=0, b=0: loss=9, dL/dw = dL/db = 2*(0-3) = -6, so w, b -> 0.6 with lr=0.1.
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    w_new, b_new, loss = basics.linear_regression_step(w, b, torch.ones(1, 1, dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64), 0.1)
    assert loss == pytest.approx(9.0), f"loss before the step should be 9.0, got {loss}"
    assert_close(w_new.detach(), torch.tensor([0.6], dtype=torch.float64), "w after one step")
    assert_close(b_new.detach(), torch.tensor(0.6, dtype=torch.float64), "b after one step")


@pytest.mark.ex1_3
def test_linear_regression_step_returns_fresh_leaves_and_leaves_inputs_alone(basics):
    X, y = _regression_problem()
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    w_new, b_new, _ = basics.linear_regression_step(w, b, X, y, 0.1)
    assert w_new.is_leaf and w_new.requires_grad, "w_new must be a leaf tensor with requires_grad=True"
    assert b_new.is_leaf and b_new.requires_grad, "b_new must be a leaf tensor with requires_grad=True"
    w, b = value_after_the_call(w), value_after_the_call(b)
    assert torch.all(w == 0) and b == 0, "the input tensors w and b must not be modified in place"


@pytest.mark.ex1_3
def test_linear_regression_steps_recover_the_true_weights(basics):
    X, y = _regression_problem()
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    losses = []
    for _ in range(200):
        w, b, loss = basics.linear_regression_step(w, b, X, y, 0.1)
        losses.append(loss)
    assert losses[-1] < 1e-8 < losses[0], f"the loss should fall to ~0, went from {losses[0]:.3g} to {losses[-1]:.3g}"
    assert_close(w.detach(), torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64), "fitted w", atol=1e-4)
    assert_close(b.detach(), torch.tensor(0.3, dtype=torch.float64), "fitted b", atol=1e-4)
