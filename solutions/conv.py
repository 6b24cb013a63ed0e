"""Lab 2: convolutions and pooling by hand, checked against torch.nn.functional.

Convolution here is what the lecture (and every deep learning library) calls convolution:
cross-correlation, with the kernel not flipped,

    (x * w)_t = sum_k w_k x_{t+k},    e.g. [1, 2, 3, 4, 5] * [1, 0, -1] = [-2, -2, -2].

We build it up in the order of the lecture: 1D with loops (2.1) and vectorized (2.2), 2D with
loops (2.3) and vectorized with unfold and one matrix product (2.4), its backward pass (2.5),
max and average pooling with their backward passes (2.6, 2.7), and finally an `nn.Module`
(2.8) that plugs your forward and backward into autograd, so that LeNet-5 (LeCun et al.,
1998) in lab 3 and AlexNet (Krizhevsky et al., 2012) in lab 4 train on your own convolution.
The output-size arithmetic follows Dumoulin & Visin, "A guide to convolution arithmetic for
deep learning" (2016):

    L_out = floor((L + pad_left + pad_right - dilation * (K - 1) - 1) / stride) + 1

Layouts and argument names are PyTorch's: input (N, C_in, H, W), weight
(C_out, C_in / groups, kH, kW), bias (C_out,), `stride`, `padding`, `dilation`, `groups`.
Input checks are provided (the `_check_*` helpers); they run before your code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IntOrPair = int | tuple[int, int]
Padding = int | tuple[int, int] | str

# ---------------------------------------------------------------------------- provided checks


def _as_tuple(name: str, what: str, value, spatial: int, minimum: int) -> tuple[int, ...]:
    """`value` (an int or a tuple of `spatial` ints, each >= minimum) as a tuple of ints."""
    values = (value,) * spatial if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(values, (tuple, list))
        or len(values) != spatial
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values)
    ):
        kind = "an int" if spatial == 1 else f"an int or a tuple of {spatial} ints"
        raise ValueError(f"{name}: {what} must be {kind}, each at least {minimum}; got {value!r}")
    return tuple(values)


def _output_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int = 1) -> int:
    """floor((size + pad_total - dilation * (kernel - 1) - 1) / stride) + 1."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def _check_float_tensor(name: str, what: str, value) -> None:
    """The course's convention for bad input: not a tensor is a TypeError; a wrong dtype or shape, a ValueError."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} expected {what} to be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise ValueError(f"{name} expected {what} to be a floating-point tensor, got dtype {value.dtype}")


def _check_conv(
    name: str,
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    stride,
    padding,
    dilation,
    groups: int,
    spatial: int,
    strings: bool = True,
):
    """Check a convolution's arguments; return (stride, padding, dilation, output spatial shape).

    stride and dilation come back as tuples of `spatial` ints; padding as a tuple of ints
    (zeros on both ends of each spatial dimension) or the string "same". "valid" becomes zeros.
    """
    dims = {1: ("L",), 2: ("H", "W")}[spatial]
    kernel = {1: ("K",), 2: ("kH", "kW")}[spatial]
    _check_float_tensor(name, "input x", x)
    _check_float_tensor(name, "weight w", w)
    if b is not None:
        _check_float_tensor(name, "bias b", b)
    if not isinstance(x, Tensor) or x.dim() != 2 + spatial:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} expected input of shape (N, C_in, {', '.join(dims)}), got {got}")
    if not isinstance(w, Tensor) or w.dim() != 2 + spatial:
        got = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
        raise ValueError(f"{name} expected weight of shape (C_out, C_in/groups, {', '.join(kernel)}), got {got}")
    if x.dtype != w.dtype or x.device != w.device:
        raise ValueError(f"{name}: input and weight must share dtype and device, got {x.dtype} on {x.device} and {w.dtype} on {w.device}")
    in_channels, out_channels = x.shape[1], w.shape[0]
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{name}: groups must be a positive int, got {groups!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"{name}: groups={groups} must divide both in_channels ({in_channels}) and out_channels ({out_channels})"
        )
    if w.shape[1] * groups != in_channels:
        raise ValueError(
            f"{name}: input has {in_channels} channels but weight of shape {tuple(w.shape)} expects "
            f"{w.shape[1] * groups} (weight.shape[1] = {w.shape[1]} times groups = {groups})"
        )
    if b is not None and (not isinstance(b, Tensor) or tuple(b.shape) != (out_channels,)):
        got = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
        raise ValueError(f"{name} expected bias of shape (C_out,) = ({out_channels},), got {got}")
    stride = _as_tuple(name, "stride", stride, spatial, 1)
    dilation = _as_tuple(name, "dilation", dilation, spatial, 1)
    if isinstance(padding, str):
        if not strings:
            raise ValueError(f"{name} expects padding as an int; the vectorized version also accepts 'valid' and 'same'")
        if padding not in ("valid", "same"):
            raise ValueError(f"{name}: padding must be an int, a tuple of ints, 'valid' or 'same'; got {padding!r}")
        if padding == "same" and any(s != 1 for s in stride):
            raise ValueError(f"{name}: padding='same' needs stride 1 (the output could not keep the input's size), got stride {stride}")
        padding = (0,) * spatial if padding == "valid" else "same"
    else:
        padding = _as_tuple(name, "padding", padding, spatial, 0)
    out_shape = []
    for i in range(spatial):
        size, k = x.shape[2 + i], w.shape[2 + i]
        pad_total = dilation[i] * (k - 1) if padding == "same" else 2 * padding[i]
        reach = dilation[i] * (k - 1) + 1
        if reach > size + pad_total:
            raise ValueError(
                f"{name}: the kernel spans {reach} positions along {dims[i]} (size {k}, dilation {dilation[i]}) "
                f"but the padded input has only {size + pad_total}; input shape {tuple(x.shape)}"
            )
        out_shape.append(_output_size(size, k, stride[i], pad_total, dilation[i]))
    return stride, padding, dilation, tuple(out_shape)


def _check_grad_output(name: str, dout: Tensor, expected: tuple[int, ...]) -> None:
    _check_float_tensor(name, "dout", dout)
    if not isinstance(dout, Tensor) or tuple(dout.shape) != tuple(expected):
        got = tuple(dout.shape) if isinstance(dout, Tensor) else type(dout).__name__
        raise ValueError(f"{name} expected dout of shape {tuple(expected)}, the forward pass's output, got {got}")


def _check_pool(name: str, x: Tensor, kernel_size, stride, padding):
    """Check a pooling's arguments; return (kernel, stride, padding, output (H_out, W_out)), pairs of ints."""
    _check_float_tensor(name, "input x", x)
    if not isinstance(x, Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} expected input of shape (N, C, H, W), got {got}")
    kernel = _as_tuple(name, "kernel_size", kernel_size, 2, 1)
    stride = kernel if stride is None else _as_tuple(name, "stride", stride, 2, 1)
    padding = _as_tuple(name, "padding", padding, 2, 0)
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"{name}: padding {padding} must be at most half of kernel_size {kernel}, as in PyTorch")
    out = []
    for size, k, s, p, dim in zip(x.shape[2:], kernel, stride, padding, "HW"):
        if k > size + 2 * p:
            raise ValueError(f"{name}: kernel_size {k} is larger than the padded input ({size + 2 * p}) along {dim}")
        out.append(_output_size(size, k, s, 2 * p))
    return kernel, stride, padding, tuple(out)


# ---------------------------------------------------------------------------- 1D convolution


def conv1d_naive(x: Tensor, w: Tensor, b: Tensor | None = None, stride: int = 1, padding: int = 0) -> Tensor:
    """1D convolution (cross-correlation) with a Python loop over output positions.

    out[n, o, t] = b[o] + sum_{c, k} w[o, c, k] * x_pad[n, c, t * stride + k]

    Args:
        x: (N, C_in, L) input.
        w: (C_out, C_in, K) kernels.
        b: (C_out,) bias, or None.
        stride: step between output positions.
        padding: zeros added at both ends of the signal (an int).

    Returns:
        (N, C_out, L_out) with L_out = floor((L + 2 * padding - K) / stride) + 1.

    Written by hand (exercise 2.1; the grader reads your source): F.pad, Tensor.unfold,
    Tensor.as_strided, F.unfold and F.fold (im2col and col2im are building blocks), einsum,
    tensordot, matmul, torch.fft and Python loops are allowed; any library convolution is not
    (torch.conv*, F.conv*, nn.Conv*, torch.nn.grad.*, numpy/scipy filters).
    """
    (stride,), (padding,), _, (L_out,) = _check_conv("conv1d_naive", x, w, b, stride, padding, 1, 1, spatial=1, strings=False)
    # from here on stride, padding and the output length L_out are ints
    # BEGIN SOLUTION 2.1: 1D convolution with loops
    # HINT: pad first (torch.cat with zeros, or F.pad), then slide a window of length K.
    # HINT: for one position t, (window[:, None] * w[None]) has shape (N, C_out, C_in, K).
    N, C_out, K = x.shape[0], w.shape[0], w.shape[2]
    x = F.pad(x, (padding, padding))  # (N, C_in, L + 2 * padding)
    out = x.new_zeros(N, C_out, L_out)  # (N, C_out, L_out)
    for t in range(L_out):
        window = x[:, :, t * stride : t * stride + K]  # (N, C_in, K)
        out[:, :, t] = (window[:, None] * w[None]).sum(dim=(2, 3))  # (N, 1, C_in, K) * (1, C_out, C_in, K) -> (N, C_out)
    if b is not None:
        out = out + b[None, :, None]  # (N, C_out, L_out) + (1, C_out, 1)
    return out
    # END SOLUTION


def conv1d(x: Tensor, w: Tensor, b: Tensor | None = None, stride: int = 1, padding: int | str = 0) -> Tensor:
    """1D convolution (cross-correlation), vectorized: no Python loop over positions.

    Same maths as `conv1d_naive`, with PyTorch's padding options:

    - an int p: p zeros at both ends;
    - "valid": no padding;
    - "same": the output is as long as the input (stride 1 only). The K - 1 zeros go
      (K - 1) // 2 on the left and the rest on the right, so for an even kernel the extra
      zero is on the right, as in F.conv1d.

    Args:
        x: (N, C_in, L) input.
        w: (C_out, C_in, K) kernels.
        b: (C_out,) bias, or None.
        stride: step between output positions.
        padding: int, "valid" or "same".

    Returns:
        (N, C_out, L_out), L_out = floor((L + pad_left + pad_right - K) / stride) + 1.

    Written by hand (exercise 2.2; the grader reads your source): F.pad, Tensor.unfold,
    Tensor.as_strided, F.unfold and F.fold (im2col and col2im are building blocks), einsum,
    tensordot, matmul, torch.fft and Python loops are allowed; any library convolution is not
    (torch.conv*, F.conv*, nn.Conv*, torch.nn.grad.*, numpy/scipy filters).
    """
    (stride,), padding, _, _ = _check_conv("conv1d", x, w, b, stride, padding, 1, 1, spatial=1)
    padding = padding if padding == "same" else padding[0]  # from here on an int or "same" ("valid" is 0)
    # BEGIN SOLUTION 2.2: Vectorized 1D convolution with padding
    # HINT: Tensor.unfold(dim, size, step) gives every window at once, without copying.
    # HINT: torch.einsum can then contract the channel and kernel axes in one call.
    K = w.shape[2]
    if padding == "same":
        total = K - 1
        left, right = total // 2, total - total // 2  # the odd zero goes on the right
    else:
        left = right = padding
    x = F.pad(x, (left, right))  # (N, C_in, L + left + right)
    windows = x.unfold(2, K, stride)  # (N, C_in, L_out, K), a view
    out = torch.einsum("nctk,ock->not", windows, w)  # (N, C_out, L_out)
    if b is not None:
        out = out + b[None, :, None]  # (N, C_out, L_out) + (1, C_out, 1)
    return out
    # END SOLUTION


# ---------------------------------------------------------------------------- 2D convolution


def conv2d_naive(x: Tensor, w: Tensor, b: Tensor | None = None, stride: IntOrPair = 1, padding: IntOrPair = 0) -> Tensor:
    """2D convolution (cross-correlation) with Python loops over output rows and columns.

    out[n, o, i, j] = b[o] + sum_{c, k, l} w[o, c, k, l] * x_pad[n, c, i * sH + k, j * sW + l]

    Args:
        x: (N, C_in, H, W) input.
        w: (C_out, C_in, kH, kW) kernels.
        b: (C_out,) bias, or None.
        stride: int or (sH, sW).
        padding: int or (pH, pW) zeros on both sides.

    Returns:
        (N, C_out, H_out, W_out), H_out = floor((H + 2 pH - kH) / sH) + 1 and likewise W_out.

    Written by hand (exercise 2.3; the grader reads your source): F.pad, Tensor.unfold,
    Tensor.as_strided, F.unfold and F.fold (im2col and col2im are building blocks), einsum,
    tensordot, matmul, torch.fft and Python loops are allowed; any library convolution is not
    (torch.conv*, F.conv*, nn.Conv*, torch.nn.grad.*, numpy/scipy filters).
    """
    stride, padding, _, (H_out, W_out) = _check_conv("conv2d_naive", x, w, b, stride, padding, 1, 1, spatial=2, strings=False)
    # from here on stride = (sH, sW) and padding = (pH, pW) are pairs of ints
    # BEGIN SOLUTION 2.3: 2D convolution with loops
    # HINT: F.pad(x, (left, right, top, bottom)) pads the last two dimensions.
    N, C_out, kH, kW = x.shape[0], w.shape[0], w.shape[2], w.shape[3]
    (sH, sW), (pH, pW) = stride, padding
    x = F.pad(x, (pW, pW, pH, pH))  # (N, C_in, H + 2 pH, W + 2 pW)
    out = x.new_zeros(N, C_out, H_out, W_out)  # (N, C_out, H_out, W_out)
    for i in range(H_out):
        for j in range(W_out):
            patch = x[:, :, i * sH : i * sH + kH, j * sW : j * sW + kW]  # (N, C_in, kH, kW)
            out[:, :, i, j] = torch.tensordot(patch, w, dims=([1, 2, 3], [1, 2, 3]))  # (N, C_out)
    if b is not None:
        out = out + b[None, :, None, None]  # (N, C_out, H_out, W_out) + (1, C_out, 1, 1)
    return out
    # END SOLUTION


def conv2d(
    x: Tensor,
    w: Tensor,
    b: Tensor | None = None,
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> Tensor:
    """2D convolution (cross-correlation), vectorized: unfold the windows, then one matmul.

    out[n, o, i, j] = b[o] + sum_{c, k, l} w[o, c, k, l] * x_pad[n, g*C_in/G + c, i*sH + k*dH, j*sW + l*dW]
    where g = o // (C_out / G) is the group of output channel o: with groups G, input and
    output channels are split into G groups and group g's outputs see group g's inputs only
    (AlexNet's two towers are groups=2).

    Args:
        x: (N, C_in, H, W) input.
        w: (C_out, C_in / groups, kH, kW) kernels.
        b: (C_out,) bias, or None.
        stride: int or (sH, sW).
        padding: int, (pH, pW), "valid", or "same" (stride 1 only; as in F.conv2d the odd
            zero of an even total goes at the bottom / right).
        dilation: int or (dH, dW): spacing between kernel taps.
        groups: number of channel groups; divides C_in and C_out.

    Returns:
        (N, C_out, H_out, W_out), H_out = floor((H + pad_top + pad_bottom - dH (kH - 1) - 1) / sH) + 1.

    Written by hand (exercise 2.4; the grader reads your source): F.pad, Tensor.unfold,
    Tensor.as_strided, F.unfold and F.fold (im2col and col2im are building blocks), einsum,
    tensordot, matmul, torch.fft and Python loops are allowed; any library convolution is not
    (torch.conv*, F.conv*, nn.Conv*, torch.nn.grad.*, numpy/scipy filters).
    """
    stride, padding, dilation, (H_out, W_out) = _check_conv("conv2d", x, w, b, stride, padding, dilation, groups, spatial=2)
    # from here on stride and dilation are pairs of ints; padding is a pair (pH, pW) or "same" ("valid" is (0, 0))
    # BEGIN SOLUTION 2.4: Vectorized 2D convolution (unfold + matmul)
    # HINT: x.unfold(2, size, step).unfold(3, size, step) views every window at once, without copying;
    # HINT: with dilation d, take windows d*(k-1)+1 wide and keep every d-th tap.
    # HINT: turn the windows into one matrix of columns, (C_in*kH*kW, N*H_out*W_out): a column per
    # HINT: output position of every image. The weight matrix (C_out, C_in*kH*kW) times it gives the
    # HINT: whole batch in one product (F.unfold builds per-image columns, N small products: slower).
    # HINT: with groups, view both as (groups, ...) and let matmul batch over the groups.
    N = x.shape[0]
    C_out, kH, kW = w.shape[0], w.shape[2], w.shape[3]
    (sH, sW), (dH, dW) = stride, dilation
    if padding == "same":
        total_h, total_w = dH * (kH - 1), dW * (kW - 1)
        top, left = total_h // 2, total_w // 2
        bottom, right = total_h - top, total_w - left
    else:
        (top, left), (bottom, right) = padding, padding
    x = F.pad(x, (left, right, top, bottom))  # (N, C_in, H_pad, W_pad)
    windows = x.unfold(2, dH * (kH - 1) + 1, sH).unfold(3, dW * (kW - 1) + 1, sW)  # (N, C_in, H_out, W_out, reach_h, reach_w), a view
    windows = windows[..., ::dH, ::dW]  # (N, C_in, H_out, W_out, kH, kW): the taps the kernel touches
    cols = windows.permute(1, 4, 5, 0, 2, 3)  # (C_in, kH, kW, N, H_out, W_out)
    cols = cols.reshape(groups, -1, N * H_out * W_out)  # (G, C_in/G*kH*kW, N*H_out*W_out), the one copy
    kernels = w.reshape(groups, C_out // groups, -1)  # (G, C_out/G, C_in/G*kH*kW)
    out = kernels @ cols  # (G, C_out/G, C_in/G*kH*kW) @ (G, C_in/G*kH*kW, N*H_out*W_out) -> (G, C_out/G, N*H_out*W_out)
    out = out.view(C_out, N, H_out, W_out).transpose(0, 1)  # (N, C_out, H_out, W_out), a view
    if b is not None:
        out = out + b.view(1, C_out, 1, 1)  # (N, C_out, H_out, W_out) + (1, C_out, 1, 1)
    return out.contiguous()  # (N, C_out, H_out, W_out), stored in that order
    # END SOLUTION


def conv2d_backward(
    dout: Tensor,
    x: Tensor,
    w: Tensor,
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of a loss through `conv2d(x, w, b, stride, padding, dilation, groups)`.

    With the patches unfolded into columns, one per output position of every image, the
    forward pass is out = W @ cols + b, so
        dW   = dout @ cols^T           (the product sums over every position of every image),
        dcols = W^T @ dout,            and dx = dcols folded back: every patch entry sends its
                                       gradient back to the pixel it was copied from, and
                                       pixels shared by overlapping patches add them up,
        db   = dout summed over batch and positions.

    Args:
        dout: (N, C_out, H_out, W_out) gradient of the loss with respect to the output.
        x: (N, C_in, H, W) the forward pass's input.
        w: (C_out, C_in / groups, kH, kW) the forward pass's kernels.
        stride, padding, dilation, groups: as in `conv2d`.

    Returns:
        (dx, dw, db) of shapes (N, C_in, H, W), (C_out, C_in / groups, kH, kW) and (C_out,).

    Written by hand (exercise 2.5; the grader reads your source): F.pad, Tensor.unfold,
    Tensor.as_strided, F.unfold and F.fold (im2col and col2im are building blocks), einsum,
    tensordot, matmul, torch.fft and Python loops are allowed; any library convolution is not
    (torch.conv*, F.conv*, nn.Conv*, torch.nn.grad.*, numpy/scipy filters) (conv_transpose2d and
    torch.nn.grad.conv2d_input among them), and neither is autograd; index_add_ and scatter_add_
    are allowed.
    """
    stride, padding, dilation, out_shape = _check_conv("conv2d_backward", x, w, None, stride, padding, dilation, groups, spatial=2)
    # from here on stride and dilation are pairs of ints; padding is a pair (pH, pW) or "same" ("valid" is (0, 0))
    _check_grad_output("conv2d_backward", dout, (x.shape[0], w.shape[0], *out_shape))
    # BEGIN SOLUTION 2.5: Backward pass of the 2D convolution
    # HINT: recompute the columns as in conv2d. Every column entry is a copy of one input pixel, so
    # HINT: each tap (i, j) of the kernel sends its gradient back to the pixels it read: add it onto
    # HINT: a strided slice of the padded image (overlapping windows add up), then crop the padding.
    # HINT: (F.fold does this for per-image columns; a loop over the kH*kW taps is fine.)
    N, C_in, H, W = x.shape
    C_out, kH, kW = w.shape[0], w.shape[2], w.shape[3]
    H_out, W_out = out_shape
    (sH, sW), (dH, dW) = stride, dilation
    if padding == "same":
        pad_h, pad_w = dH * (kH - 1), dW * (kW - 1)
        pad_top, pad_left = pad_h // 2, pad_w // 2
        pad_bottom, pad_right = pad_h - pad_top, pad_w - pad_left
    else:
        (pad_top, pad_left), (pad_bottom, pad_right) = padding, padding
    x, w, dout = x.detach(), w.detach(), dout.detach()  # gradients by hand: nothing for autograd to record
    x_pad = F.pad(x, (pad_left, pad_right, pad_top, pad_bottom))  # (N, C_in, H_pad, W_pad), a copy of x
    windows = x_pad.unfold(2, dH * (kH - 1) + 1, sH).unfold(3, dW * (kW - 1) + 1, sW)[..., ::dH, ::dW]  # (N, C_in, H_out, W_out, kH, kW)
    cols = windows.permute(1, 4, 5, 0, 2, 3).reshape(groups, -1, N * H_out * W_out)  # (G, C_in/G*kH*kW, N*L), L = H_out*W_out
    grad = dout.transpose(0, 1).reshape(groups, C_out // groups, N * H_out * W_out)  # (G, C_out/G, N*L)
    w_mat = w.reshape(groups, C_out // groups, -1)  # (G, C_out/G, C_in/G*kH*kW)
    dw = grad @ cols.transpose(1, 2)  # (G, C_out/G, N*L) @ (G, N*L, C_in/G*kH*kW) -> (G, C_out/G, C_in/G*kH*kW), summed over the batch
    dw = dw.reshape(w.shape)  # (C_out, C_in/G, kH, kW)
    # dw was the last use of cols, and dcols has its shape: write it there instead of allocating as
    # much memory again (56 MB on AlexNet's conv2; fresh memory costs a page fault every 4 KiB).
    # cols never shares memory with x: it is our copy, or a view of the padded copy x_pad.
    dcols = torch.matmul(w_mat.transpose(1, 2), grad, out=cols)  # (G, C_in/G*kH*kW, C_out/G) @ (G, C_out/G, N*L) -> (G, C_in/G*kH*kW, N*L)
    dcols = dcols.view(C_in, kH, kW, N, H_out, W_out)  # (C_in, kH, kW, N, H_out, W_out)
    dx_pad = torch.zeros_like(x_pad)  # (N, C_in, H_pad, W_pad)
    for i in range(kH):
        for j in range(kW):
            # tap (i, j) read x_pad[:, :, i*dH + h*sH, j*dW + w*sW] for output position (h, w)
            rows = slice(i * dH, i * dH + sH * (H_out - 1) + 1, sH)
            columns = slice(j * dW, j * dW + sW * (W_out - 1) + 1, sW)
            dx_pad[:, :, rows, columns] += dcols[:, i, j].transpose(0, 1)  # (N, C_in, H_out, W_out)
    dx = dx_pad[:, :, pad_top : pad_top + H, pad_left : pad_left + W]  # (N, C_in, H, W)
    db = dout.sum(dim=(0, 2, 3))  # (C_out,)
    return dx, dw, db
    # END SOLUTION


# ---------------------------------------------------------------------------- pooling


def max_pool2d(x: Tensor, kernel_size: IntOrPair, stride: IntOrPair | None = None, padding: IntOrPair = 0) -> Tensor:
    """2D max pooling: the largest value of each window, channel by channel.

    out[n, c, i, j] = max_{k, l} x_pad[n, c, i * sH + k, j * sW + l], where the padding is
    -inf (it never wins), as in F.max_pool2d. No dilation, no ceil_mode.

    Args:
        x: (N, C, H, W) input.
        kernel_size: int or (kH, kW).
        stride: int or (sH, sW); None means kernel_size (non-overlapping windows).
        padding: int or (pH, pW), at most half the kernel.

    Returns:
        (N, C, H_out, W_out), H_out = floor((H + 2 pH - kH) / sH) + 1.

    Written by hand (exercise 2.6; the grader reads your source): F.pad (value=-inf),
    Tensor.unfold, as_strided, F.unfold/F.fold, amax, max, argmax, gather, scatter_add_ and
    index_add_ are allowed; the library's pooling in any spelling (F.*pool*, torch.*pool*,
    nn.*Pool*, max_unpool), its convolutions and autograd are not.
    """
    kernel, stride, padding, _ = _check_pool("max_pool2d", x, kernel_size, stride, padding)
    # from here on kernel, stride and padding are pairs of ints (stride None is the kernel size)
    # BEGIN SOLUTION 2.6: Max pooling, forward and backward
    # HINT: x.unfold(2, kH, sH).unfold(3, kW, sW) views every window: (N, C, H_out, W_out, kH, kW).
    (kH, kW), (sH, sW), (pH, pW) = kernel, stride, padding
    x = F.pad(x, (pW, pW, pH, pH), value=-math.inf)  # (N, C, H + 2 pH, W + 2 pW)
    windows = x.unfold(2, kH, sH).unfold(3, kW, sW)  # (N, C, H_out, W_out, kH, kW)
    return windows.amax(dim=(-2, -1))  # (N, C, H_out, W_out)
    # END SOLUTION


def max_pool2d_backward(
    dout: Tensor, x: Tensor, kernel_size: IntOrPair, stride: IntOrPair | None = None, padding: IntOrPair = 0
) -> Tensor:
    """Gradient of a loss through `max_pool2d(x, kernel_size, stride, padding)`.

    Each window sends its gradient to the position of its maximum and nowhere else. When
    windows overlap (stride < kernel, e.g. AlexNet's 3x3 windows with stride 2) a pixel can be
    the maximum of several windows: it receives the sum of their gradients. Ties within a
    window go to the first maximum in row-major order (top row first, then leftmost), as
    PyTorch does, so the gradient is never split or duplicated.

    Args:
        dout: (N, C, H_out, W_out) gradient with respect to the pooled output.
        x: (N, C, H, W) the forward pass's input.
        kernel_size, stride, padding: as in `max_pool2d`.

    Returns:
        dx: (N, C, H, W).

    Written by hand, as exercise 2.6: see `max_pool2d` for what it may use.
    """
    kernel, stride, padding, out_shape = _check_pool("max_pool2d_backward", x, kernel_size, stride, padding)
    # from here on kernel, stride and padding are pairs of ints; out_shape = (H_out, W_out)
    _check_grad_output("max_pool2d_backward", dout, (*x.shape[:2], *out_shape))
    # BEGIN SOLUTION 2.6
    # HINT: argmax over a flattened window returns the first maximum; turn it into a row and a
    # HINT: column of the padded input, then add (not assign!) dout there: windows may overlap.
    (kH, kW), (sH, sW), (pH, pW) = kernel, stride, padding
    N, C, H, W = x.shape
    H_out, W_out = out_shape
    x_pad = F.pad(x, (pW, pW, pH, pH), value=-math.inf)  # (N, C, H_pad, W_pad)
    W_pad = x_pad.shape[3]
    windows = x_pad.unfold(2, kH, sH).unfold(3, kW, sW)  # (N, C, H_out, W_out, kH, kW)
    first_max = windows.reshape(N, C, H_out, W_out, kH * kW).argmax(dim=-1)  # (N, C, H_out, W_out)
    rows = torch.arange(H_out, device=x.device).view(H_out, 1) * sH + first_max // kW  # (N, C, H_out, W_out)
    cols = torch.arange(W_out, device=x.device).view(1, W_out) * sW + first_max % kW  # (N, C, H_out, W_out)
    flat_index = (rows * W_pad + cols).view(N, C, -1)  # (N, C, H_out*W_out)
    dx_pad = dout.new_zeros(N, C, x_pad.shape[2] * W_pad)  # (N, C, H_pad*W_pad)
    dx_pad.scatter_add_(2, flat_index, dout.reshape(N, C, -1))  # overlapping windows add up
    dx_pad = dx_pad.view(N, C, -1, W_pad)  # (N, C, H_pad, W_pad)
    return dx_pad[:, :, pH : pH + H, pW : pW + W]  # (N, C, H, W)
    # END SOLUTION


def avg_pool2d(x: Tensor, kernel_size: IntOrPair, stride: IntOrPair | None = None, padding: IntOrPair = 0) -> Tensor:
    """2D average pooling: the mean of each window, channel by channel.

    Padding is zeros and counts in the mean (F.avg_pool2d's default count_include_pad=True):
    every window divides by kH * kW, even at the border. No ceil_mode, no divisor_override.

    Args:
        x: (N, C, H, W) input.
        kernel_size: int or (kH, kW).
        stride: int or (sH, sW); None means kernel_size.
        padding: int or (pH, pW), at most half the kernel.

    Returns:
        (N, C, H_out, W_out), H_out = floor((H + 2 pH - kH) / sH) + 1.

    Written by hand (exercise 2.7; the grader reads your source): F.pad, Tensor.unfold,
    as_strided, F.unfold/F.fold, mean, sum, expand and index_add_ are allowed; the library's
    pooling in any spelling (F.interpolate's area mode among them), its convolutions (a box
    filter is an average pool) and autograd are not.
    """
    kernel, stride, padding, _ = _check_pool("avg_pool2d", x, kernel_size, stride, padding)
    # from here on kernel, stride and padding are pairs of ints (stride None is the kernel size)
    # BEGIN SOLUTION 2.7: Average pooling, forward and backward
    (kH, kW), (sH, sW), (pH, pW) = kernel, stride, padding
    x = F.pad(x, (pW, pW, pH, pH))  # (N, C, H + 2 pH, W + 2 pW), zeros
    windows = x.unfold(2, kH, sH).unfold(3, kW, sW)  # (N, C, H_out, W_out, kH, kW)
    return windows.mean(dim=(-2, -1))  # (N, C, H_out, W_out), each divided by kH * kW
    # END SOLUTION


def avg_pool2d_backward(
    dout: Tensor, x: Tensor, kernel_size: IntOrPair, stride: IntOrPair | None = None, padding: IntOrPair = 0
) -> Tensor:
    """Gradient of a loss through `avg_pool2d(x, kernel_size, stride, padding)`.

    Every pixel of a window receives dout / (kH * kW) from it (padding counts, so border
    windows divide by the full kernel size too); overlapping windows add up.

    Args:
        dout: (N, C, H_out, W_out) gradient with respect to the pooled output.
        x: (N, C, H, W) the forward pass's input (only its shape is used).
        kernel_size, stride, padding: as in `avg_pool2d`.

    Returns:
        dx: (N, C, H, W).

    Written by hand, as exercise 2.7: see `avg_pool2d` for what it may use.
    """
    kernel, stride, padding, out_shape = _check_pool("avg_pool2d_backward", x, kernel_size, stride, padding)
    # from here on kernel, stride and padding are pairs of ints; out_shape = (H_out, W_out)
    _check_grad_output("avg_pool2d_backward", dout, (*x.shape[:2], *out_shape))
    # BEGIN SOLUTION 2.7
    # HINT: F.fold spreads columns back onto an image and sums where windows overlap.
    (kH, kW), (sH, sW), (pH, pW) = kernel, stride, padding
    N, C, H, W = x.shape
    share = (dout / (kH * kW)).reshape(N * C, 1, -1)  # (N*C, 1, H_out*W_out)
    share = share.expand(-1, kH * kW, -1)  # (N*C, kH*kW, H_out*W_out)
    dx_pad = F.fold(share, (H + 2 * pH, W + 2 * pW), (kH, kW), stride=(sH, sW))  # (N*C, 1, H_pad, W_pad)
    dx_pad = dx_pad.view(N, C, H + 2 * pH, W + 2 * pW)  # (N, C, H_pad, W_pad)
    return dx_pad[:, :, pH : pH + H, pW : pW + W]  # (N, C, H, W)
    # END SOLUTION


# ---------------------------------------------------------------------------- a module


class Conv2dFunction(torch.autograd.Function):
    """conv2d as an autograd operation: forward with `conv2d`, backward with `conv2d_backward`.

    Call it as `Conv2dFunction.apply(x, weight, bias, stride, padding, dilation, groups)`;
    bias may be None.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, dilation, groups: int) -> Tensor:
        """Returns (N, C_out, H_out, W_out); saves what backward needs on ctx."""
        # BEGIN SOLUTION 2.8: A Conv2d module on your own forward and backward
        # HINT: ctx.save_for_backward(...) for tensors; plain attributes of ctx for the rest.
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.options = (stride, padding, dilation, groups)
        return conv2d(x, weight, bias, stride, padding, dilation, groups)
        # END SOLUTION

    @staticmethod
    def backward(ctx, dout: Tensor):
        """Returns one gradient per input of forward: (dx, dweight, dbias or None, None, None, None, None)."""
        # BEGIN SOLUTION 2.8
        # HINT: the four non-tensor arguments (stride, padding, dilation, groups) get None.
        x, weight = ctx.saved_tensors
        dx, dw, db = conv2d_backward(dout, x, weight, *ctx.options)
        return dx, dw, db if ctx.has_bias else None, None, None, None, None
        # END SOLUTION


class Conv2d(nn.Module):
    """A 2D convolution layer like nn.Conv2d, computed by `conv2d` and `conv2d_backward`.

    Args:
        in_channels, out_channels: C_in and C_out.
        kernel_size: int or (kH, kW).
        stride, padding, dilation, groups: as in `conv2d`.
        bias: whether to learn a bias.

    Shapes: input (N, C_in, H, W) -> output (N, C_out, H_out, W_out); weight
    (C_out, C_in / groups, kH, kW); bias (C_out,). Initialised like nn.Conv2d:
    uniform in +-1/sqrt(fan_in) with fan_in = C_in / groups * kH * kW (kaiming_uniform_ with a=sqrt(5)).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        stride: IntOrPair = 1,
        padding: Padding = 0,
        dilation: IntOrPair = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        for what, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Conv2d: {what} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide both in_channels ({in_channels}) and out_channels ({out_channels})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _as_tuple("Conv2d", "kernel_size", kernel_size, 2, 1)
        self.stride = _as_tuple("Conv2d", "stride", stride, 2, 1)
        self.dilation = _as_tuple("Conv2d", "dilation", dilation, 2, 1)
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"Conv2d: padding must be an int, a tuple of ints, 'valid' or 'same'; got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"Conv2d: padding='same' needs stride 1, got stride {self.stride}")
            self.padding = padding
        else:
            self.padding = _as_tuple("Conv2d", "padding", padding, 2, 0)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))  # (C_out, C_in/G, kH, kW)
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None  # (C_out,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Conv2d's initialisation: uniform in +-1/sqrt(fan_in) for weights and bias."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H_out, W_out)."""
        return Conv2dFunction.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding!r}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if self.bias is not None else ", bias=False")
