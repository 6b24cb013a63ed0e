"""Labs 3 and 4: LeNet-5 and AlexNet, two landmark convolutional networks, layer by layer.

LeNet-5 follows LeCun, Bottou, Bengio and Haffner 1998, "Gradient-based learning applied to
document recognition" (Fig. 2), as the lecture teaches it; AlexNet follows Krizhevsky,
Sutskever and Hinton 2012, "ImageNet classification with deep convolutional neural
networks" (Fig. 2 and Section 3), including its two towers, one per GPU.

Both models declare every layer in `__init__` with explicit sizes, and their `forward` does
one operation a line with the shape it produces. Around the two exercises sits provided
code: input checks that speak to you, a per-tower local response normalisation (on CUDA
through `labs.provided.fast_lrn`), the towers' convolutions as dense ones (`DenseTowerConv2d`),
a layer table (`summarize`) and feature maps (`layer_outputs`) for the notebooks' plots, and
`TwoTowerAlexNet`, which runs a trained AlexNet split over two devices as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labs.provided import fast_lrn  # the LRN as one matrix product, for CUDA (TowerLocalResponseNorm)

# ---------------------------------------------------------------- provided: checks and layer tables


def _check_option(model: str, name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{model} got {name}={value!r}: expected one of {choices}")


def _check_positive_int(model: str, name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{model} expected {name} to be a positive integer, got {value!r}")


def _check_image_batch(model: str, x: Tensor, channels: int, expected: str) -> None:
    """Raise a ValueError unless x is a floating-point (N, channels, H, W) batch."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{model} expected a torch.Tensor of shape {expected}, got {type(x).__name__}")
    if x.dim() == 3 and x.shape[0] == channels:
        raise ValueError(f"{model} expected input of shape {expected}, got {tuple(x.shape)}: add a batch dimension with x.unsqueeze(0)")
    if x.dim() != 4:
        raise ValueError(f"{model} expected input of shape {expected}, got {tuple(x.shape)}")
    if x.shape[1] != channels:
        kind = "one grey channel" if channels == 1 else f"{channels} colour channels (RGB)"
        raise ValueError(f"{model} expected input of shape {expected}, got {tuple(x.shape)}: it reads {kind}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{model} expected a floating-point input, got dtype {x.dtype}: convert images with x.float() / 255")


@dataclass
class LayerSummary:
    """One row of a layer table: a module call, the shape it produced and its parameters."""

    name: str  # the module's attribute name, e.g. "conv2"
    kind: str  # its class, e.g. "Conv2d"
    output_shape: tuple[int, ...]  # without the batch dimension, e.g. (256, 27, 27)
    parameters: int  # learnable values held by this module itself

    @property
    def outputs(self) -> int:
        """Values in one example's output: the paper's "neurons" of a layer."""
        n = 1
        for size in self.output_shape:
            n *= size
        return n


def _trace(model: nn.Module, x: Tensor) -> list[tuple[str, nn.Module, Tensor]]:
    """Run model(x) once and record (name, module, output) for every call of a leaf module.

    A leaf module holds no submodules (Conv2d, ReLU, MaxPool2d, ...). Works whatever the
    layers are named; a module called twice appears twice, as "name", then "name (2)".
    """
    calls: list[tuple[str, nn.Module, Tensor]] = []
    seen: dict[str, int] = {}
    hooks = []

    def record(name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            seen[name] = seen.get(name, 0) + 1
            label = name if seen[name] == 1 else f"{name} ({seen[name]})"
            calls.append((label, module, output))

        return hook

    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            hooks.append(module.register_forward_hook(record(name)))
    try:
        model(x)
    finally:
        for handle in hooks:
            handle.remove()
    return calls


@torch.no_grad()
def layer_outputs(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Every intermediate output of model(x), in the order computed: the feature maps to plot.

    Args:
        model: any nn.Module (LeNet5, AlexNet, ...); put it in eval() mode first for dropout.
        x: its input batch, e.g. (N, 1, 32, 32) for LeNet5.

    Returns:
        {layer name: output} for every leaf module call, each with its batch dimension, e.g.
        {"c1": (N, 6, 28, 28), "act1": (N, 6, 28, 28), "s2": (N, 6, 14, 14), ...}.
        `labs.provided.plots.show_feature_maps` draws one example's maps from this dict.
    """
    return {name: output.detach().clone() for name, _, output in _trace(model, x)}


@torch.no_grad()
def summarize(model: nn.Module, x: Tensor) -> list[LayerSummary]:
    """The layer table of model(x): every leaf module call with its output shape and parameters.

    Args:
        model: any nn.Module.
        x: an input batch; only the shapes matter (one example is enough).

    Returns:
        One LayerSummary per call, in the order computed. Parameter counts add up to the
        model's total when every parameter sits in a leaf module.
    """
    return [
        LayerSummary(name, type(module).__name__, tuple(output.shape[1:]), sum(p.numel() for p in module.parameters()))
        for name, module, output in _trace(model, x)
    ]


def format_summary(rows: list[LayerSummary], paper: dict[str, int] | None = None) -> str:
    """A plain-text table of `summarize`'s rows, with a column of the paper's numbers if given.

    Args:
        rows: from `summarize(model, x)`.
        paper: optional {layer name: outputs reported in the paper}, e.g. ALEXNET_PAPER_OUTPUTS.
    """
    header = f"{'layer':<10} {'type':<24} {'output shape':<16} {'outputs':>10} {'parameters':>12}"
    if paper is not None:
        header += f" {'paper':>10}"
    lines = [header, "-" * len(header)]
    for row in rows:
        line = f"{row.name:<10} {row.kind:<24} {str(row.output_shape):<16} {row.outputs:>10,} {row.parameters:>12,}"
        if paper is not None:
            line += f" {paper[row.name]:>10,}" if row.name in paper else f" {'':>10}"
        lines.append(line)
    lines.append("-" * len(header))
    lines.append(f"{'total':<10} {'':<24} {'':<16} {'':>10} {sum(row.parameters for row in rows):>12,}")
    return "\n".join(lines)


def count_parameters(model: nn.Module) -> int:
    """Learnable values in a model: 61,706 for LeNet5, 60,965,224 for AlexNet with groups=2."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _conv_class(conv: str) -> type[nn.Module]:
    """nn.Conv2d for conv="torch"; lab 2's Conv2d (labs/conv.py) for conv="lab"."""
    if conv == "torch":
        return nn.Conv2d
    from .conv import Conv2d  # imported here, so that a broken conv.py costs only conv="lab"

    return Conv2d


# ---------------------------------------------------------------- 3.1 LeNet-5


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998, Fig. 2) for 32x32 grey images, as the lecture teaches it.

        input  1@32x32          MNIST's 28x28 digits padded by 2 pixels on each side
        C1     6@28x28          5x5 convolution, 6 * (1*25 + 1)    =    156 parameters
        S2     6@14x14          2x2 pooling, stride 2                     0
        C3    16@10x10          5x5 convolution, 16 * (6*25 + 1)   =  2,416
        S4    16@5x5            2x2 pooling, stride 2                     0
        C5   120@1x1            5x5 convolution, 120 * (16*25 + 1) = 48,120
        F6    84                fully connected, 84 * (120 + 1)    = 10,164
        output 10 (num_classes) fully connected, 10 * (84 + 1)     =    850
                                                             total   61,706

    An activation follows C1, C3, C5 and F6; the output layer gives logits for
    cross-entropy. C5 is a 5x5 convolution, as in the paper: on a 5x5 map it is the same
    computation as flatten + Linear(400, 120), with the same 48,120 parameters, but it keeps
    the paper's name and its (N, 120, 1, 1) maps; it also runs through lab 2's Conv2d when
    conv="lab". Flatten after C5.

    Differences from the 1998 paper, all standard in teaching: C3 connects to all six S2 maps
    (the paper's connection table used 60 of the 96 pairs: 1,516 parameters instead of
    2,416); S2 and S4 have no trainable coefficient and bias; the activation is tanh or ReLU
    rather than 1.7159 tanh(2a/3); the output is a linear layer, not Euclidean RBF units.

    Args:
        num_classes: outputs of the last layer (10 digits).
        activation: "tanh" (as in the paper) or "relu".
        pooling: "avg" (the paper's subsampling), "max", or "stride": a learned 2x2
            convolution with stride 2 in place of each pooling layer (Springenberg et al. 2015,
            "Striving for simplicity"). Average pooling is such a convolution with its weights
            fixed at 1/4 (channel c to channel c), so "stride" learns the downsampling instead:
            S2 gets 6 * (6*4 + 1) = 150 parameters and S4 16 * (16*4 + 1) = 1,040, 62,896 in
            all. No activation follows it, just as none follows a pooling layer.
        conv: "torch" (nn.Conv2d) or "lab" (lab 2's Conv2d, your own convolution: slower).

    Layer names (the notebooks use them for the feature-map plots): c1, s2, c3, s4, c5, f6,
    output, with one activation module after each of c1, c3, c5, f6 (act1, act3, act5, act6)
    and a flatten module after act5.

    Shapes:
        input (N, 1, 32, 32) float -> logits (N, num_classes).
    """

    def __init__(self, num_classes: int = 10, activation: str = "tanh", pooling: str = "avg", conv: str = "torch") -> None:
        super().__init__()
        _check_positive_int("LeNet5", "num_classes", num_classes)
        _check_option("LeNet5", "activation", activation, ("tanh", "relu"))
        _check_option("LeNet5", "pooling", pooling, ("avg", "max", "stride"))
        _check_option("LeNet5", "conv", conv, ("torch", "lab"))
        self.num_classes, self.activation, self.pooling, self.conv = num_classes, activation, pooling, conv
        Conv = _conv_class(conv)  # nn.Conv2d or lab 2's Conv2d: same arguments, same weight layout
        Activation = nn.Tanh if activation == "tanh" else nn.ReLU
        # BEGIN SOLUTION 3.1: LeNet-5
        # HINT: build every convolution with `Conv` (so that conv="lab" works) and every activation with `Activation()`.
        # HINT: each pooling layer from `pooling`: nn.AvgPool2d(2), nn.MaxPool2d(2), or
        # HINT: Conv(channels, channels, kernel_size=2, stride=2) for "stride".
        def pool(channels: int) -> nn.Module:
            if pooling == "avg":
                return nn.AvgPool2d(kernel_size=2, stride=2)
            if pooling == "max":
                return nn.MaxPool2d(kernel_size=2, stride=2)
            return Conv(channels, channels, kernel_size=2, stride=2)

        self.c1 = Conv(1, 6, kernel_size=5)  # (N, 1, 32, 32) -> (N, 6, 28, 28)
        self.act1 = Activation()
        self.s2 = pool(6)  # (N, 6, 28, 28) -> (N, 6, 14, 14)
        self.c3 = Conv(6, 16, kernel_size=5)  # (N, 6, 14, 14) -> (N, 16, 10, 10)
        self.act3 = Activation()
        self.s4 = pool(16)  # (N, 16, 10, 10) -> (N, 16, 5, 5)
        self.c5 = Conv(16, 120, kernel_size=5)  # (N, 16, 5, 5) -> (N, 120, 1, 1)
        self.act5 = Activation()
        self.flatten = nn.Flatten()  # (N, 120, 1, 1) -> (N, 120)
        self.f6 = nn.Linear(120, 84)  # (N, 120) -> (N, 84)
        self.act6 = Activation()
        self.output = nn.Linear(84, num_classes)  # (N, 84) -> (N, num_classes)
        # END SOLUTION

    @staticmethod
    def check_input(x: Tensor) -> None:
        """Raise a ValueError that says what to do unless x is a (N, 1, 32, 32) float batch."""
        expected = "(N, 1, 32, 32)"
        _check_image_batch("LeNet5", x, 1, expected)
        if tuple(x.shape[2:]) == (28, 28):
            raise ValueError(
                f"LeNet5 expected input of shape {expected}, got {tuple(x.shape)}: pad MNIST by 2 pixels on "
                "each side with F.pad(x, (2, 2, 2, 2)), as LeCun et al. 1998 did"
            )
        if tuple(x.shape[2:]) != (32, 32):
            raise ValueError(f"LeNet5 expected input of shape {expected}, got {tuple(x.shape)}: resize or pad the images to 32x32")

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape (N, num_classes) for a batch x of shape (N, 1, 32, 32)."""
        self.check_input(x)
        # BEGIN SOLUTION 3.1
        x = self.c1(x)  # (N, 6, 28, 28)
        x = self.act1(x)  # (N, 6, 28, 28)
        x = self.s2(x)  # (N, 6, 14, 14)
        x = self.c3(x)  # (N, 16, 10, 10)
        x = self.act3(x)  # (N, 16, 10, 10)
        x = self.s4(x)  # (N, 16, 5, 5)
        x = self.c5(x)  # (N, 120, 1, 1)
        x = self.act5(x)  # (N, 120, 1, 1)
        x = self.flatten(x)  # (N, 120)
        x = self.f6(x)  # (N, 84)
        x = self.act6(x)  # (N, 84)
        return self.output(x)  # (N, num_classes)
        # END SOLUTION

    def feature_maps(self, x: Tensor) -> dict[str, Tensor]:
        """Every intermediate output for a batch x: {"c1": (N, 6, 28, 28), "act1": ..., "output": (N, 10)}."""
        return layer_outputs(self, x)


# ---------------------------------------------------------------- local response normalisation: exercise 4.2 and the provided layer


def channel_window_sum(t: Tensor, size: int) -> Tensor:
    """For each channel c, the sum of t over channels c - size//2 .. c + size//2 that exist.

    Shapes: (N, C, H, W) -> (N, C, H, W); size odd. The window is symmetric, so channel j lies
    in the window of channel c exactly when c lies in the window of j: the backward pass of
    local response normalisation sums over the same windows as its forward pass.

    Written by hand (exercise 4.2; the grader reads your source): F.pad, slices, sum, cumsum,
    pow and, for the window sum only, pooling or convolution are allowed, and so is
    torch.autograd.Function with ctx.save_for_backward; F.local_response_norm,
    nn.LocalResponseNorm, nn.CrossMapLRN2d, labs.provided.fast_lrn and autograd in the backward
    are not.
    """
    # BEGIN SOLUTION 4.2: Local response normalisation, forward and backward by hand
    # HINT: pad the channels with size//2 zeros on each side (F.pad(t, (0, 0, 0, 0, h, h))), then add `size` shifted slices.
    half = size // 2
    padded = F.pad(t, (0, 0, 0, 0, half, half))  # (N, C, H, W) -> (N, C + 2 * half, H, W)
    channels = t.shape[1]
    return sum(padded[:, i : i + channels] for i in range(size))  # size x (N, C, H, W), summed
    # END SOLUTION


class LocalResponseNormFunction(torch.autograd.Function):
    """Local response normalisation across all channels of x, with a hand-written backward pass.

        S[c] = sum of a[c']^2 over the window of c (`channel_window_sum(a ** 2, size)`)
        D[c] = k + alpha * S[c]
        b[c] = a[c] * D[c] ** -beta

    Call it as `LocalResponseNormFunction.apply(x, size, alpha, beta, k)`; x is (N, C, H, W)
    and so is the result. Notebook 04 derives the backward pass:

        dL/da[j] = g[j] * D[j] ** -beta
                   - 2 * alpha * beta * a[j] * (sum over c in the window of j of g[c] * a[c] * D[c] ** (-beta - 1))

    with g = dL/db.

    Written by hand, as exercise 4.2: see `channel_window_sum` for what it may use.
    """

    @staticmethod
    def forward(ctx, x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
        """Returns b (N, C, H, W); saves what backward needs on ctx."""
        # BEGIN SOLUTION 4.2
        # HINT: save x and D (ctx.save_for_backward); keep size, alpha and beta as attributes of ctx.
        denominator = k + alpha * channel_window_sum(x * x, size)  # D: (N, C, H, W)
        ctx.save_for_backward(x, denominator)
        ctx.size, ctx.alpha, ctx.beta = size, alpha, beta
        return x * denominator.pow(-beta)
        # END SOLUTION

    @staticmethod
    def backward(ctx, dout: Tensor):
        """Returns one gradient per input of forward: (dx, None, None, None, None)."""
        # BEGIN SOLUTION 4.2
        # HINT: the second term sums over windows again: channel_window_sum of g * a * D ** (-beta - 1).
        x, denominator = ctx.saved_tensors
        scaled = dout * denominator.pow(-ctx.beta)  # g * D^-beta: (N, C, H, W)
        through_sum = channel_window_sum(scaled * x / denominator, ctx.size)  # sum over windows of g a D^(-beta-1)
        dx = scaled - 2 * ctx.alpha * ctx.beta * x * through_sum
        return dx, None, None, None, None
        # END SOLUTION


def local_response_norm(x: Tensor, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> Tensor:
    """Local response normalisation across the channels of x (N, C, H, W), the paper's alpha (on the sum).

    Your `LocalResponseNormFunction` (exercise 4.2), after checking the input. The paper's
    values are the defaults. Raises TypeError for a non-tensor, ValueError for a non-float
    dtype, a shape other than (N, C, H, W) or an even or non-positive size.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"local_response_norm expected x to be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"local_response_norm expected a floating-point x, got dtype {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"local_response_norm expected x of shape (N, C, H, W), got {tuple(x.shape)}")
    if not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"local_response_norm expected an odd positive window size (the paper's is 5), got {size!r}")
    return LocalResponseNormFunction.apply(x, size, alpha, beta, k)


class TowerLocalResponseNorm(nn.Module):
    """Local response normalisation across channels (Krizhevsky et al. 2012, Section 3.3), per tower.

        b[c] = a[c] / (k + alpha * sum_{c' = c - size//2}^{c + size//2} a[c']^2) ** beta

    with the sum clipped to the channels that exist. The paper uses size 5, alpha 1e-4,
    beta 0.75, k 2. Two details that matter:

    - The paper's alpha multiplies the sum; torch's nn.LocalResponseNorm multiplies the
      *mean* over the window (alpha / size). This module passes alpha * size to torch, so its
      alpha is the paper's.
    - In the paper each GPU normalises only its own kernel maps. With `groups` towers, the
      channels are split into `groups` equal blocks and each block is normalised on its own,
      so no information crosses between towers here either.

    `impl` chooses how, all with the same result:

    - "auto" (the default): "fast" on CUDA, "torch" elsewhere (CPU, MPS);
    - "torch": F.local_response_norm, one tower at a time;
    - "fast": `labs.provided.fast_lrn.local_response_norm`, every tower in one matrix product
      with a hand-written backward pass, a custom op that torch.compile keeps whole (on any
      device: set it to try it on CPU);
    - "lab": your `local_response_norm` (exercise 4.2), whose backward pass you wrote (odd sizes only).

    Shapes: (N, C, H, W) -> (N, C, H, W), with C divisible by groups.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, groups: int = 1,
                 impl: str = "auto") -> None:
        super().__init__()
        _check_positive_int("TowerLocalResponseNorm", "size", size)
        _check_positive_int("TowerLocalResponseNorm", "groups", groups)
        _check_option("TowerLocalResponseNorm", "impl", impl, ("auto", "torch", "fast", "lab"))
        if impl == "lab" and size % 2 == 0:
            raise ValueError(f"TowerLocalResponseNorm(impl='lab') needs an odd size, got {size}")
        self.size, self.alpha, self.beta, self.k, self.groups, self.impl = size, alpha, beta, k, groups, impl

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] % self.groups != 0:
            raise ValueError(f"TowerLocalResponseNorm expected input of shape (N, C, H, W) with C divisible by groups={self.groups}, got {tuple(x.shape)}")
        impl = self.impl if self.impl != "auto" else ("fast" if x.is_cuda else "torch")
        if impl == "fast":  # all towers at once: a block-diagonal band matrix keeps them apart
            return fast_lrn.local_response_norm(x, self.size, self.alpha, self.beta, self.k, groups=self.groups)  # (N, C, H, W)
        towers = x.chunk(self.groups, dim=1)  # groups x (N, C / groups, H, W)
        if self.impl == "lab":
            normalised = [local_response_norm(t, self.size, self.alpha, self.beta, self.k) for t in towers]
        else:
            normalised = [F.local_response_norm(t, self.size, alpha=self.alpha * self.size, beta=self.beta, k=self.k) for t in towers]
        return torch.cat(normalised, dim=1)  # (N, C, H, W)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, groups={self.groups}, impl={self.impl!r}"


# The number of neurons per layer as printed in Section 3.5 of the paper. The first is
# inconsistent with the paper's own 224x224 input; a 227x227 input gives 96 * 55 * 55 = 290,400.
ALEXNET_PAPER_OUTPUTS = {
    "conv1": 253_440,
    "conv2": 186_624,
    "conv3": 64_896,
    "conv4": 64_896,
    "conv5": 43_264,
    "fc6": 4_096,
    "fc7": 4_096,
    "fc8": 1_000,
}

ALEXNET_GROUPS = (1, 2, 4, 8, 16, 32)  # the divisors of 96, 256 and 384 (channel counts to split)
ALEXNET_TOWER_CONVS = ("grouped", "dense")  # how conv2, conv4 and conv5 run their towers


def alexnet_min_size(small_inputs: bool = False) -> int:
    """The smallest square input AlexNet accepts: 67 with the paper's conv1, 29 with small_inputs."""
    for size in range(1, 400):
        if _alexnet_pool5_size(size, small_inputs) >= 1:
            return size
    raise AssertionError("unreachable")


def _alexnet_pool5_size(size: int, small_inputs: bool) -> int:
    """Side of pool5's maps for a size x size input (0 or less: the input is too small)."""
    stride, padding = (2, 5) if small_inputs else (4, 0)
    side = (size + 2 * padding - 11) // stride + 1  # conv1
    for _ in range(3):  # pool1, pool2 and pool5: 3x3, stride 2 (conv2 to conv5 keep the size)
        if side < 3:
            return 0
        side = (side - 3) // 2 + 1
    return side


# ---------------------------------------------------------------- provided: the towers as dense convolutions


class DenseTowerConv2d(nn.Conv2d):
    """A grouped nn.Conv2d computed as one dense convolution per tower, then concatenated.

    Same parameters (weight (C_out, C_in / groups, kH, kW), bias (C_out,)), same state_dict,
    same outputs as nn.Conv2d(..., groups=groups): tower g convolves input channels
    g * C_in/groups .. (g + 1) * C_in/groups - 1 with output kernels g * C_out/groups ..
    (g + 1) * C_out/groups - 1. Only the kernels differ: cuDNN's grouped convolutions are
    not always its fastest ones (benchmarks/bench_alexnet_throughput.py times both).
    Zero padding only.

    Shapes: (N, C_in, H, W) -> (N, C_out, H_out, W_out), as nn.Conv2d.
    """

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> DenseTowerConv2d:
        """A DenseTowerConv2d that shares conv's weight and bias (the same Parameters, not copies)."""
        if conv.padding_mode != "zeros":
            raise ValueError(f"DenseTowerConv2d supports zero padding only, got padding_mode={conv.padding_mode!r}")
        dense = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None, device="meta")
        dense.weight, dense.bias = conv.weight, conv.bias
        return dense.train(conv.training)

    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        towers = x.chunk(self.groups, dim=1)  # groups x (N, C_in / groups, H, W)
        kernels = weight.chunk(self.groups, dim=0)  # groups x (C_out / groups, C_in / groups, kH, kW)
        biases = bias.chunk(self.groups) if bias is not None else (None,) * self.groups  # groups x (C_out / groups,)
        maps = [F.conv2d(t, w, b, self.stride, self.padding, self.dilation) for t, w, b in zip(towers, kernels, biases)]  # groups x (N, C_out / groups, H_out, W_out)
        return torch.cat(maps, dim=1)  # (N, C_out, H_out, W_out)


def _grouped_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A plain nn.Conv2d that shares a DenseTowerConv2d's weight and bias: the inverse of from_conv."""
    grouped = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                        dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None, device="meta")
    grouped.weight, grouped.bias = conv.weight, conv.bias
    return grouped.train(conv.training)


# ---------------------------------------------------------------- 4.1 AlexNet


class AlexNet(nn.Module):
    """AlexNet (Krizhevsky, Sutskever and Hinton 2012, Fig. 2) on 3x227x227 images.

        layer  output        operation                                           parameters
        conv1   96@55x55     11x11 stride 4, ReLU, LRN, 3x3 stride 2 max pool        34,944
        conv2  256@27x27     5x5 pad 2, groups 2, ReLU, LRN, 3x3 stride 2 max pool  307,456
        conv3  384@13x13     3x3 pad 1, reads both towers, ReLU                     885,120
        conv4  384@13x13     3x3 pad 1, groups 2, ReLU                              663,936
        conv5  256@13x13     3x3 pad 1, groups 2, ReLU, 3x3 stride 2 max pool       442,624
        fc6   4096           fully connected from 256*6*6 = 9,216, ReLU, dropout 37,752,832
        fc7   4096           fully connected, ReLU, dropout                      16,781,312
        fc8   num_classes    fully connected (logits)                             4,097,000
                                                                         total   60,965,224

    (Output counts 290,400 - 186,624 - 64,896 - 64,896 - 43,264 - 4,096 - 4,096 - 1,000.)
    The max pooling overlaps (3x3 windows, stride 2), which the paper found to overfit
    slightly less. LRN is TowerLocalResponseNorm (size 5, alpha 1e-4, beta 0.75, k 2), applied
    per tower: with groups=2 the two halves of the channels stay apart at conv2, conv4 and
    conv5, and meet only at conv3 and the fully-connected layers, as on the paper's two GPUs.
    With groups=1 (one tower) the model has 62,378,344 parameters. Dropout follows fc6 and
    fc7, as in the paper (torchvision puts it before fc6 and fc7 instead).

    Smaller inputs: an nn.AdaptiveAvgPool2d(6) sits between pool5 and fc6. At 227x227 pool5
    is already 6x6 and it changes nothing; for other sizes it averages (or repeats) pool5's
    maps into 6x6, so fc6 keeps its 9,216 inputs and the parameter count stays the paper's.
    The paper's conv1 (stride 4) needs inputs of at least 67x67; `small_inputs=True` gives
    conv1 stride 2 and padding 5 instead, for inputs from 29x29 up (CIFAR-10 at 32x32 or
    upsampled to 64x64: conv1 then keeps 32x32 maps of a 64x64 image instead of 14x14).

    Initialisation is PyTorch's default, not the paper's N(0, 0.01) weights with biases of 1.

    Args:
        num_classes: outputs of fc8 (1,000 ImageNet classes; 10 for CIFAR-10).
        groups: towers (the paper's GPUs) in conv2, conv4, conv5 and the LRNs: 2 as in the
            paper, 1 for a single tower; any divisor of 32 works.
        dropout: probability of zeroing each output of fc6 and fc7 during training.
        small_inputs: conv1 with stride 2 and padding 5, for images smaller than 67x67.
        tower_convs: "grouped" (one nn.Conv2d with groups=groups each) or "dense" (a
            DenseTowerConv2d: one dense convolution per tower) for conv2, conv4 and conv5;
            same parameters and outputs, other kernels. `set_tower_convs` switches later.

    The LRNs take `labs.provided.fast_lrn` on CUDA (TowerLocalResponseNorm's impl="auto").

    Layer names (TwoTowerAlexNet and the notebooks read the weights by them): conv1, conv2,
    conv3, conv4, conv5, fc6, fc7, fc8. Suggested for the others: relu1..relu7, norm1,
    norm2, pool1, pool2, pool5, avgpool, flatten, drop6, drop7.

    Shapes:
        input (N, 3, H, W) float, H and W >= 67 (>= 29 with small_inputs) -> logits (N, num_classes).
    """

    def __init__(self, num_classes: int = 1000, groups: int = 2, dropout: float = 0.5, small_inputs: bool = False,
                 tower_convs: str = "grouped") -> None:
        super().__init__()
        _check_positive_int("AlexNet", "num_classes", num_classes)
        _check_option("AlexNet", "groups", groups, ALEXNET_GROUPS)
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
            raise ValueError(f"AlexNet expected a dropout probability in [0, 1), got {dropout!r}")
        _check_option("AlexNet", "small_inputs", small_inputs, (False, True))
        _check_option("AlexNet", "tower_convs", tower_convs, ALEXNET_TOWER_CONVS)
        self.num_classes, self.groups, self.dropout_p, self.small_inputs = num_classes, groups, float(dropout), bool(small_inputs)
        conv1_stride, conv1_padding = (2, 5) if small_inputs else (4, 0)
        # BEGIN SOLUTION 4.1: AlexNet
        # HINT: nn.Conv2d(..., groups=groups) splits a layer into towers; TowerLocalResponseNorm(groups=groups)
        # HINT: keeps the normalisation inside each tower. Pooling: nn.MaxPool2d(kernel_size=3, stride=2).
        self.conv1 = nn.Conv2d(3, 96, kernel_size=11, stride=conv1_stride, padding=conv1_padding)  # (N, 3, 227, 227) -> (N, 96, 55, 55)
        self.relu1 = nn.ReLU()
        self.norm1 = TowerLocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0, groups=groups)
        self.pool1 = nn.MaxPool2d(kernel_size=3, stride=2)  # (N, 96, 55, 55) -> (N, 96, 27, 27)
        self.conv2 = nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=groups)  # (N, 96, 27, 27) -> (N, 256, 27, 27)
        self.relu2 = nn.ReLU()
        self.norm2 = TowerLocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0, groups=groups)
        self.pool2 = nn.MaxPool2d(kernel_size=3, stride=2)  # (N, 256, 27, 27) -> (N, 256, 13, 13)
        self.conv3 = nn.Conv2d(256, 384, kernel_size=3, padding=1)  # (N, 256, 13, 13) -> (N, 384, 13, 13), both towers
        self.relu3 = nn.ReLU()
        self.conv4 = nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=groups)  # (N, 384, 13, 13) -> (N, 384, 13, 13)
        self.relu4 = nn.ReLU()
        self.conv5 = nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=groups)  # (N, 384, 13, 13) -> (N, 256, 13, 13)
        self.relu5 = nn.ReLU()
        self.pool5 = nn.MaxPool2d(kernel_size=3, stride=2)  # (N, 256, 13, 13) -> (N, 256, 6, 6)
        self.avgpool = nn.AdaptiveAvgPool2d(6)  # (N, 256, h, w) -> (N, 256, 6, 6); identity at 227x227
        self.flatten = nn.Flatten()  # (N, 256, 6, 6) -> (N, 9216)
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)  # (N, 9216) -> (N, 4096)
        self.relu6 = nn.ReLU()
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Linear(4096, 4096)  # (N, 4096) -> (N, 4096)
        self.relu7 = nn.ReLU()
        self.drop7 = nn.Dropout(dropout)
        self.fc8 = nn.Linear(4096, num_classes)  # (N, 4096) -> (N, num_classes)
        # END SOLUTION
        self.set_tower_convs(tower_convs)

    def set_tower_convs(self, tower_convs: str) -> None:
        """Run conv2, conv4 and conv5 "grouped" (nn.Conv2d) or "dense" (DenseTowerConv2d), keeping their Parameters."""
        _check_option("AlexNet", "tower_convs", tower_convs, ALEXNET_TOWER_CONVS)
        for name in ("conv2", "conv4", "conv5"):
            conv = getattr(self, name)
            if tower_convs == "dense" and not isinstance(conv, DenseTowerConv2d):
                setattr(self, name, DenseTowerConv2d.from_conv(conv))
            elif tower_convs == "grouped" and isinstance(conv, DenseTowerConv2d):
                setattr(self, name, _grouped_conv(conv))
        self.tower_convs = tower_convs

    @staticmethod
    def check_input(x: Tensor, small_inputs: bool = False) -> None:
        """Raise a ValueError that says what to do unless x is a (N, 3, H, W) float batch large enough."""
        expected = "(N, 3, H, W)"
        _check_image_batch("AlexNet", x, 3, expected)
        minimum = alexnet_min_size(small_inputs)
        if min(x.shape[2:]) < minimum:
            fix = "upsample the images (F.interpolate) or build AlexNet(small_inputs=True)" if not small_inputs else "upsample the images (F.interpolate)"
            raise ValueError(
                f"AlexNet{'(small_inputs=True)' if small_inputs else ''} expected images of at least {minimum}x{minimum} "
                f"(the paper's are 227x227), got {tuple(x.shape)}: {fix}"
            )

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape (N, num_classes) for a batch x of shape (N, 3, H, W); shapes below for 227x227."""
        self.check_input(x, self.small_inputs)
        # BEGIN SOLUTION 4.1
        x = self.conv1(x)  # (N, 96, 55, 55)
        x = self.relu1(x)  # (N, 96, 55, 55)
        x = self.norm1(x)  # (N, 96, 55, 55)
        x = self.pool1(x)  # (N, 96, 27, 27)
        x = self.conv2(x)  # (N, 256, 27, 27)
        x = self.relu2(x)  # (N, 256, 27, 27)
        x = self.norm2(x)  # (N, 256, 27, 27)
        x = self.pool2(x)  # (N, 256, 13, 13)
        x = self.conv3(x)  # (N, 384, 13, 13)
        x = self.relu3(x)  # (N, 384, 13, 13)
        x = self.conv4(x)  # (N, 384, 13, 13)
        x = self.relu4(x)  # (N, 384, 13, 13)
        x = self.conv5(x)  # (N, 256, 13, 13)
        x = self.relu5(x)  # (N, 256, 13, 13)
        x = self.pool5(x)  # (N, 256, 6, 6)
        x = self.avgpool(x)  # (N, 256, 6, 6)
        x = self.flatten(x)  # (N, 9216)
        x = self.fc6(x)  # (N, 4096)
        x = self.relu6(x)  # (N, 4096)
        x = self.drop6(x)  # (N, 4096)
        x = self.fc7(x)  # (N, 4096)
        x = self.relu7(x)  # (N, 4096)
        x = self.drop7(x)  # (N, 4096)
        return self.fc8(x)  # (N, num_classes)
        # END SOLUTION

    def feature_maps(self, x: Tensor) -> dict[str, Tensor]:
        """Every intermediate output for a batch x: {"conv1": (N, 96, 55, 55), ..., "fc8": (N, num_classes)}."""
        return layer_outputs(self, x)


# ---------------------------------------------------------------- provided: AlexNet on two devices


class _Tower(nn.Module):
    """One half of a two-tower AlexNet: half of every layer's kernels, on one device."""

    def __init__(self, model: AlexNet, half: int, device: torch.device) -> None:
        super().__init__()
        conv1 = model.conv1
        self.conv1 = _conv_part(conv1, half, conv1.in_channels, stride=conv1.stride, padding=conv1.padding)  # 3 -> 48
        self.conv2 = _conv_part(model.conv2, half, 48, padding=2)  # 48 -> 128: its own tower's maps only
        self.conv3 = _conv_part(model.conv3, half, 256, padding=1)  # 256 -> 192: both towers' maps
        self.conv4 = _conv_part(model.conv4, half, 192, padding=1)  # 192 -> 192
        self.conv5 = _conv_part(model.conv5, half, 192, padding=1)  # 192 -> 128
        self.fc6 = _linear_part(model.fc6, half)  # 9216 -> 2048: both towers' maps
        self.fc7 = _linear_part(model.fc7, half)  # 4096 -> 2048: both towers' units
        self.norm = TowerLocalResponseNorm(groups=1)  # each tower normalises its own maps
        self.to(device)


def _conv_part(conv: nn.Conv2d, half: int, in_channels: int, **kwargs) -> nn.Conv2d:
    """A copy of half of `conv`'s output kernels (half 0: the first, half 1: the second)."""
    out_channels = conv.out_channels // 2
    part = nn.Conv2d(in_channels, out_channels, kernel_size=conv.kernel_size, **kwargs)
    with torch.no_grad():
        part.weight.copy_(conv.weight[half * out_channels : (half + 1) * out_channels])  # (C_out / 2, C_in / groups, kH, kW)
        part.bias.copy_(conv.bias[half * out_channels : (half + 1) * out_channels])  # (C_out / 2,)
    return part


def _linear_part(linear: nn.Linear, half: int) -> nn.Linear:
    """A copy of half of `linear`'s output units, each reading all the inputs."""
    out_features = linear.out_features // 2
    part = nn.Linear(linear.in_features, out_features)
    with torch.no_grad():
        part.weight.copy_(linear.weight[half * out_features : (half + 1) * out_features])  # (out / 2, in)
        part.bias.copy_(linear.bias[half * out_features : (half + 1) * out_features])  # (out / 2,)
    return part


class TwoTowerAlexNet(nn.Module):
    """A groups=2 AlexNet run as in the paper: one tower per device, exchanging only where it did.

    Each device holds half of every layer's kernels (its tower). The towers compute conv1,
    conv2 and conv4, conv5 on their own maps; activations cross between devices only before
    conv3 and before each fully-connected layer, where every unit reads both towers. fc8 runs
    on the first device. Outputs equal the grouped model's up to rounding (test: both devices
    "cpu"). The weights are copies: training this model does not change `model`.

    Args:
        model: an AlexNet with groups=2 (trained or not), layers named conv1..conv5, fc6..fc8.
        devices: the two towers' devices, e.g. ("cuda:0", "cuda:1"); ("cpu", "cpu") works.

    Shapes:
        input (N, 3, H, W) on any device -> logits (N, num_classes) on devices[0].
    """

    def __init__(self, model: AlexNet, devices: tuple[str | torch.device, str | torch.device] = ("cuda:0", "cuda:1")) -> None:
        super().__init__()
        if getattr(model, "groups", None) != 2:
            raise ValueError(f"TwoTowerAlexNet needs an AlexNet with groups=2 (one tower per device), got groups={getattr(model, 'groups', None)!r}")
        if len(devices) != 2:
            raise ValueError(f"TwoTowerAlexNet expected two devices, e.g. ('cuda:0', 'cuda:1'), got {devices!r}")
        self.devices = tuple(torch.device(d) for d in devices)
        self.small_inputs, self.dropout_p = model.small_inputs, model.dropout_p
        self.towers = nn.ModuleList(_Tower(model, half, device) for half, device in enumerate(self.devices))
        self.fc8 = nn.Linear(4096, model.fc8.out_features).to(self.devices[0])
        with torch.no_grad():
            self.fc8.weight.copy_(model.fc8.weight)
            self.fc8.bias.copy_(model.fc8.bias)

    def _exchange(self, parts: list[Tensor]) -> list[Tensor]:
        """Both towers' activations, concatenated along dim 1, on each tower's device."""
        return [torch.cat([p.to(device) for p in parts], dim=1) for device in self.devices]

    def forward(self, x: Tensor) -> Tensor:
        AlexNet.check_input(x, self.small_inputs)
        t0, t1 = self.towers
        drop = lambda h: F.dropout(h, self.dropout_p, self.training)  # noqa: E731
        pool = lambda h: F.max_pool2d(h, kernel_size=3, stride=2)  # noqa: E731
        h = [x.to(device) for device in self.devices]  # 2 x (N, 3, 227, 227)
        h = [pool(t.norm(F.relu(t.conv1(v)))) for t, v in zip((t0, t1), h)]  # 2 x (N, 48, 27, 27)
        h = [pool(t.norm(F.relu(t.conv2(v)))) for t, v in zip((t0, t1), h)]  # 2 x (N, 128, 13, 13)
        h = self._exchange(h)  # 2 x (N, 256, 13, 13): conv3 reads both towers
        h = [F.relu(t.conv3(v)) for t, v in zip((t0, t1), h)]  # 2 x (N, 192, 13, 13)
        h = [F.relu(t.conv4(v)) for t, v in zip((t0, t1), h)]  # 2 x (N, 192, 13, 13)
        h = [pool(F.relu(t.conv5(v))) for t, v in zip((t0, t1), h)]  # 2 x (N, 128, 6, 6)
        h = [F.adaptive_avg_pool2d(v, 6).flatten(1) for v in h]  # 2 x (N, 4608)
        h = self._exchange(h)  # 2 x (N, 9216): fc6 reads both towers
        h = [drop(F.relu(t.fc6(v))) for t, v in zip((t0, t1), h)]  # 2 x (N, 2048)
        h = self._exchange(h)  # 2 x (N, 4096)
        h = [drop(F.relu(t.fc7(v))) for t, v in zip((t0, t1), h)]  # 2 x (N, 2048)
        h = torch.cat([h[0], h[1].to(self.devices[0])], dim=1)  # (N, 4096) on devices[0]
        return self.fc8(h)  # (N, num_classes)
