"""Grades lab 1's backpropagation (labs/mlp.py): exercises 1.4 to 1.14.

One mistake costs one exercise: a test whose function calls another exercise's function
(cross_entropy calls log_softmax, mlp_backward calls relu_grad, ...) first replaces that
function with a torch-built reference (`references(...)`), and tests build their own
parameters and caches with torch instead of calling init_mlp or mlp_forward.
Gradients are checked in float64 against autograd and against central differences computed
here (not with the numerical_gradient of exercise 1.13).
"""

import math
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_close, assert_leaves_inputs_unchanged, value_after_the_call

F64 = torch.float64

# ---------------------------------------------------------------- references and helpers

REFERENCES = {
    "softmax": lambda z, dim=-1: torch.softmax(z, dim=dim),
    "log_softmax": lambda z, dim=-1: torch.log_softmax(z, dim=dim),
    "relu": torch.relu,
    "relu_grad": lambda z: (z > 0).to(z.dtype),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    # exercise 1.2, in case a solution imports it (from .basics import one_hot) for 1.6:
    "one_hot": lambda y, num_classes: F.one_hot(y, num_classes).float(),
}


@contextmanager
def references(mlp, *names):
    """Replace other exercises' functions in the module under test by torch references."""
    with pytest.MonkeyPatch.context() as patch:
        for name in names:
            patch.setattr(mlp, name, REFERENCES[name], raising=False)
        yield


def random_params(sizes, seed, dtype=F64):
    """[(W_l, b_l)] built with torch, W_l (n_l, n_{l-1}): independent of exercise 1.9."""
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n_out, n_in, generator=g, dtype=dtype) / math.sqrt(n_in), torch.randn(n_out, generator=g, dtype=dtype) * 0.1)
        for n_in, n_out in zip(sizes[:-1], sizes[1:])
    ]


def reference_forward(params, X):
    """The forward pass of exercise 1.10 written with torch: logits and the documented cache."""
    A, Z = [X], []
    for W, b in params[:-1]:
        Z.append(A[-1] @ W.T + b)  # (N, n_{l-1}) @ (n_{l-1}, n_l) + (n_l,) -> (N, n_l)
        A.append(torch.relu(Z[-1]))  # (N, n_l)
    W, b = params[-1]
    return A[-1] @ W.T + b, (A, Z)  # (N, n_L)


def autograd_param_grads(params, X, dlogits):
    """Gradients of sum(logits * dlogits) for every parameter, by autograd: [(dW, db)]."""
    leaves = [(W.clone().requires_grad_(), b.clone().requires_grad_()) for W, b in params]
    logits, _ = reference_forward(leaves, X)
    (logits * dlogits).sum().backward()  # (N, n_L) * (N, n_L): upstream gradient dlogits
    return [(W.grad, b.grad) for W, b in leaves]


def central_differences(f, x, eps=1e-6):
    """The test's own finite differences: (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)."""
    x = x.detach().clone()
    flat = x.view(-1)  # (numel,), shares storage with x
    grad = torch.zeros_like(flat)
    for i in range(flat.numel()):
        keep = flat[i].item()
        flat[i] = keep + eps
        up = float(f(x))
        flat[i] = keep - eps
        down = float(f(x))
        flat[i] = keep
        grad[i] = (up - down) / (2 * eps)
    return grad.view(x.shape)  # (numel,) -> x.shape


def random_logits(n, c, seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=F64) * scale, torch.randint(0, c, (n,), generator=g)


layer_sizes = st.lists(st.integers(1, 6), min_size=2, max_size=5)


# ---------------------------------------------------------------- 1.4 softmax and log-softmax


@pytest.mark.ex1_4
def test_softmax_and_log_softmax_by_hand(mlp):
    # z = (0, ln 2, ln 3): exp(z) = (1, 2, 3), sum 6, so p = (1/6, 2/6, 3/6) and log p = log(1/6, 1/3, 1/2).
    z = torch.tensor([0.0, math.log(2), math.log(3)], dtype=F64)
    expected = torch.tensor([1 / 6, 2 / 6, 3 / 6], dtype=F64)
    assert_close(mlp.softmax(z), expected, "softmax([0, ln 2, ln 3])")
    assert_close(mlp.log_softmax(z), expected.log(), "log_softmax([0, ln 2, ln 3])")
    # Two rows: each row sums to 1 (along the last dim, the default); along dim 0 the numbers differ.
    # Row 2, (ln 3, 0, 0): exp = (3, 1, 1), sum 5, p = (3/5, 1/5, 1/5).
    Z = torch.tensor([[0.0, math.log(2), math.log(3)], [math.log(3), 0.0, 0.0]], dtype=F64)
    expected = torch.tensor([[1 / 6, 2 / 6, 3 / 6], [3 / 5, 1 / 5, 1 / 5]], dtype=F64)
    assert_close(mlp.softmax(Z), expected, "softmax of two rows, along the last dim")
    assert_close(mlp.log_softmax(Z), expected.log(), "log_softmax of two rows, along the last dim")


@pytest.mark.ex1_4
@settings(max_examples=25, deadline=None, derandomize=True)  # the same examples every run: grades repeat
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), data=st.data(), seed=st.integers(0, 2**16))
def test_softmax_and_log_softmax_match_torch_along_any_dim(mlp, shape, data, seed):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    z = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64) * 5
    assert_close(mlp.softmax(z, dim=dim), torch.softmax(z, dim=dim), f"softmax(z of shape {shape}, dim={dim})")
    assert_close(mlp.log_softmax(z, dim=dim), torch.log_softmax(z, dim=dim), f"log_softmax(z of shape {shape}, dim={dim})")


@pytest.mark.ex1_4
def test_softmax_uses_the_last_dim_by_default(mlp):
    z = torch.tensor([[1.0, 2.0, 3.0], [3.0, 0.0, 0.0]], dtype=F64)
    assert_close(mlp.softmax(z), torch.softmax(z, dim=-1), "softmax(z) without dim")
    assert_close(mlp.log_softmax(z), torch.log_softmax(z, dim=-1), "log_softmax(z) without dim")


@pytest.mark.ex1_4
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softmax_and_log_softmax_are_finite_for_extreme_logits(mlp, dtype):
    # exp(1000) and exp(1e4) overflow in both dtypes: only the max-shifted form is finite.
    z = torch.tensor([[1000.0, 0.0, -1000.0], [1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=dtype)
    assert_close(mlp.softmax(z), torch.softmax(z, dim=-1), f"softmax of extreme logits in {dtype}")
    # log p = z - max: (0, -1000, -2000), (0, -2e4, -1e4), and log(1/3) three times.
    assert_close(mlp.log_softmax(z), torch.log_softmax(z, dim=-1), f"log_softmax of extreme logits in {dtype}")


@pytest.mark.ex1_4
def test_softmax_and_log_softmax_leave_their_input_unchanged(mlp):
    for name in ("softmax", "log_softmax"):
        z = torch.tensor([[1.0, 3.0, -2.0], [0.5, 0.5, 4.0]], dtype=F64)
        assert_leaves_inputs_unchanged(getattr(mlp, name), {"z": z}, name)


@pytest.mark.ex1_4
@pytest.mark.provided
@pytest.mark.parametrize(
    "z, dim",
    [(torch.tensor([1, 2, 3]), -1), (torch.tensor(1.0), -1), (torch.zeros(2, 3), 2)],
    ids=["integer-logits", "scalar", "dim-out-of-range"],
)
def test_softmax_rejects_bad_input(mlp, z, dim):
    for function in (mlp.softmax, mlp.log_softmax):
        with pytest.raises(ValueError, match="softmax expected"):
            function(z, dim=dim)


# ---------------------------------------------------------------- 1.5 cross-entropy


@pytest.mark.ex1_5
def test_cross_entropy_by_hand(mlp):
    # Two examples, three classes, so that each usual slip gives another number:
    # row 1: logits (0, ln 2, ln 3), exp = (1, 2, 3), p = (1/6, 2/6, 3/6), target 2: -ln(1/2) = ln 2;
    # row 2: logits (ln 3, 0, 0), exp = (3, 1, 1), p = (3/5, 1/5, 1/5), target 0: -ln(3/5) = ln(5/3).
    # Mean: (ln 2 + ln(5/3)) / 2 = ln(10/3) / 2 = 0.6020. The sum instead of the mean gives 1.2040;
    # log-softmax along dim 0 (columns) gives -ln(3/4) for both rows, 0.2877.
    logits = torch.tensor([[0.0, math.log(2), math.log(3)], [math.log(3), 0.0, 0.0]], dtype=F64)
    with references(mlp, "softmax", "log_softmax"):
        loss = mlp.cross_entropy(logits, torch.tensor([2, 0]))
    assert_close(loss, torch.tensor(math.log(10 / 3) / 2, dtype=F64), "cross_entropy (the mean of ln 2 and ln(5/3))")


@pytest.mark.ex1_5
@settings(max_examples=25, deadline=None, derandomize=True)  # the same examples every run: grades repeat
@given(n=st.integers(1, 8), c=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_cross_entropy_matches_torch(mlp, n, c, seed):
    logits, targets = random_logits(n, c, seed)
    with references(mlp, "softmax", "log_softmax"):
        loss = mlp.cross_entropy(logits, targets)
    assert_close(loss, F.cross_entropy(logits, targets), f"cross_entropy of {n} examples and {c} classes")


@pytest.mark.ex1_5
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cross_entropy_is_finite_for_extreme_logits(mlp, dtype):
    # Losses: target 1 of (1e4, -1e4, 0) costs 2e4; target 0 of (1000, 0, -1000) costs ~0;
    # target 2 of (1000, 0, -1000) costs 2000. Mean (2e4 + 0 + 2000) / 3.
    logits = torch.tensor([[1e4, -1e4, 0.0], [1000.0, 0.0, -1000.0], [1000.0, 0.0, -1000.0]], dtype=dtype)
    targets = torch.tensor([1, 0, 2])
    with references(mlp, "softmax", "log_softmax"):
        loss = mlp.cross_entropy(logits, targets)
    assert_close(loss, torch.tensor(22000.0 / 3, dtype=dtype), f"cross_entropy of extreme logits in {dtype}", rtol=1e-6)


@pytest.mark.ex1_5
@pytest.mark.provided
@pytest.mark.parametrize(
    "logits, targets, message",
    [
        (torch.zeros(3), torch.tensor([0, 1, 2]), r"logits of shape \(N, C\)"),
        (torch.zeros(3, 2, dtype=torch.int64), torch.tensor([0, 1, 1]), "floating-point logits"),
        (torch.zeros(3, 2), torch.tensor([0.0, 1.0, 1.0]), "integer class targets"),
        (torch.zeros(3, 2), torch.tensor([[0, 1, 1]]), r"targets of shape \(N,\)"),
        (torch.zeros(3, 2), torch.tensor([0, 1]), "3 targets to match logits"),
        (torch.zeros(3, 2), torch.tensor([0, 1, 2]), r"targets in \[0, 2\)"),
        (torch.zeros(3, 2), torch.tensor([0, -1, 1]), r"targets in \[0, 2\)"),
    ],
    ids=["1d-logits", "integer-logits", "float-targets", "2d-targets", "batch-mismatch", "target-too-large", "negative-target"],
)
def test_cross_entropy_and_its_gradient_reject_bad_input(mlp, logits, targets, message):
    for function in (mlp.cross_entropy, mlp.cross_entropy_grad):
        with pytest.raises(ValueError, match=f"{function.__name__} expected.*{message}"):
            function(logits, targets)


# ---------------------------------------------------------------- 1.6 gradient of cross-entropy


@pytest.mark.ex1_6
def test_cross_entropy_grad_by_hand(mlp):
    # The logits of test_cross_entropy_by_hand: P = [[1/6, 2/6, 3/6], [3/5, 1/5, 1/5]], targets (2, 0),
    # P - Y = [[1/6, 1/3, -1/2], [-2/5, 1/5, 1/5]], and N = 2: (P - Y) / 2 = [[1/12, 1/6, -1/4], [-1/5, 1/10, 1/10]].
    # Without the 1/N every entry doubles; softmax along dim 0 gives other numbers altogether.
    logits = torch.tensor([[0.0, math.log(2), math.log(3)], [math.log(3), 0.0, 0.0]], dtype=F64)
    with references(mlp, "softmax", "log_softmax", "one_hot"):
        grad = mlp.cross_entropy_grad(logits, torch.tensor([2, 0]))
    expected = torch.tensor([[1 / 12, 1 / 6, -1 / 4], [-1 / 5, 1 / 10, 1 / 10]], dtype=F64)
    assert_close(grad, expected, "cross_entropy_grad, (P - Y) / N")


@pytest.mark.ex1_6
@settings(max_examples=25, deadline=None, derandomize=True)  # the same examples every run: grades repeat
@given(n=st.integers(1, 8), c=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_cross_entropy_grad_matches_autograd(mlp, n, c, seed):
    logits, targets = random_logits(n, c, seed)
    leaf = logits.clone().requires_grad_()
    F.cross_entropy(leaf, targets).backward()
    with references(mlp, "softmax", "log_softmax", "one_hot"):
        grad = mlp.cross_entropy_grad(logits, targets)
    assert_close(grad, leaf.grad, f"cross_entropy_grad against autograd ({n} examples, {c} classes)")


@pytest.mark.ex1_6
def test_cross_entropy_grad_matches_finite_differences(mlp):
    logits, targets = random_logits(5, 4, seed=1)
    numeric = central_differences(lambda z: F.cross_entropy(z, targets), logits)
    with references(mlp, "softmax", "log_softmax", "one_hot"):
        grad = mlp.cross_entropy_grad(logits, targets)
    assert_close(grad, numeric, "cross_entropy_grad against central differences", rtol=1e-6, atol=1e-8)


@pytest.mark.ex1_6
def test_cross_entropy_grad_is_finite_for_extreme_logits(mlp):
    logits = torch.tensor([[1e4, -1e4, 0.0], [1000.0, 0.0, -1000.0]])
    targets = torch.tensor([1, 0])
    leaf = logits.clone().requires_grad_()
    F.cross_entropy(leaf, targets).backward()
    with references(mlp, "softmax", "log_softmax", "one_hot"):
        grad = mlp.cross_entropy_grad(logits, targets)
    # Row 1: p = (1, 0, 0), y = (0, 1, 0): (1, -1, 0) / 2.  Row 2: p = y = (1, 0, 0): zeros.
    assert_close(grad, leaf.grad, "cross_entropy_grad of extreme logits")


# ---------------------------------------------------------------- 1.7 softmax Jacobian


@pytest.mark.ex1_7
def test_softmax_jacobian_by_hand(mlp):
    # z = (0, 0): p = (1/2, 1/2); diag(p) - p p^T = [[1/2 - 1/4, -1/4], [-1/4, 1/2 - 1/4]].
    with references(mlp, "softmax", "log_softmax"):
        J = mlp.softmax_jacobian(torch.zeros(2, dtype=F64))
    assert_close(J, torch.tensor([[0.25, -0.25], [-0.25, 0.25]], dtype=F64), "softmax_jacobian((0, 0))")


@pytest.mark.ex1_7
@settings(max_examples=25, deadline=None, derandomize=True)  # the same examples every run: grades repeat
@given(c=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_softmax_jacobian_matches_autograd(mlp, c, seed):
    z = torch.randn(c, generator=torch.Generator().manual_seed(seed), dtype=F64) * 2
    expected = torch.autograd.functional.jacobian(lambda v: torch.softmax(v, dim=0), z)
    with references(mlp, "softmax", "log_softmax"):
        J = mlp.softmax_jacobian(z)
    assert_close(J, expected, f"softmax_jacobian of {c} logits against autograd")


@pytest.mark.ex1_7
def test_softmax_jacobian_matches_finite_differences(mlp):
    z = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=F64)
    with references(mlp, "softmax", "log_softmax"):
        J = mlp.softmax_jacobian(z)
    for i in range(4):  # row i of J is the gradient of p_i
        numeric = central_differences(lambda v: torch.softmax(v, dim=0)[i], z)
        assert_close(J[i], numeric, f"row {i} of softmax_jacobian against central differences", rtol=1e-6, atol=1e-8)


@pytest.mark.ex1_7
@pytest.mark.provided
@pytest.mark.parametrize("z", [torch.zeros(2, 3), torch.tensor([1, 2])], ids=["matrix", "integers"])
def test_softmax_jacobian_rejects_anything_but_a_float_vector(mlp, z):
    with pytest.raises(ValueError, match=r"softmax_jacobian expected .*vector of logits"):
        mlp.softmax_jacobian(z)


# ---------------------------------------------------------------- 1.8 activations

ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


@pytest.mark.ex1_8
def test_activations_and_derivatives_by_hand(mlp):
    z = torch.tensor([-2.0, 0.0, 3.0], dtype=F64)
    assert_close(mlp.relu(z), torch.tensor([0.0, 0.0, 3.0], dtype=F64), "relu([-2, 0, 3])")
    # relu'(0) is taken as 0, like autograd.
    assert_close(mlp.relu_grad(z), torch.tensor([0.0, 0.0, 1.0], dtype=F64), "relu_grad([-2, 0, 3])")
    # sigmoid(ln 3) = 1 / (1 + 1/3) = 3/4, sigmoid' = 3/4 * 1/4 = 3/16; sigmoid(0) = 1/2, sigmoid'(0) = 1/4.
    z = torch.tensor([0.0, math.log(3)], dtype=F64)
    assert_close(mlp.sigmoid(z), torch.tensor([0.5, 0.75], dtype=F64), "sigmoid([0, ln 3])")
    assert_close(mlp.sigmoid_grad(z), torch.tensor([0.25, 3 / 16], dtype=F64), "sigmoid_grad([0, ln 3])")
    # tanh(ln 2) = (2 - 1/2) / (2 + 1/2) = 3/5, tanh' = 1 - 9/25 = 16/25; tanh(0) = 0, tanh'(0) = 1.
    z = torch.tensor([0.0, math.log(2)], dtype=F64)
    assert_close(mlp.tanh(z), torch.tensor([0.0, 0.6], dtype=F64), "tanh([0, ln 2])")
    assert_close(mlp.tanh_grad(z), torch.tensor([1.0, 0.64], dtype=F64), "tanh_grad([0, ln 2])")


@pytest.mark.ex1_8
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_and_derivatives_match_autograd(mlp, name):
    z = torch.randn(4, 7, generator=torch.Generator().manual_seed(3), dtype=F64) * 3
    leaf = z.clone().requires_grad_()
    ACTIVATIONS[name](leaf).sum().backward()  # elementwise: the gradient of the sum is the derivative
    assert_close(getattr(mlp, name)(z), ACTIVATIONS[name](z), f"{name}(z)")
    assert_close(getattr(mlp, f"{name}_grad")(z), leaf.grad, f"{name}_grad(z) against autograd")


@pytest.mark.ex1_8
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivatives_match_finite_differences(mlp, name):
    z = torch.tensor([-2.5, -0.7, 0.3, 1.9], dtype=F64)  # away from relu's kink at 0
    numeric = central_differences(lambda v: ACTIVATIONS[name](v).sum(), z)
    assert_close(getattr(mlp, f"{name}_grad")(z), numeric, f"{name}_grad against central differences", rtol=1e-6, atol=1e-8)


@pytest.mark.ex1_8
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_are_finite_for_large_inputs(mlp, name):
    z = torch.tensor([-1000.0, -100.0, 100.0, 1000.0])  # float32: exp(1000) overflows
    leaf = z.clone().requires_grad_()
    ACTIVATIONS[name](leaf).sum().backward()
    assert_close(getattr(mlp, name)(z), ACTIVATIONS[name](z), f"{name} of large inputs")
    assert_close(getattr(mlp, f"{name}_grad")(z), leaf.grad, f"{name}_grad of large inputs")


@pytest.mark.ex1_8
def test_activations_and_derivatives_leave_their_input_unchanged(mlp):
    for name in sorted(ACTIVATIONS):
        for function in (name, f"{name}_grad"):
            z = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], dtype=F64)
            assert_leaves_inputs_unchanged(getattr(mlp, function), {"z": z}, function)


# ---------------------------------------------------------------- 1.9 initialisation


@pytest.mark.ex1_9
def test_init_mlp_gives_shapes_dtype_and_zero_biases(mlp):
    params = mlp.init_mlp([3, 4, 2], torch.Generator().manual_seed(0))
    assert len(params) == 2, f"init_mlp([3, 4, 2]) should return 2 layers, got {len(params)}"
    for (W, b), shape in zip(params, [(4, 3), (2, 4)]):
        assert tuple(W.shape) == shape and tuple(b.shape) == shape[:1], f"expected W {shape} and b {shape[:1]}, got {tuple(W.shape)} and {tuple(b.shape)}"
        assert W.dtype == b.dtype == torch.float32, f"init_mlp should default to float32, got {W.dtype} and {b.dtype}"
        assert_close(b, torch.zeros(shape[0]), "initial biases")
    W, b = mlp.init_mlp([3, 2], dtype=F64)[0]
    assert W.dtype == b.dtype == F64, f"init_mlp(dtype=torch.float64) gave {W.dtype} and {b.dtype}"


@pytest.mark.ex1_9
def test_init_mlp_is_reproducible_with_a_generator(mlp):
    first = mlp.init_mlp([5, 4, 3], torch.Generator().manual_seed(7))
    again = mlp.init_mlp([5, 4, 3], torch.Generator().manual_seed(7))
    other = mlp.init_mlp([5, 4, 3], torch.Generator().manual_seed(8))
    for l, ((W1, _), (W2, _), (W3, _)) in enumerate(zip(first, again, other), start=1):
        assert_close(W2, W1, f"W_{l} from the same seed")
        assert not torch.equal(W3, W1), f"W_{l} is the same for two different seeds"


@pytest.mark.ex1_9
def test_init_mlp_uses_he_for_hidden_layers_and_lecun_for_the_output(mlp):
    # std(W_1) = sqrt(2/1000) ~ 0.0447 over 200,000 draws; std(W_2) = sqrt(1/200) ~ 0.0707 over 2,000 draws.
    (W1, _), (W2, _) = mlp.init_mlp([1000, 200, 10], torch.Generator().manual_seed(0), dtype=F64)
    for W, std, what, tolerance in [(W1, math.sqrt(2 / 1000), "hidden layer W_1 (He)", 0.02), (W2, math.sqrt(1 / 200), "output layer W_2 (LeCun)", 0.08)]:
        assert abs(W.mean().item()) < 4 * std / math.sqrt(W.numel()), f"{what} should have mean 0, got {W.mean().item():.3g}"
        assert abs(W.std().item() / std - 1) < tolerance, f"{what} should have std {std:.4g}, got {W.std().item():.4g}"


@pytest.mark.ex1_9
@pytest.mark.provided
@pytest.mark.parametrize("sizes", [[784], [784, 0, 10], [784, 2.5, 10]], ids=["one-size", "zero", "float"])
def test_init_mlp_rejects_bad_sizes(mlp, sizes):
    with pytest.raises(ValueError, match="init_mlp expected layer sizes"):
        mlp.init_mlp(sizes)


# ---------------------------------------------------------------- 1.10 forward pass


def tiny_network():
    """W_1 = [[1, -1], [2, 0]], b_1 = (0, -1), W_2 = [[1, 1]], b_2 = (0.5), X = [[1, 2]]."""
    params = [
        (torch.tensor([[1.0, -1.0], [2.0, 0.0]], dtype=F64), torch.tensor([0.0, -1.0], dtype=F64)),
        (torch.tensor([[1.0, 1.0]], dtype=F64), torch.tensor([0.5], dtype=F64)),
    ]
    return params, torch.tensor([[1.0, 2.0]], dtype=F64)


@pytest.mark.ex1_10
def test_mlp_forward_by_hand(mlp):
    # Z_1 = (1 - 2 + 0, 2 + 0 - 1) = (-1, 1); A_1 = relu(Z_1) = (0, 1); logits = 0 + 1 + 0.5 = 1.5.
    params, X = tiny_network()
    with references(mlp, "relu", "relu_grad"):
        logits, (A, Z) = mlp.mlp_forward(params, X)
    assert_close(logits, torch.tensor([[1.5]], dtype=F64), "logits")
    assert len(A) == 2 and len(Z) == 1, f"the cache of a 2-layer MLP holds 2 layer inputs and 1 hidden Z, got {len(A)} and {len(Z)}"
    assert_close(A[0], X, "cache A_0 (the input X)")
    assert_close(A[1], torch.tensor([[0.0, 1.0]], dtype=F64), "cache A_1")
    assert_close(Z[0], torch.tensor([[-1.0, 1.0]], dtype=F64), "cache Z_1")


@pytest.mark.ex1_10
@settings(max_examples=25, deadline=None, derandomize=True)  # the same examples every run: grades repeat
@given(sizes=layer_sizes, n=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_mlp_forward_matches_torch_and_caches_what_backward_needs(mlp, sizes, n, seed):
    params = random_params(sizes, seed)
    X = torch.randn(n, sizes[0], generator=torch.Generator().manual_seed(seed + 1), dtype=F64)
    with references(mlp, "relu", "relu_grad"):
        logits, (A, Z) = mlp.mlp_forward(params, X)
    expected, (A_ref, Z_ref) = reference_forward(params, X)
    assert_close(logits, expected, f"logits of the MLP {sizes}")
    assert len(A) == len(A_ref) and len(Z) == len(Z_ref), (
        f"the cache of the MLP {sizes} should hold {len(A_ref)} layer inputs and {len(Z_ref)} hidden pre-activations, got {len(A)} and {len(Z)}"
    )
    for l, (actual, reference) in enumerate(zip(A, A_ref)):
        assert_close(actual, reference, f"cache A_{l}")
    for l, (actual, reference) in enumerate(zip(Z, Z_ref), start=1):
        assert_close(actual, reference, f"cache Z_{l}")


@pytest.mark.ex1_10
def test_mlp_forward_matches_torch_in_float32_at_mnist_size(mlp):
    params = random_params([784, 64, 10], seed=0, dtype=torch.float32)
    X = torch.rand(32, 784, generator=torch.Generator().manual_seed(1))
    with references(mlp, "relu", "relu_grad"):
        logits, _ = mlp.mlp_forward(params, X)
    assert_close(logits, reference_forward(params, X)[0], "logits of a 784-64-10 MLP in float32", rtol=1e-4, atol=1e-5)


@pytest.mark.ex1_10
@pytest.mark.provided
def test_mlp_forward_rejects_inputs_and_layers_that_do_not_fit(mlp):
    params = random_params([4, 3, 2], seed=0)
    with pytest.raises(ValueError, match=r"mlp_forward expected X of shape \(N, 4\)"):
        mlp.mlp_forward(params, torch.zeros(5, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"mlp_forward expected X of shape \(N, 4\)"):
        mlp.mlp_forward(params, torch.zeros(4, dtype=F64))
    with pytest.raises(ValueError, match="mlp_forward expected W_2 to have 3 columns"):
        mlp.mlp_forward([params[0], random_params([4, 2], seed=1)[0]], torch.zeros(5, 4, dtype=F64))


# ---------------------------------------------------------------- 1.11 backward pass


@pytest.mark.ex1_11
def test_mlp_backward_by_hand(mlp):
    # Forward (see the 1.10 case): X = (1, 2), Z_1 = (-1, 1), A_1 = (0, 1), logits = 1.5; take dlogits = 1.
    # delta_2 = 1:  dW_2 = delta_2^T A_1 = [[0, 1]],  db_2 = (1).
    # delta_1 = (delta_2 W_2) * relu'(Z_1) = (1, 1) * (0, 1) = (0, 1):  dW_1 = delta_1^T X = [[0, 0], [1, 2]],  db_1 = (0, 1).
    params, X = tiny_network()
    _, cache = reference_forward(params, X)
    with references(mlp, "relu", "relu_grad"):
        (dW1, db1), (dW2, db2) = mlp.mlp_backward(params, cache, torch.ones(1, 1, dtype=F64))
    assert_close(dW2, torch.tensor([[0.0, 1.0]], dtype=F64), "dW_2")
    assert_close(db2, torch.tensor([1.0], dtype=F64), "db_2")
    assert_close(dW1, torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=F64), "dW_1 (relu'(Z_1) zeroes the first row)")
    assert_close(db1, torch.tensor([0.0, 1.0], dtype=F64), "db_1")


@pytest.mark.ex1_11
@settings(max_examples=25, deadline=None, derandomize=True)  # the same examples every run: grades repeat
@given(sizes=layer_sizes, n=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_mlp_backward_matches_autograd(mlp, sizes, n, seed):
    params = random_params(sizes, seed)
    g = torch.Generator().manual_seed(seed + 1)
    X = torch.randn(n, sizes[0], generator=g, dtype=F64)
    dlogits = torch.randn(n, sizes[-1], generator=g, dtype=F64)  # any upstream gradient
    _, cache = reference_forward(params, X)
    with references(mlp, "relu", "relu_grad"):
        grads = mlp.mlp_backward(params, cache, dlogits)
    expected = autograd_param_grads(params, X, dlogits)
    assert len(grads) == len(params), f"mlp_backward should return one (dW, db) per layer: {len(params)}, got {len(grads)}"
    for l, ((dW, db), (dW_ref, db_ref)) in enumerate(zip(grads, expected), start=1):
        assert_close(dW, dW_ref, f"dW_{l} of the MLP {sizes} against autograd")
        assert_close(db, db_ref, f"db_{l} of the MLP {sizes} against autograd")


@pytest.mark.ex1_11
def test_mlp_backward_with_cross_entropy_matches_finite_differences(mlp):
    sizes = [4, 5, 3, 3]
    params = random_params(sizes, seed=2)
    g = torch.Generator().manual_seed(3)
    X, y = torch.randn(6, 4, generator=g, dtype=F64), torch.randint(0, 3, (6,), generator=g)
    logits, cache = reference_forward(params, X)
    leaf = logits.detach().clone().requires_grad_()
    F.cross_entropy(leaf, y).backward()
    with references(mlp, "relu", "relu_grad"):
        grads = mlp.mlp_backward(params, cache, leaf.grad)
    for l in range(len(params)):
        for k, name in enumerate(("W", "b")):

            def loss(value, l=l, k=k):
                trial = [list(pair) for pair in params]
                trial[l][k] = value
                return F.cross_entropy(reference_forward(trial, X)[0], y)

            numeric = central_differences(loss, params[l][k])
            assert_close(grads[l][k], numeric, f"d{name}_{l + 1} against central differences", rtol=1e-6, atol=1e-8)


@pytest.mark.ex1_11
def test_mlp_backward_of_a_single_linear_layer(mlp):
    # One layer: dW = dlogits^T X and db = column sums of dlogits; no activation is involved.
    params = random_params([3, 2], seed=4)
    X = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]], dtype=F64)
    dlogits = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64)
    with references(mlp, "relu", "relu_grad"):
        ((dW, db),) = mlp.mlp_backward(params, ([X], []), dlogits)
    # dW = [[1*1 + 3*0, 1*0 + 3*1, 1*2 + 3*(-1)], [2*1 + 4*0, 2*0 + 4*1, 2*2 + 4*(-1)]]
    assert_close(dW, torch.tensor([[1.0, 3.0, -1.0], [2.0, 4.0, 0.0]], dtype=F64), "dW of one linear layer")
    assert_close(db, torch.tensor([4.0, 6.0], dtype=F64), "db of one linear layer")


@pytest.mark.ex1_11
@pytest.mark.provided
def test_mlp_backward_rejects_dlogits_and_caches_that_do_not_fit(mlp):
    params = random_params([4, 3, 2], seed=0)
    _, cache = reference_forward(params, torch.zeros(5, 4, dtype=F64))
    with pytest.raises(ValueError, match=r"mlp_backward expected dlogits of shape \(N, n_L\) = \(5, 2\)"):
        mlp.mlp_backward(params, cache, torch.zeros(5, 3, dtype=F64))
    with pytest.raises(ValueError, match="mlp_backward expected a cache"):
        mlp.mlp_backward(params, (cache[0], []), torch.zeros(5, 2, dtype=F64))


# ---------------------------------------------------------------- 1.12 SGD step


@pytest.mark.ex1_12
def test_sgd_step_by_hand(mlp):
    # W = (1, 2) - 0.1 * (10, -10) = (0, 3);  b = 1 - 0.1 * 2 = 0.8.
    params = [(torch.tensor([[1.0, 2.0]], dtype=F64), torch.tensor([1.0], dtype=F64))]
    grads = [(torch.tensor([[10.0, -10.0]], dtype=F64), torch.tensor([2.0], dtype=F64))]
    ((W, b),) = mlp.sgd_step(params, grads, lr=0.1)
    assert_close(W, torch.tensor([[0.0, 3.0]], dtype=F64), "W after one step")
    assert_close(b, torch.tensor([0.8], dtype=F64), "b after one step")


@pytest.mark.ex1_12
def test_sgd_step_updates_every_layer_and_leaves_the_inputs_alone(mlp):
    params = random_params([4, 3, 2], seed=0)
    grads = random_params([4, 3, 2], seed=1)
    before = [(W.clone(), b.clone()) for W, b in params]
    new = mlp.sgd_step(params, grads, lr=0.5)
    assert len(new) == 2, f"sgd_step should return 2 layers, got {len(new)}"
    for l, ((W, b), (W0, b0), (dW, db)) in enumerate(zip(new, before, grads), start=1):
        assert_close(W, W0 - 0.5 * dW, f"W_{l} after the step")
        assert_close(b, b0 - 0.5 * db, f"b_{l} after the step")
    for l, ((W, b), (W0, b0)) in enumerate(zip(params, before), start=1):
        W, b = value_after_the_call(W), value_after_the_call(b)
        assert torch.equal(W, W0) and torch.equal(b, b0), f"sgd_step modified the input parameters of layer {l} in place"


@pytest.mark.ex1_12
@pytest.mark.provided
def test_sgd_step_rejects_gradients_that_do_not_fit(mlp):
    params = random_params([4, 3, 2], seed=0)
    with pytest.raises(ValueError, match="sgd_step expected one"):
        mlp.sgd_step(params, params[:1], lr=0.1)
    with pytest.raises(ValueError, match="sgd_step expected gradients shaped like layer 1"):
        mlp.sgd_step(params, [(params[0][0].T, params[0][1]), params[1]], lr=0.1)
    with pytest.raises(ValueError, match="sgd_step expected a positive learning rate"):
        mlp.sgd_step(params, params, lr=-0.1)


# ---------------------------------------------------------------- 1.13 numerical gradient


@pytest.mark.ex1_13
def test_numerical_gradient_by_hand_is_a_central_difference(mlp):
    # f(x) = x^3 at x = 2 with eps = 0.1: (2.1^3 - 1.9^3) / 0.2 = (9.261 - 6.859) / 0.2 = 12.01
    # (the exact 12 plus eps^2); a forward difference would give (9.261 - 8) / 0.1 = 12.61.
    x = torch.tensor([2.0, -1.0], dtype=F64)
    grad = mlp.numerical_gradient(lambda v: (v**3).sum(), x, eps=0.1)
    # at -1: ((-0.9)^3 - (-1.1)^3) / 0.2 = (-0.729 + 1.331) / 0.2 = 3.01
    assert_close(grad, torch.tensor([12.01, 3.01], dtype=F64), "numerical_gradient of sum(x^3) with eps=0.1", rtol=1e-9, atol=1e-9)


@pytest.mark.ex1_13
@settings(max_examples=20, deadline=None, derandomize=True)  # the same examples every run: grades repeat
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_numerical_gradient_matches_autograd(mlp, shape, seed):
    g = torch.Generator().manual_seed(seed)
    x, weights = torch.randn(*shape, generator=g, dtype=F64), torch.randn(*shape, generator=g, dtype=F64)

    def f(v):
        return (torch.sin(v) * weights).sum() + (v**2).sum() * 0.5  # a smooth scalar

    leaf = x.clone().requires_grad_()
    f(leaf).backward()
    grad = mlp.numerical_gradient(f, x)
    assert_close(grad, leaf.grad, f"numerical_gradient for x of shape {shape} against autograd", rtol=1e-6, atol=1e-7)


@pytest.mark.ex1_13
def test_numerical_gradient_leaves_x_alone_and_accepts_python_floats(mlp):
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64)
    before = x.clone()
    grad = mlp.numerical_gradient(lambda v: float((v * v).sum()), x, eps=1e-5)  # d/dx sum x^2 = 2x
    assert torch.equal(x, before), "numerical_gradient modified its input x"
    assert_close(grad, 2 * x, "numerical_gradient of sum(x^2)", rtol=1e-8, atol=1e-8)


@pytest.mark.ex1_13
@pytest.mark.provided
def test_numerical_gradient_rejects_integer_points_and_vector_functions(mlp):
    with pytest.raises(ValueError, match="numerical_gradient expected a floating-point tensor"):
        mlp.numerical_gradient(lambda v: v.sum(), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="numerical_gradient expected f to return a scalar"):
        mlp.numerical_gradient(lambda v: v * 2, torch.tensor([1.0, 2.0], dtype=F64))


# ---------------------------------------------------------------- 1.14 cost of backprop


@pytest.mark.ex1_14
def test_mlp_flops_and_memory_by_hand(mlp):
    # FLOPs: 2 * (784*100 + 100*10) = 2 * (78,400 + 1,000) = 158,800.
    assert mlp.mlp_flops([784, 100, 10]) == 158_800, f"mlp_flops([784, 100, 10]) should be 158800, got {mlp.mlp_flops([784, 100, 10])}"
    # Memory: N (n_0 + 2 (n_1 + n_2)) = 32 * (784 + 2 * 150) = 32 * 1084 = 34,688 values.
    got = mlp.mlp_activation_memory([784, 100, 50, 10], 32)
    assert got == 34_688, f"mlp_activation_memory([784, 100, 50, 10], 32) should be 34688, got {got}"


@pytest.mark.ex1_14
@pytest.mark.parametrize("sizes", [[1, 1], [3, 5, 2], [784, 100, 10], [6, 1, 4, 2, 3]])
def test_mlp_flops_matches_torch_flop_counter(mlp, sizes):
    flops = mlp.mlp_flops(sizes)
    from torch.utils.flop_counter import FlopCounterMode  # slow to import: after the call under test

    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, sizes[0]))
    assert flops == counter.get_total_flops(), f"mlp_flops({sizes}) = {flops}, torch counts {counter.get_total_flops()}"


@pytest.mark.ex1_14
@settings(max_examples=20, deadline=None, derandomize=True)  # the same examples every run: grades repeat
@given(sizes=layer_sizes, n=st.integers(1, 9))
def test_mlp_activation_memory_counts_the_cache(mlp, sizes, n):
    _, (A, Z) = reference_forward(random_params(sizes, seed=0), torch.zeros(n, sizes[0], dtype=F64))
    stored = sum(t.numel() for t in A + Z)
    got = mlp.mlp_activation_memory(sizes, n)
    assert got == stored, f"mlp_activation_memory({sizes}, {n}) = {got}, but the forward pass caches {stored} values"


@pytest.mark.ex1_14
@pytest.mark.provided
def test_cost_functions_reject_bad_sizes(mlp):
    with pytest.raises(ValueError, match="mlp_flops expected layer sizes"):
        mlp.mlp_flops([10])
    with pytest.raises(ValueError, match="mlp_activation_memory expected layer sizes"):
        mlp.mlp_activation_memory([10, -1], 4)
    with pytest.raises(ValueError, match="mlp_activation_memory expected a positive integer batch_size"):
        mlp.mlp_activation_memory([10, 2], 0)
