"""Local response normalisation as one matrix product: the fast path AlexNet takes on CUDA.

Krizhevsky, Sutskever and Hinton 2012 (Section 3.3) divide each activation by the energy of
its neighbours across channels:

    S[c] = sum of a[j]^2 over the channels j in the window of c
    D[c] = k + alpha * S[c]
    b[c] = a[c] * D[c] ** -beta

alpha is the paper's, on the sum, as in `labs.models.local_response_norm` and
`TowerLocalResponseNorm`; torch's F.local_response_norm puts its alpha on the mean, so
F.local_response_norm(a, size, alpha=size * alpha, beta=beta, k=k) is the same function. The
window of c is the channels c - size//2 .. c + (size - 1)//2 that exist, F.local_response_norm's
window: symmetric for odd sizes, one channel longer below c for even ones.

Why a matrix product. torch computes S with a 3-D average pool over a padded copy of a^2 (in
float32 under autocast) and then six elementwise kernels; that is two thirds of an AlexNet
training step on a GPU. S is a linear function of a^2 along the channels, the same one for
every pixel, so it is a product with a fixed C x C band matrix:

    S = a^2 @ B        B[j, c] = 1 when j lies in the window of c, else 0

one GEMM on tensor cores. With `groups` towers (the paper's GPUs) B is block diagonal, so no
window reaches into the other tower, still in one product. In channels_last storage,
(N, C, H, W) held as (N, H, W, C), a^2 already is an (N*H*W, C) matrix and nothing is copied;
NCHW input takes B^T @ a^2 per image, (C, C) @ (C, H*W). B carries alpha and the product adds
k, so the GEMM returns D itself.

The backward pass is written by hand, with g = dL/db (as in exercise 4.2 and notebook 04):

    dL/da = g * D^-beta - 2 * beta * a * ((g * a * D^(-beta - 1)) @ (alpha * B)^T)

B^T: the windows read the other way round, which matters for even sizes.

Both directions are torch.library custom ops, labs::local_response_norm and
labs::local_response_norm_backward, with fake implementations (shapes and strides without
data), so torch.compile keeps each as one node of its graph and CUDA graphs capture them.
They compute in the input's dtype (bf16 under autocast, the GEMM accumulating in float32) with
autocast off inside, so the dtype that comes in is the dtype that goes out. No double
backward: the backward op has no derivative of its own.

Shapes: (N, C, H, W) -> (N, C, H, W), C divisible by groups; the result has the input's layout
(channels_last in, channels_last out; anything else comes out contiguous NCHW).
"""

import torch
from torch import Tensor

_CONSTANTS: dict[tuple, Tensor] = {}  # alpha * B and the k bias, per (what, channels, ..., dtype, device)
_MAX_CONSTANTS = 64  # a training run needs a handful; a test session a few dozen


def band_matrix(channels: int, size: int, groups: int = 1, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> Tensor:
    """B (C, C) with B[j, c] = 1 when channel j lies in the window of channel c and in c's tower, else 0.

    Args:
        channels: C, divisible by groups.
        size: the window, channels c - size//2 .. c + (size - 1)//2 (F.local_response_norm's).
        groups: towers; no window crosses from one to another.

    Returns:
        (C, C): for a^2 of shape (..., C), `a^2 @ B` is the windowed sum S of shape (..., C).
    """
    c = torch.arange(channels, device=device)  # (C,)
    offset = c[:, None] - c[None, :]  # j - c: (C, 1) - (1, C) -> (C, C)
    in_window = (offset >= -(size // 2)) & (offset <= (size - 1) // 2)  # (C, C)
    tower = channels // groups
    same_tower = (c[:, None] // tower) == (c[None, :] // tower)  # (C, 1) == (1, C) -> (C, C)
    return (in_window & same_tower).to(dtype)  # (C, C)


def _constant(key: tuple, build) -> Tensor:
    """build(), kept under `key` for the next call: one band matrix per layer, not one per step.

    Not kept while a CUDA graph is being captured: its memory would belong to the graph's pool.
    (torch.compile's "reduce-overhead" runs each graph eagerly once before capturing it, so the
    constants are here by then.)
    """
    value = _CONSTANTS.get(key)
    if value is not None:
        return value
    value = build()
    device = key[-1]
    if not (device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
        if len(_CONSTANTS) >= _MAX_CONSTANTS:
            _CONSTANTS.clear()
        _CONSTANTS[key] = value
    return value


def _scaled_band(channels: int, size: int, groups: int, alpha: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """alpha * B (C, C) in `dtype` on `device`, rounded once from float64."""
    return _constant(("band", channels, size, groups, float(alpha), dtype, device),
                     lambda: (band_matrix(channels, size, groups, torch.float64, device) * alpha).to(dtype))  # (C, C)


def _bias(channels: int, k: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """k repeated C times: the bias of the forward GEMM, D = k + a^2 @ (alpha * B)."""
    return _constant(("bias", channels, float(k), dtype, device), lambda: torch.full((channels,), k, dtype=dtype, device=device))  # (C,)


def _stored_channels_last(x: Tensor) -> bool:
    """Whether x (N, C, H, W) lies in memory as (N, H, W, C), so that its pixels are the rows of a matrix."""
    return x.is_contiguous(memory_format=torch.channels_last)


def _empty_like_result(x: Tensor) -> Tensor:
    """An uninitialised tensor with the shape, dtype and layout the ops give for input x."""
    layout = torch.channels_last if _stored_channels_last(x) else torch.contiguous_format
    return torch.empty_like(x, memory_format=layout)


def _channel_product(t: Tensor, m: Tensor, add: float | None = None) -> Tensor:
    """For every pixel, t's channel vector times m (plus `add`): out[n, :, h, w] = t[n, :, h, w] @ m + add.

    Args:
        t: (N, C, H, W), stored channels_last or contiguous NCHW.
        m: (C, C).
        add: a constant added to every entry (k in the forward pass), inside the GEMM where it can be.

    Returns:
        (N, C, H, W) in t's layout.
    """
    n, c, h, w = t.shape
    if _stored_channels_last(t):
        rows = t.permute(0, 2, 3, 1).view(n * h * w, c)  # (N, C, H, W) stored NHWC -> (N*H*W, C), no copy
        if add is None:
            product = rows @ m  # (N*H*W, C) @ (C, C) -> (N*H*W, C)
        else:
            product = torch.addmm(_bias(c, add, t.dtype, t.device), rows, m)  # (C,) + (N*H*W, C) @ (C, C) -> (N*H*W, C): one kernel on CUDA
        return product.view(n, h, w, c).permute(0, 3, 1, 2)  # (N*H*W, C) -> (N, H, W, C) -> (N, C, H, W) stored NHWC
    columns = t.view(n, c, h * w)  # (N, C, H, W) -> (N, C, H*W), no copy
    product = m.t() @ columns  # (C, C) @ (N, C, H*W) -> (N, C, H*W): one product per image
    if add is not None:
        product = product.add_(add)  # (N, C, H*W)
    return product.view(n, c, h, w)  # (N, C, H*W) -> (N, C, H, W)


def _forward(x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int) -> tuple[Tensor, Tensor]:
    """(b, D), both (N, C, H, W) in x's layout: b = x * D^-beta with D = k + alpha * (x^2 @ B)."""
    if not (_stored_channels_last(x) or x.is_contiguous()):
        x = x.contiguous()  # (N, C, H, W): a slice or a permuted view, made NCHW
    band = _scaled_band(x.shape[1], size, groups, alpha, x.dtype, x.device)  # alpha * B: (C, C)
    with torch.autocast(x.device.type, enabled=False):  # compute in x's dtype, whatever the caller's autocast says
        denominator = _channel_product(x * x, band, add=k)  # D = k + alpha * S: (N, C, H, W)
        out = x * denominator.pow(-beta)  # b: (N, C, H, W)
    return out, denominator


def _backward(grad: Tensor, x: Tensor, denominator: Tensor, size: int, alpha: float, beta: float, groups: int) -> Tensor:
    """dL/dx (N, C, H, W) in x's layout, from g = dL/db (N, C, H, W) and the forward's x and D."""
    layout = torch.channels_last if _stored_channels_last(x) else torch.contiguous_format
    x = x.contiguous(memory_format=layout)  # (N, C, H, W); a copy only if the forward made one
    grad = grad.contiguous(memory_format=layout)  # (N, C, H, W): the product needs g in x's layout
    band = _scaled_band(x.shape[1], size, groups, alpha, x.dtype, x.device)  # alpha * B: (C, C)
    with torch.autocast(x.device.type, enabled=False):
        scaled = grad * denominator.pow(-beta)  # g D^-beta: (N, C, H, W)
        through_window = _channel_product(scaled * x / denominator, band.t())  # alpha * (g a D^(-beta-1)) @ B^T: (N, C, H, W)
        return torch.addcmul(scaled, x, through_window, value=-2.0 * beta)  # g D^-beta - 2 beta a (...): (N, C, H, W)


# ---------------------------------------------------------------- the custom ops


@torch.library.custom_op("labs::local_response_norm", mutates_args=())
def local_response_norm_op(x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int) -> tuple[Tensor, Tensor]:
    """(b, D) for x (N, C, H, W); D = k + alpha * S is kept for the backward pass. Call `local_response_norm` instead."""
    return _forward(x, size, alpha, beta, k, groups)


@local_response_norm_op.register_fake
def _(x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int) -> tuple[Tensor, Tensor]:
    return _empty_like_result(x), _empty_like_result(x)


@torch.library.custom_op("labs::local_response_norm_backward", mutates_args=())
def local_response_norm_backward_op(grad: Tensor, x: Tensor, denominator: Tensor, size: int, alpha: float, beta: float,
                                    groups: int) -> Tensor:
    """dL/dx for g = dL/db, with x and D from labs::local_response_norm; all (N, C, H, W)."""
    return _backward(grad, x, denominator, size, alpha, beta, groups)


@local_response_norm_backward_op.register_fake
def _(grad: Tensor, x: Tensor, denominator: Tensor, size: int, alpha: float, beta: float, groups: int) -> Tensor:
    return _empty_like_result(x)


def _setup_context(ctx, inputs, output) -> None:
    x, size, alpha, beta, _, groups = inputs
    _, denominator = output
    ctx.mark_non_differentiable(denominator)  # an auxiliary output, like max_pool's indices
    ctx.save_for_backward(x, denominator)
    ctx.size, ctx.alpha, ctx.beta, ctx.groups = size, alpha, beta, groups


def _autograd_backward(ctx, grad_out: Tensor, _grad_denominator: Tensor | None):
    x, denominator = ctx.saved_tensors
    dx = local_response_norm_backward_op(grad_out, x, denominator, ctx.size, ctx.alpha, ctx.beta, ctx.groups)
    return dx, None, None, None, None, None


local_response_norm_op.register_autograd(_autograd_backward, setup_context=_setup_context)


# ---------------------------------------------------------------- what the model calls


def local_response_norm(x: Tensor, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
                        groups: int = 1) -> Tensor:
    """Local response normalisation across the channels of x, each of `groups` towers on its own.

    b = x / (k + alpha * S) ** beta with S the windowed sum of x^2 (see the module docstring);
    alpha on the sum, as in the paper (size 5, alpha 1e-4, beta 0.75, k 2: the defaults).

    Args:
        x: (N, C, H, W) floating point, C divisible by groups; channels_last is the fast layout.
        size: the window, any positive size (even ones as in F.local_response_norm).
        groups: towers (2 in the paper's AlexNet); no window crosses from one to another.

    Returns:
        b: (N, C, H, W), x's dtype and layout.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"local_response_norm expected x to be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"local_response_norm expected x of shape (N, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"local_response_norm expected a floating-point x, got dtype {x.dtype}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"local_response_norm expected a positive window size (the paper's is 5), got {size!r}")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1 or x.shape[1] % groups != 0:
        raise ValueError(f"local_response_norm expected groups to be a positive integer that divides the {x.shape[1]} channels "
                         f"of x {tuple(x.shape)}, got groups={groups!r}")
    out, _ = torch.ops.labs.local_response_norm(x, size, float(alpha), float(beta), float(k), groups)
    return out  # (N, C, H, W)
