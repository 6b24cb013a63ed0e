"""Grades lab 2's convolutions and pooling (labs/conv.py): exercises 2.1 to 2.8.

Each exercise is checked first on a case small enough to compute by hand (the lecture's own
examples), then against torch.nn.functional and autograd in float64 over sweeps of stride,
padding, dilation, groups, channels, batch and non-square shapes, then on edge cases. Where a
function under test calls another exercise's function (Conv2d calls conv2d and
conv2d_backward), the test swaps that one for a torch-built reference, so one mistake costs
one exercise.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from labs.grader.worker import probes, references
from tests.helpers import assert_close, assert_leaves_inputs_unchanged, in_worker

F64 = torch.float64

# torch warns that F.conv*d copies the input for padding="same" with an even kernel: that is the case we test.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")


def _randn(*shape, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64).requires_grad_(requires_grad)


def _t(values):
    return torch.tensor(values, dtype=F64)


# The torch stand-ins for conv2d and conv2d_backward live in the provided code, so that during
# grading the worker runs them itself instead of calling back into this process at every step.
_torch_conv2d = references.conv2d
_torch_conv2d_backward = references.conv2d_backward


class _TorchConvWithYourBackward(torch.autograd.Function):
    """F.conv2d forward, the student's conv2d_backward backward: what gradcheck examines."""

    @staticmethod
    def forward(ctx, x, w, b, backward, options):
        ctx.save_for_backward(x, w)
        ctx.backward, ctx.options = backward, options
        return F.conv2d(x, w, b, *options)

    @staticmethod
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        dx, dw, db = ctx.backward(dout, x, w, *ctx.options)
        return dx, dw, db, None, None


class _TorchPoolWithYourBackward(torch.autograd.Function):
    """A torch pooling forward with the student's pooling backward, for gradcheck."""

    @staticmethod
    def forward(ctx, x, forward, backward, options):
        ctx.save_for_backward(x)
        ctx.backward, ctx.options = backward, options
        return forward(x, *options)

    @staticmethod
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        return ctx.backward(dout, x, *ctx.options), None, None, None


# ---------------------------------------------------------------- 2.1 conv1d_naive


@pytest.mark.ex2_1
def test_conv1d_naive_lecture_example(conv):
    # [1, 2, 3, 4, 5] * [1, 0, -1]: 1-3, 2-4, 3-5 = [-2, -2, -2]
    x, w = _t([[[1, 2, 3, 4, 5]]]), _t([[[1, 0, -1]]])
    assert_close(conv.conv1d_naive(x, w), _t([[[-2, -2, -2]]]), "conv1d_naive([1,2,3,4,5], [1,0,-1])")


@pytest.mark.ex2_1
def test_conv1d_naive_by_hand_with_stride_padding_channels_and_bias(conv):
    # padding 1, stride 2: [0, 1, 2, 3, 4, 0] with w=[1, 1] at positions 0, 2, 4 -> [0+1, 2+3, 4+0]
    out = conv.conv1d_naive(_t([[[1, 2, 3, 4]]]), _t([[[1, 1]]]), stride=2, padding=1)
    assert_close(out, _t([[[1, 5, 4]]]), "conv1d_naive([1,2,3,4], [1,1], stride=2, padding=1)")
    # two input channels: out[t] = x0[t]*1 + x1[t+1]*1 + 0.5 -> [1+20+0.5, 2+30+0.5]
    x, w = _t([[[1, 2, 3], [10, 20, 30]]]), _t([[[1, 0], [0, 1]]])
    assert_close(conv.conv1d_naive(x, w, _t([0.5])), _t([[[21.5, 32.5]]]), "conv1d_naive with 2 input channels and a bias")


@pytest.mark.ex2_1
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", [0, 1, 3])
@pytest.mark.parametrize("kernel", [1, 2, 3])
def test_conv1d_naive_matches_torch(conv, kernel, padding, stride):
    x, w, b = _randn(2, 3, 9, seed=1), _randn(4, 3, kernel, seed=2), _randn(4, seed=3)
    expected = F.conv1d(x, w, b, stride, padding)
    assert_close(conv.conv1d_naive(x, w, b, stride, padding), expected, f"conv1d_naive(K={kernel}, padding={padding}, stride={stride})")


@pytest.mark.ex2_1
@pytest.mark.provided
def test_conv1d_naive_rejects_bad_input(conv):
    with pytest.raises(ValueError, match=r"conv1d_naive expected input of shape \(N, C_in, L\), got \(5,\)"):
        conv.conv1d_naive(torch.zeros(5), torch.zeros(1, 1, 3))
    with pytest.raises(ValueError, match="padding as an int"):
        conv.conv1d_naive(torch.zeros(1, 1, 5), torch.zeros(1, 1, 3), padding="same")


# ---------------------------------------------------------------- 2.2 conv1d


@pytest.mark.ex2_2
def test_conv1d_lecture_example(conv):
    # [1, 2, 3, 4, 5] * [1, 0, -1] = [-2, -2, -2]
    x, w = _t([[[1, 2, 3, 4, 5]]]), _t([[[1, 0, -1]]])
    assert_close(conv.conv1d(x, w), _t([[[-2, -2, -2]]]), "conv1d([1,2,3,4,5], [1,0,-1])")
    assert_close(conv.conv1d(x, w, padding="valid"), _t([[[-2, -2, -2]]]), "conv1d(..., padding='valid')")
    # "same": one zero each side, [0,1,2,3,4,5,0] -> [0-2, 1-3, 2-4, 3-5, 4-0]
    assert_close(conv.conv1d(x, w, padding="same"), _t([[[-2, -2, -2, -2, 4]]]), "conv1d(..., padding='same')")


@pytest.mark.ex2_2
def test_conv1d_same_padding_puts_the_extra_zero_on_the_right_for_an_even_kernel(conv):
    # K=2 needs K-1 = 1 zero; torch puts it on the right: [1, 2, 3, 4, 0] with w=[1, 10]
    # -> [1+20, 2+30, 3+40, 4+0] (on the left it would be [0+10, 1+20, 2+30, 3+40])
    out = conv.conv1d(_t([[[1, 2, 3, 4]]]), _t([[[1, 10]]]), padding="same")
    assert_close(out, _t([[[21, 32, 43, 4]]]), "conv1d([1,2,3,4], [1,10], padding='same')")


@pytest.mark.ex2_2
@pytest.mark.parametrize(
    "kernel, padding, stride",
    [
        (kernel, padding, stride)
        for kernel in (1, 2, 3, 4, 5)
        for padding in (0, 2, "valid", "same")
        for stride in ((1,) if padding == "same" else (1, 2, 3))  # "same" needs stride 1
    ],
)
def test_conv1d_matches_torch_with_stride_and_padding(conv, kernel, padding, stride):
    x, w, b = _randn(3, 2, 10, seed=4), _randn(5, 2, kernel, seed=5), _randn(5, seed=6)
    expected = F.conv1d(x, w, b, stride, padding)
    assert_close(conv.conv1d(x, w, b, stride, padding), expected, f"conv1d(K={kernel}, padding={padding!r}, stride={stride})")


@pytest.mark.ex2_2
@settings(max_examples=25, deadline=None, derandomize=True)  # the same examples every run: grades repeat
@given(
    n=st.integers(1, 3), c_in=st.integers(1, 4), c_out=st.integers(1, 4), kernel=st.integers(1, 6),
    extra=st.integers(0, 8), stride=st.integers(1, 3), padding=st.sampled_from([0, 1, 2, "valid", "same"]),
    bias=st.booleans(), seed=st.integers(0, 2**16),
)
def test_conv1d_matches_torch_on_random_shapes(conv, n, c_in, c_out, kernel, extra, stride, padding, bias, seed):
    stride = 1 if padding == "same" else stride
    x, w = _randn(n, c_in, kernel + extra, seed=seed), _randn(c_out, c_in, kernel, seed=seed + 1)
    b = _randn(c_out, seed=seed + 2) if bias else None
    expected = F.conv1d(x, w, b, stride, padding)
    assert_close(conv.conv1d(x, w, b, stride, padding), expected, f"conv1d on x {tuple(x.shape)}, w {tuple(w.shape)}, stride={stride}, padding={padding!r}")


@pytest.mark.ex2_2
def test_conv1d_has_no_python_loop_over_positions(conv):
    w = _randn(4, 3, 3, seed=7)
    small, large = (in_worker(probes.count_torch_calls, conv.conv1d, _randn(2, 3, length), w, padding="same") for length in (8, 64))
    assert large <= small + 2, (
        f"conv1d called {small} torch operations on a signal of length 8 but {large} on length 64: "
        "it should handle every position at once (Tensor.unfold, einsum), not loop over them"
    )


@pytest.mark.ex2_2
def test_conv1d_leaves_its_inputs_unchanged(conv):
    x, w, b = _randn(2, 3, 9, seed=60), _randn(4, 3, 3, seed=61), _randn(4, seed=62)
    assert_leaves_inputs_unchanged(conv.conv1d, {"x": x, "w": w, "b": b}, "conv1d", padding="same")


@pytest.mark.ex2_2
@pytest.mark.provided
@pytest.mark.parametrize(
    "x_shape, w_shape, options, message",
    [
        ((5,), (1, 1, 3), {}, r"conv1d expected input of shape \(N, C_in, L\), got \(5,\)"),
        ((1, 2, 5), (1, 3, 3), {}, "input has 2 channels but weight"),
        ((1, 1, 5), (1, 1, 3), {"padding": "same", "stride": 2}, "'same' needs stride 1"),
        ((1, 1, 3), (1, 1, 6), {"padding": 1}, "larger|spans"),
        ((1, 1, 5), (1, 1, 3), {"padding": "full"}, "'valid' or 'same'"),
    ],
)
def test_conv1d_rejects_bad_input(conv, x_shape, w_shape, options, message):
    with pytest.raises(ValueError, match=message):
        conv.conv1d(torch.zeros(x_shape), torch.zeros(w_shape), **options)


# ---------------------------------------------------------------- 2.3 conv2d_naive

# A tiny image with a vertical edge between columns 1 and 2: dark on the left, bright on the right.
EDGE_IMAGE = [[[[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]]]]  # (1, 1, 3, 4)
# The [-1, 1] kernel: x[i, j+1] - x[i, j], so each row [0, 0, 1, 1] -> [0-0, 1-0, 1-1] = [0, 1, 0]
EDGE_RESPONSE = [[[[0, 1, 0], [0, 1, 0], [0, 1, 0]]]]  # (1, 1, 3, 3)


@pytest.mark.ex2_3
def test_conv2d_naive_finds_a_vertical_edge_by_hand(conv):
    out = conv.conv2d_naive(_t(EDGE_IMAGE), _t([[[[-1, 1]]]]))
    assert_close(out, _t(EDGE_RESPONSE), "conv2d_naive(edge image, [[-1, 1]])")


@pytest.mark.ex2_3
@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding",
    [
        ((1, 1, 5, 5), (1, 1, 3, 3), 1, 0),
        ((2, 3, 6, 7), (4, 3, 3, 2), 2, 1),
        ((2, 2, 7, 5), (3, 2, 2, 3), (1, 2), (2, 0)),
        ((1, 3, 4, 4), (2, 3, 4, 4), 1, 0),
    ],
)
def test_conv2d_naive_matches_torch(conv, x_shape, w_shape, stride, padding):
    x, w, b = _randn(*x_shape, seed=7), _randn(*w_shape, seed=8), _randn(w_shape[0], seed=9)
    expected = F.conv2d(x, w, b, stride, padding)
    assert_close(conv.conv2d_naive(x, w, b, stride, padding), expected, f"conv2d_naive(x {x_shape}, w {w_shape}, stride={stride}, padding={padding})")


@pytest.mark.ex2_3
@pytest.mark.provided
def test_conv2d_naive_rejects_bad_input(conv):
    with pytest.raises(ValueError, match=r"conv2d_naive expected input of shape \(N, C_in, H, W\), got \(28, 28\)"):
        conv.conv2d_naive(torch.zeros(28, 28), torch.zeros(1, 1, 3, 3))


# ---------------------------------------------------------------- 2.4 conv2d


@pytest.mark.ex2_4
def test_conv2d_finds_vertical_and_horizontal_edges_by_hand(conv):
    out = conv.conv2d(_t(EDGE_IMAGE), _t([[[[-1, 1]]]]))
    assert_close(out, _t(EDGE_RESPONSE), "conv2d(edge image, [[-1, 1]])")
    # The same image turned on its side has a horizontal edge, found by the kernel [[-1], [1]].
    out = conv.conv2d(_t(EDGE_IMAGE).transpose(2, 3), _t([[[[-1], [1]]]]))
    assert_close(out, _t(EDGE_RESPONSE).transpose(2, 3), "conv2d(transposed edge image, [[-1], [1]])")


@pytest.mark.ex2_4
def test_conv2d_by_hand_with_two_channels_stride_and_bias(conv):
    # x channel 0 = [[1, 2, 3], [4, 5, 6], [7, 8, 9]], channel 1 = 10 * channel 0.
    # w: channel 0 takes the top-left tap, channel 1 the bottom-right tap, with 2x2 windows,
    # stride 2 and padding 1 around x: out[i, j] = x0_pad[2i, 2j] + x1_pad[2i+1, 2j+1] - 1
    x0 = _t([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    x = torch.stack([x0, 10 * x0])[None]  # (1, 2, 3, 3)
    w = _t([[[[1, 0], [0, 0]], [[0, 0], [0, 1]]]])  # (1, 2, 2, 2)
    # out[0, 0] = 0 + 10; out[0, 1] = 0 + 30; out[1, 0] = 0 + 70; out[1, 1] = 5 + 90, each minus 1
    expected = _t([[[[9, 29], [69, 94]]]])
    assert_close(conv.conv2d(x, w, _t([-1]), stride=2, padding=1), expected, "conv2d with 2 channels, stride 2, padding 1")


CONV2D_CASES = [
    # (x shape, w shape, options): each one adds a feature
    ((1, 1, 5, 5), (1, 1, 3, 3), {}),
    ((2, 3, 7, 6), (4, 3, 3, 2), {"stride": 2, "padding": 1}),
    ((2, 2, 8, 9), (3, 2, 2, 3), {"stride": (2, 1), "padding": (0, 2)}),
    ((1, 2, 9, 9), (2, 2, 3, 3), {"dilation": 2}),
    ((2, 2, 9, 10), (3, 2, 2, 3), {"dilation": (2, 1), "stride": (1, 3), "padding": (1, 2)}),
    ((2, 4, 6, 6), (6, 2, 3, 3), {"groups": 2, "padding": 1}),
    ((1, 6, 5, 7), (6, 1, 3, 3), {"groups": 6}),  # depthwise
    ((2, 6, 7, 7), (9, 2, 2, 2), {"groups": 3, "stride": 2}),
    ((2, 3, 6, 7), (4, 3, 3, 3), {"padding": "same"}),
    ((2, 3, 6, 7), (4, 3, 2, 4), {"padding": "same"}),  # even kernels: the extra zero goes bottom / right
    ((1, 2, 8, 8), (2, 2, 2, 3), {"padding": "same", "dilation": (1, 2)}),
    ((2, 4, 7, 8), (4, 2, 4, 3), {"padding": "same", "groups": 2, "dilation": 2}),
    ((2, 3, 6, 7), (4, 3, 3, 3), {"padding": "valid"}),
    ((3, 3, 13, 11), (8, 3, 11, 11), {"stride": 4, "padding": 2}),  # AlexNet's conv1 in miniature
]


def _case_id(case):
    x_shape, w_shape, options = case
    return f"x{x_shape}-w{w_shape}-" + ",".join(f"{k}={v}" for k, v in options.items())


@pytest.mark.ex2_4
@pytest.mark.parametrize("case", CONV2D_CASES, ids=_case_id)
def test_conv2d_matches_torch_with_stride_padding_dilation_and_groups(conv, case):
    x_shape, w_shape, options = case
    x, w, b = _randn(*x_shape, seed=10), _randn(*w_shape, seed=11), _randn(w_shape[0], seed=12)
    expected = F.conv2d(x, w, b, **options)
    assert_close(conv.conv2d(x, w, b, **options), expected, f"conv2d({_case_id(case)})")
    assert_close(conv.conv2d(x, w, None, **options), F.conv2d(x, w, None, **options), f"conv2d without bias ({_case_id(case)})")


@pytest.mark.ex2_4
@settings(max_examples=25, deadline=None, derandomize=True)  # the same examples every run: grades repeat
@given(
    n=st.integers(1, 2), groups=st.integers(1, 3), c_in_g=st.integers(1, 2), c_out_g=st.integers(1, 2),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)), dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), extra=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    padding=st.sampled_from([0, 1, (2, 0), "valid", "same"]), seed=st.integers(0, 2**16),
)
def test_conv2d_matches_torch_on_random_shapes(conv, n, groups, c_in_g, c_out_g, kernel, dilation, stride, extra, padding, seed):
    stride = (1, 1) if padding == "same" else stride
    size = [d * (k - 1) + 1 + e for d, k, e in zip(dilation, kernel, extra)]
    x = _randn(n, groups * c_in_g, *size, seed=seed)
    w, b = _randn(groups * c_out_g, c_in_g, *kernel, seed=seed + 1), _randn(groups * c_out_g, seed=seed + 2)
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    expected = F.conv2d(x, w, b, **options)
    assert_close(conv.conv2d(x, w, b, **options), expected, f"conv2d(x {tuple(x.shape)}, w {tuple(w.shape)}, {options})")


@pytest.mark.ex2_4
def test_conv2d_keeps_float32_and_accepts_non_contiguous_input(conv):
    x = torch.randn(2, 3, 9, 8, generator=torch.Generator().manual_seed(13)).transpose(2, 3)  # (2, 3, 8, 9), not contiguous
    w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(14))
    out = conv.conv2d(x, w, stride=2, padding=1)
    assert out.dtype == torch.float32, f"conv2d should keep the input's dtype float32, got {out.dtype}"
    assert_close(out, F.conv2d(x, w, stride=2, padding=1), "conv2d in float32", atol=1e-4, rtol=1e-4)


@pytest.mark.ex2_4
def test_conv2d_has_no_python_loop_over_positions(conv):
    w = _randn(4, 2, 3, 2, seed=14)
    options = {"stride": (1, 2), "padding": 1, "dilation": (2, 1), "groups": 2}
    small, large = (in_worker(probes.count_torch_calls, conv.conv2d, _randn(2, 4, size, size + 1), w, **options) for size in (6, 30))
    assert large <= small + 2, (
        f"conv2d called {small} torch operations on a 6x7 image but {large} on 30x31: it should "
        "handle every position at once (unfold the windows, then one matmul), not loop over them"
    )


@pytest.mark.ex2_4
def test_conv2d_leaves_its_inputs_unchanged(conv):
    x, w, b = _randn(2, 4, 7, 6, seed=63), _randn(6, 2, 3, 3, seed=64), _randn(6, seed=65)
    assert_leaves_inputs_unchanged(conv.conv2d, {"x": x, "w": w, "b": b}, "conv2d", stride=2, padding=1, groups=2)


@pytest.mark.ex2_4
@pytest.mark.provided
@pytest.mark.parametrize(
    "x_shape, w_shape, options, message",
    [
        ((28, 28), (1, 1, 3, 3), {}, r"conv2d expected input of shape \(N, C_in, H, W\), got \(28, 28\)"),
        ((1, 1, 28, 28), (3, 3), {}, r"conv2d expected weight of shape \(C_out, C_in/groups, kH, kW\)"),
        ((1, 3, 8, 8), (4, 2, 3, 3), {}, "input has 3 channels but weight"),
        ((1, 4, 8, 8), (6, 1, 3, 3), {"groups": 4}, "groups=4 must divide"),
        ((1, 3, 8, 8), (4, 1, 3, 3), {"groups": 2}, "groups=2 must divide"),
        ((1, 1, 4, 4), (1, 1, 5, 5), {}, "padded input"),
        ((1, 1, 4, 4), (1, 1, 3, 3), {"dilation": 2}, "padded input"),
        ((1, 1, 8, 8), (1, 1, 3, 3), {"padding": "same", "stride": 2}, "'same' needs stride 1"),
        ((1, 1, 8, 8), (1, 1, 3, 3), {"stride": 0}, "stride must be"),
        ((1, 1, 8, 8), (1, 1, 3, 3), {"padding": -1}, "padding must be"),
    ],
)
def test_conv2d_rejects_bad_input(conv, x_shape, w_shape, options, message):
    with pytest.raises(ValueError, match=message):
        conv.conv2d(torch.zeros(x_shape), torch.zeros(w_shape), **options)


@pytest.mark.ex2_4
@pytest.mark.provided
def test_conv2d_rejects_a_bias_of_the_wrong_shape(conv):
    with pytest.raises(ValueError, match=r"bias of shape \(C_out,\) = \(4,\)"):
        conv.conv2d(torch.zeros(1, 3, 8, 8), torch.zeros(4, 3, 3, 3), torch.zeros(3))


# ---------------------------------------------------------------- 2.5 conv2d_backward


@pytest.mark.ex2_5
def test_conv2d_backward_by_hand(conv):
    # x = [[1, 2, 3], [4, 5, 6]], w = [[2, -1]]: out[i, j] = 2 x[i, j] - x[i, j+1], dout = ones (2x2)
    x, w = _t([[[[1, 2, 3], [4, 5, 6]]]]), _t([[[[2, -1]]]])
    dx, dw, db = conv.conv2d_backward(torch.ones(1, 1, 2, 2, dtype=F64), x, w)
    # dw[0] sums the pixels the left tap saw: 1+2+4+5 = 12; dw[1] the right tap's: 2+3+5+6 = 16
    assert_close(dw, _t([[[[12, 16]]]]), "dw")
    # column 0 is seen by the left tap only (2), column 1 by both (2-1), column 2 by the right one (-1)
    assert_close(dx, _t([[[[2, 1, -1], [2, 1, -1]]]]), "dx")
    assert_close(db, _t([4]), "db (four output positions)")


@pytest.mark.ex2_5
@pytest.mark.parametrize("case", CONV2D_CASES, ids=_case_id)
def test_conv2d_backward_matches_autograd(conv, case):
    x_shape, w_shape, options = case
    x, w = _randn(*x_shape, seed=15), _randn(*w_shape, seed=16)
    out_shape = F.conv2d(x, w, **options).shape
    dout = _randn(*out_shape, seed=17)
    expected = _torch_conv2d_backward(dout, x, w, **options)
    actual = conv.conv2d_backward(dout, x, w, **options)
    assert isinstance(actual, tuple) and len(actual) == 3, "conv2d_backward should return the tuple (dx, dw, db)"
    for got, want, name in zip(actual, expected, ("dx", "dw", "db")):
        assert_close(got, want, f"{name} of conv2d({_case_id(case)})")


@pytest.mark.ex2_5
@pytest.mark.parametrize(
    "x_shape, w_shape, options",
    [
        ((2, 2, 5, 4), (3, 2, 3, 2), {"stride": (2, 1), "padding": 1}),
        ((1, 4, 6, 5), (4, 2, 2, 2), {"padding": "same", "dilation": 2, "groups": 2}),
    ],
)
def test_conv2d_backward_passes_gradcheck(conv, x_shape, w_shape, options):
    x, w = _randn(*x_shape, seed=18, requires_grad=True), _randn(*w_shape, seed=19, requires_grad=True)
    b = _randn(w_shape[0], seed=20, requires_grad=True)
    ordered = tuple(options.get(key, default) for key, default in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1)))

    def function(x, w, b):
        return _TorchConvWithYourBackward.apply(x, w, b, conv.conv2d_backward, ordered)

    assert torch.autograd.gradcheck(function, (x, w, b), eps=1e-6, atol=1e-7)


@pytest.mark.ex2_5
@pytest.mark.parametrize(
    "x_shape, w_shape, options",
    [
        ((1, 3, 4, 5), (2, 3, 1, 1), {}),  # a 1x1 kernel on one image: the columns are the input itself
        ((2, 4, 6, 6), (4, 2, 3, 3), {"stride": 2, "padding": 1, "groups": 2}),
    ],
    ids=["1x1-kernel-one-image", "strided-grouped"],
)
def test_conv2d_backward_leaves_its_inputs_unchanged(conv, x_shape, w_shape, options):
    x, w = _randn(*x_shape, seed=22), _randn(*w_shape, seed=23)
    dout = _randn(*F.conv2d(x, w, **options).shape, seed=24)
    copies = [t.clone() for t in (dout, x, w)]
    dx, _, _ = conv.conv2d_backward(dout, x, w, **options)
    for before, after, name in zip(copies, (dout, x, w), ("dout", "x", "w")):
        assert torch.equal(before, after), f"conv2d_backward changed its argument {name}: work on copies (or new tensors)"
    assert_close(dx, _torch_conv2d_backward(dout, x, w, **options)[0], "dx")



@pytest.mark.ex2_5
def test_conv2d_backward_accepts_inputs_that_require_grad(conv):
    # in a notebook, x and w often come straight from a comparison with autograd
    x, w = _randn(2, 3, 6, 6, seed=25, requires_grad=True), _randn(4, 3, 3, 3, seed=26, requires_grad=True)
    out = F.conv2d(x, w, padding=1)
    dout = _randn(*out.shape, seed=27)
    dx, dw, _ = conv.conv2d_backward(dout, x, w, padding=1)
    want_dx, want_dw = torch.autograd.grad(out, (x, w), dout)
    assert_close(dx, want_dx, "dx when x requires grad")
    assert_close(dw, want_dw, "dw when w requires grad")

@pytest.mark.ex2_5
def test_conv2d_backward_has_no_python_loop_over_positions(conv):
    w = _randn(4, 2, 3, 2, seed=21)
    options = {"stride": (2, 1), "padding": "valid", "groups": 2}

    def count(size):
        x = _randn(2, 4, size, size + 1)
        dout = _randn(*F.conv2d(x, w, **options).shape)
        return in_worker(probes.count_torch_calls, conv.conv2d_backward, dout, x, w, **options)

    small, large = count(6), count(30)
    assert large <= small + 2, (
        f"conv2d_backward called {small} torch operations on a 6x7 image but {large} on 30x31: it "
        "should handle every position at once (matmuls, then F.fold or a loop over the kernel taps), not loop over them"
    )


@pytest.mark.ex2_5
@pytest.mark.provided
def test_conv2d_backward_rejects_dout_of_the_wrong_shape(conv):
    with pytest.raises(ValueError, match=r"conv2d_backward expected dout of shape \(1, 2, 6, 6\)"):
        conv.conv2d_backward(torch.zeros(1, 2, 8, 8), torch.zeros(1, 1, 8, 8), torch.zeros(2, 1, 3, 3))


# ---------------------------------------------------------------- 2.6 max pooling

POOL_CASES = [
    # (x shape, kernel_size, stride, padding)
    ((1, 1, 4, 4), 2, None, 0),
    ((2, 3, 7, 6), 2, None, 0),  # odd size: the last row is dropped
    ((2, 2, 9, 9), 3, 2, 0),  # AlexNet's overlapping 3x3 windows with stride 2
    ((2, 2, 8, 7), 3, 2, 1),
    ((1, 3, 7, 9), (3, 2), (2, 1), (1, 0)),
    ((2, 1, 6, 5), 3, 1, 1),
    ((1, 2, 5, 6), (2, 4), (1, 3), (1, 2)),
]


def _pool_id(case):
    x_shape, kernel, stride, padding = case
    return f"x{x_shape}-k{kernel}-s{stride}-p{padding}"


@pytest.mark.ex2_6
def test_max_pool2d_by_hand(conv):
    # [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]] in 2x2 windows: the bottom-right of each
    x = torch.arange(16, dtype=F64).view(1, 1, 4, 4)
    assert_close(conv.max_pool2d(x, 2), _t([[[[5, 7], [13, 15]]]]), "max_pool2d(arange(16), 2)")


@pytest.mark.ex2_6
@pytest.mark.parametrize("case", POOL_CASES, ids=_pool_id)
def test_max_pool2d_matches_torch(conv, case):
    x_shape, kernel, stride, padding = case
    x = _randn(*x_shape, seed=21) - 3  # all negative mostly: padding must not win the max
    expected = F.max_pool2d(x, kernel, stride, padding)
    assert_close(conv.max_pool2d(x, kernel, stride, padding), expected, f"max_pool2d({_pool_id(case)})")


@pytest.mark.ex2_6
def test_max_pool2d_backward_adds_up_overlapping_windows_by_hand(conv):
    # 2x2 windows with stride 1 on a 3x3 image whose maximum 9 sits in the centre: all four
    # windows pick it, so it collects 1 + 2 + 3 + 4 = 10 and every other pixel gets 0.
    x = _t([[[[1, 2, 3], [4, 9, 5], [6, 7, 8]]]])
    dx = conv.max_pool2d_backward(_t([[[[1, 2], [3, 4]]]]), x, 2, 1)
    assert_close(dx, _t([[[[0, 0, 0], [0, 10, 0], [0, 0, 0]]]]), "max_pool2d_backward with overlapping windows")
    # AlexNet's 3x3 windows with stride 2 on 5x5: the centre pixel (2, 2) lies in all four windows.
    x = torch.zeros(1, 1, 5, 5, dtype=F64)
    x[0, 0, 2, 2] = 1.0
    dx = conv.max_pool2d_backward(_t([[[[1, 2], [3, 4]]]]), x, 3, 2)
    assert dx[0, 0, 2, 2].item() == 10.0, f"the pixel shared by four windows should collect 1+2+3+4 = 10, got {dx[0, 0, 2, 2].item()}"


@pytest.mark.ex2_6
@pytest.mark.parametrize("case", POOL_CASES, ids=_pool_id)
def test_max_pool2d_backward_matches_autograd(conv, case):
    x_shape, kernel, stride, padding = case
    x = _randn(*x_shape, seed=22, requires_grad=True)
    out = F.max_pool2d(x, kernel, stride, padding)
    dout = _randn(*out.shape, seed=23)
    (expected,) = torch.autograd.grad(out, x, dout)
    actual = conv.max_pool2d_backward(dout, x.detach(), kernel, stride, padding)
    assert_close(actual, expected, f"max_pool2d_backward({_pool_id(case)})")


@pytest.mark.ex2_6
def test_max_pool2d_backward_routes_ties_to_the_first_maximum_like_torch(conv):
    # A constant image: every window ties. The gradient goes to the window's top-left pixel
    # (first in row-major order), whole, never split or copied.
    x = torch.zeros(1, 1, 4, 4, dtype=F64)
    dout = _t([[[[1, 2], [3, 4]]]])
    expected = _t([[[[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]]])
    assert_close(conv.max_pool2d_backward(dout, x, 2), expected, "max_pool2d_backward on a constant image")
    # Many ties and overlapping windows: same routing as torch, and nothing lost or created.
    x = torch.randint(0, 3, (2, 3, 9, 8), generator=torch.Generator().manual_seed(24)).to(F64).requires_grad_()
    out = F.max_pool2d(x, 3, 2, 1)
    dout = _randn(*out.shape, seed=25)
    (expected,) = torch.autograd.grad(out, x, dout)
    actual = conv.max_pool2d_backward(dout, x.detach(), 3, 2, 1)
    assert_close(actual, expected, "max_pool2d_backward with ties and overlapping windows")
    assert_close(actual.sum(), dout.sum(), "the total gradient (each window passes its gradient on once)")


@pytest.mark.ex2_6
@pytest.mark.parametrize("options", [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 1))])
def test_max_pool2d_backward_passes_gradcheck(conv, options):
    x = _randn(2, 2, 7, 6, seed=26, requires_grad=True)

    def function(x):
        return _TorchPoolWithYourBackward.apply(x, F.max_pool2d, conv.max_pool2d_backward, options)

    assert torch.autograd.gradcheck(function, (x,), eps=1e-6, atol=1e-7)


@pytest.mark.ex2_6
def test_max_pool2d_and_its_backward_leave_their_inputs_unchanged(conv):
    x, dout = _randn(2, 3, 6, 6, seed=66), _randn(2, 3, 5, 5, seed=67)
    assert_leaves_inputs_unchanged(conv.max_pool2d, {"x": x}, "max_pool2d", kernel_size=2, stride=1)
    assert_leaves_inputs_unchanged(conv.max_pool2d_backward, {"dout": dout, "x": x}, "max_pool2d_backward", kernel_size=2, stride=1)


@pytest.mark.ex2_6
@pytest.mark.provided
@pytest.mark.parametrize(
    "x_shape, options, message",
    [
        ((28, 28), (2, None, 0), r"max_pool2d expected input of shape \(N, C, H, W\), got \(28, 28\)"),
        ((1, 1, 8, 8), (2, None, 2), "at most half"),
        ((1, 1, 3, 3), (4, None, 0), "larger than the padded input"),
        ((1, 1, 8, 8), (0, None, 0), "kernel_size must be"),
    ],
)
def test_max_pool2d_rejects_bad_input(conv, x_shape, options, message):
    with pytest.raises(ValueError, match=message):
        conv.max_pool2d(torch.zeros(x_shape), *options)


@pytest.mark.ex2_6
@pytest.mark.provided
def test_max_pool2d_backward_rejects_dout_of_the_wrong_shape(conv):
    with pytest.raises(ValueError, match=r"max_pool2d_backward expected dout of shape \(1, 1, 4, 4\)"):
        conv.max_pool2d_backward(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), 2)


# ---------------------------------------------------------------- 2.7 average pooling


@pytest.mark.ex2_7
def test_avg_pool2d_by_hand_counts_the_padding(conv):
    x = _t([[[[1, 2], [3, 4]]]])
    # no padding: one window, (1+2+3+4)/4
    assert_close(conv.avg_pool2d(x, 2), _t([[[[2.5]]]]), "avg_pool2d([[1, 2], [3, 4]], 2)")
    # padding 1, stride 2: each window holds one pixel and three zeros of padding, and still divides by 4
    assert_close(conv.avg_pool2d(x, 2, 2, 1), _t([[[[0.25, 0.5], [0.75, 1.0]]]]), "avg_pool2d(..., 2, stride=2, padding=1)")


@pytest.mark.ex2_7
@pytest.mark.parametrize("case", POOL_CASES, ids=_pool_id)
def test_avg_pool2d_matches_torch(conv, case):
    x_shape, kernel, stride, padding = case
    x = _randn(*x_shape, seed=27)
    expected = F.avg_pool2d(x, kernel, stride, padding)
    assert_close(conv.avg_pool2d(x, kernel, stride, padding), expected, f"avg_pool2d({_pool_id(case)})")


@pytest.mark.ex2_7
def test_avg_pool2d_backward_by_hand(conv):
    # 2x2 windows with stride 1 on 3x3, dout = 1 everywhere: each pixel gets 1/4 per window it is in
    dx = conv.avg_pool2d_backward(torch.ones(1, 1, 2, 2, dtype=F64), torch.zeros(1, 1, 3, 3, dtype=F64), 2, 1)
    assert_close(dx, _t([[[[1, 2, 1], [2, 4, 2], [1, 2, 1]]]]) / 4, "avg_pool2d_backward(ones, 2x2, stride 1)")


@pytest.mark.ex2_7
@pytest.mark.parametrize("case", POOL_CASES, ids=_pool_id)
def test_avg_pool2d_backward_matches_autograd(conv, case):
    x_shape, kernel, stride, padding = case
    x = _randn(*x_shape, seed=28, requires_grad=True)
    out = F.avg_pool2d(x, kernel, stride, padding)
    dout = _randn(*out.shape, seed=29)
    (expected,) = torch.autograd.grad(out, x, dout)
    actual = conv.avg_pool2d_backward(dout, x.detach(), kernel, stride, padding)
    assert_close(actual, expected, f"avg_pool2d_backward({_pool_id(case)})")


@pytest.mark.ex2_7
def test_avg_pool2d_backward_passes_gradcheck(conv):
    x = _randn(2, 2, 7, 6, seed=30, requires_grad=True)

    def function(x):
        return _TorchPoolWithYourBackward.apply(x, F.avg_pool2d, conv.avg_pool2d_backward, (3, 2, 1))

    assert torch.autograd.gradcheck(function, (x,), eps=1e-6, atol=1e-7)


@pytest.mark.ex2_7
def test_avg_pool2d_and_its_backward_leave_their_inputs_unchanged(conv):
    x, dout = _randn(2, 3, 6, 6, seed=68), _randn(2, 3, 5, 5, seed=69)
    assert_leaves_inputs_unchanged(conv.avg_pool2d, {"x": x}, "avg_pool2d", kernel_size=2, stride=1)
    assert_leaves_inputs_unchanged(conv.avg_pool2d_backward, {"dout": dout, "x": x}, "avg_pool2d_backward", kernel_size=2, stride=1)


@pytest.mark.ex2_7
@pytest.mark.provided
def test_avg_pool2d_rejects_bad_input(conv):
    with pytest.raises(ValueError, match=r"avg_pool2d expected input of shape \(N, C, H, W\), got \(28, 28\)"):
        conv.avg_pool2d(torch.zeros(28, 28), 2)
    with pytest.raises(ValueError, match="at most half"):
        conv.avg_pool2d(torch.zeros(1, 1, 8, 8), 2, padding=2)


# ---------------------------------------------------------------- 2.8 Conv2d module


@pytest.fixture
def torch_conv(conv, monkeypatch):
    """conv with conv2d and conv2d_backward replaced by torch references: tests 2.8 alone."""
    monkeypatch.setattr(conv, "conv2d", _torch_conv2d)
    monkeypatch.setattr(conv, "conv2d_backward", _torch_conv2d_backward)
    return conv


MODULE_CASES = [
    (3, 4, 3, {}),
    (4, 6, (3, 2), {"stride": 2, "padding": 1}),
    (4, 6, 3, {"padding": "same", "dilation": 2, "groups": 2}),
    (2, 4, 2, {"padding": "same", "bias": False}),
]


@pytest.mark.ex2_8
@pytest.mark.parametrize("case", MODULE_CASES, ids=lambda case: f"{case[0]}-{case[1]}-{case[2]}-{case[3]}")
def test_conv2d_module_matches_nn_conv2d_values_and_gradients(torch_conv, case):
    in_channels, out_channels, kernel_size, options = case
    torch.manual_seed(31)
    ours = torch_conv.Conv2d(in_channels, out_channels, kernel_size, **options).double()
    reference = nn.Conv2d(in_channels, out_channels, kernel_size, **options).double()
    reference.load_state_dict(ours.state_dict())
    x = _randn(2, in_channels, 7, 8, seed=32, requires_grad=True)
    expected = reference(x)
    dout = _randn(*expected.shape, seed=33)
    expected.backward(dout)
    result = in_worker(probes.forward_backward, ours, (x.detach().requires_grad_(),), dout)  # out = ours(x); out.backward(dout)
    assert_close(result["output"], expected, "Conv2d output")
    assert_close(result["input_grads"][0], x.grad, "Conv2d input gradient")
    grads = result["parameter_grads"]
    assert_close(grads["weight"], reference.weight.grad, "Conv2d weight gradient")
    if reference.bias is not None:
        assert grads.get("bias") is not None, "the bias got no gradient: backward should return db for it"
        assert_close(grads["bias"], reference.bias.grad, "Conv2d bias gradient")


@pytest.mark.ex2_8
def test_conv2d_module_calls_your_conv2d_forward_and_conv2d_backward(conv, monkeypatch):
    calls = []

    def spy_forward(*args, **kwargs):
        calls.append("conv2d")
        return _torch_conv2d(*args, **kwargs)

    def spy_backward(*args, **kwargs):
        calls.append("conv2d_backward")
        return _torch_conv2d_backward(*args, **kwargs)

    monkeypatch.setattr(conv, "conv2d", spy_forward)
    monkeypatch.setattr(conv, "conv2d_backward", spy_backward)
    layer = conv.Conv2d(2, 3, 3, padding=1).double()
    in_worker(probes.forward_backward, layer, (_randn(1, 2, 5, 5, seed=34),), torch.ones(1, 3, 5, 5, dtype=F64))  # layer(x).sum().backward()
    assert calls == ["conv2d", "conv2d_backward"], (
        f"Conv2d should compute its forward with conv2d and its backward with conv2d_backward "
        f"(through Conv2dFunction), once each; the calls were {calls}"
    )


@pytest.mark.ex2_8
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_function_gradients_match_autograd_for_every_input(torch_conv, bias):
    # conv2d and conv2d_backward are torch's here: this checks Conv2dFunction's wiring (what it saves,
    # which gradient goes to which input, None for the options) in float64.
    x, w = _randn(2, 4, 5, 6, seed=35, requires_grad=True), _randn(6, 2, 3, 2, seed=36, requires_grad=True)
    b = _randn(6, seed=37, requires_grad=True) if bias else None
    options = ((2, 1), 1, (1, 2), 2)  # stride, padding, dilation, groups
    expected = F.conv2d(x, w, b, *options)
    dout = _randn(*expected.shape, seed=38)
    want = torch.autograd.grad(expected, [t for t in (x, w, b) if t is not None], dout)
    inputs = tuple(t.detach().requires_grad_() if t is not None else None for t in (x, w, b))
    result = in_worker(probes.forward_backward, torch_conv.Conv2dFunction.apply, (*inputs, *options), dout)
    assert_close(result["output"], expected, "Conv2dFunction.apply output")
    for got, wanted, name in zip(result["input_grads"], want, ("x", "w", "b")):
        assert got is not None, f"Conv2dFunction gives no gradient for {name}"
        assert_close(got, wanted, f"Conv2dFunction gradient for {name}")


@pytest.mark.ex2_8
def test_conv2d_module_learns_the_edge_kernel_by_gradient_descent(torch_conv):
    # Learn w from (image, edge map) pairs made with the [-1, 1] kernel: the loss should reach ~0.
    torch.manual_seed(38)
    images = torch.rand(16, 1, 6, 6, dtype=F64)
    targets = F.conv2d(images, _t([[[[-1, 1]]]]))
    layer = torch_conv.Conv2d(1, 1, (1, 2), bias=False).double()
    loss, parameters = in_worker(probes.fit_mse, layer, images, targets, lr=1.0, steps=100)  # torch.optim.SGD
    assert loss < 1e-8, f"training should fit the edge kernel exactly, final loss {loss:.3g}"
    assert_close(parameters["weight"], _t([[[[-1, 1]]]]), "learned kernel", atol=1e-3)


@pytest.mark.ex2_8
@pytest.mark.provided
def test_conv2d_module_parameters_are_shaped_and_initialised_like_nn_conv2d(conv):
    torch.manual_seed(39)
    layer = conv.Conv2d(6, 16, 5, groups=2)
    reference = nn.Conv2d(6, 16, 5, groups=2)
    assert isinstance(layer.weight, nn.Parameter) and isinstance(layer.bias, nn.Parameter)
    assert layer.weight.shape == reference.weight.shape == (16, 3, 5, 5), f"weight shape {tuple(layer.weight.shape)}"
    assert layer.bias.shape == (16,), f"bias shape {tuple(layer.bias.shape)}"
    bound = 1 / (3 * 5 * 5) ** 0.5  # fan_in = C_in / groups * kH * kW
    for name, value in (("weight", layer.weight), ("bias", layer.bias)):
        assert value.abs().max() <= bound, f"{name} should lie within +-1/sqrt(fan_in) = {bound:.4f}"
        assert value.std() > bound / 3, f"{name} should be spread over +-{bound:.4f}, std {value.std():.4f}"
    assert conv.Conv2d(1, 6, 5, bias=False).bias is None, "bias=False should give no bias"


@pytest.mark.ex2_8
@pytest.mark.provided
def test_conv2d_module_rejects_bad_arguments(conv):
    with pytest.raises(ValueError, match="groups=4 must divide"):
        conv.Conv2d(6, 16, 3, groups=4)
    with pytest.raises(ValueError, match="'same' needs stride 1"):
        conv.Conv2d(3, 4, 3, stride=2, padding="same")
