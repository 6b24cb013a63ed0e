"""The static by-hand check (labs/grader/trusted/by_hand.py): honest code passes, cheats are named.

The check only reads the sources below. Honest alternatives are also run, in float64 against
torch, to show that each is a real implementation in another style (and so a false positive
would cost a student points for correct work). Each cheat marks the line it must be flagged
at with `# <- flagged`, and names what the message must mention.
"""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from labs.grader.trusted.by_hand import RULES, Flag, check_source, check_submission

REPO_ROOT = Path(__file__).resolve().parents[3]
MODULES = ("basics", "mlp", "conv", "models")
BY_HAND = {"1.1", "1.2", "1.4", "1.5", "1.6", "1.7", "1.8", "1.11", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "4.2"}


def flags_of(module: str, source: str) -> dict[str, list[Flag]]:
    return check_source(textwrap.dedent(source), f"labs/{module}.py", module)


def describe(flags: dict[str, list[Flag]]) -> str:
    return "\n".join(f.message() for found in flags.values() for f in found) or "no flags"


def run(source: str) -> dict:
    """Execute an honest alternative (our own test text, never a submission) and return its namespace."""
    namespace: dict = {"__name__": "honest_alternative"}
    exec(compile(textwrap.dedent(source), "<honest alternative>", "exec"), namespace)
    return namespace


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    difference = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert torch.allclose(actual, expected, rtol=1e-9, atol=1e-10), f"{what}: off by up to {difference:.3g}"


def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)  # grades repeat


# ---------------------------------------------------------------- the rules and the catalog


def test_rules_cover_exactly_the_by_hand_exercises():
    assert set(RULES) == BY_HAND


def test_rules_name_the_catalogs_modules_and_functions():
    path = next(p for p in (REPO_ROOT / "labs/grader/exercises.json", REPO_ROOT / "labs/provided/exercises.json") if p.exists())
    catalog = {entry["id"]: entry for entry in json.loads(path.read_text())}
    for exercise, rule in RULES.items():
        assert rule.module == catalog[exercise]["module"], f"exercise {exercise}: module {rule.module}, catalog says {catalog[exercise]['module']}"
        assert list(rule.functions) == catalog[exercise]["functions"], f"exercise {exercise}: functions differ from {path.name}"
        assert rule.allowed_note.endswith("."), f"exercise {exercise}: allowed_note should be one sentence"


# ---------------------------------------------------------------- the reference and the stubs


@pytest.mark.parametrize("module", MODULES)
def test_reference_solution_has_no_flags(module):
    flags = check_source((REPO_ROOT / "solutions" / f"{module}.py").read_text(), f"solutions/{module}.py", module)
    assert set(flags) == {e for e, r in RULES.items() if r.module == module}
    assert not any(flags.values()), describe(flags)


def test_reference_solutions_read_together_have_no_flags():
    files = {m: ((REPO_ROOT / "solutions" / f"{m}.py").read_text(), f"solutions/{m}.py") for m in MODULES}
    flags = check_submission(files)
    assert set(flags) == BY_HAND
    assert not any(flags.values()), describe(flags)


@pytest.mark.parametrize("module", MODULES)
def test_student_stubs_have_no_flags(module):
    flags = check_source((REPO_ROOT / "labs" / f"{module}.py").read_text(), f"labs/{module}.py", module)
    assert not any(flags.values()), describe(flags)


def test_provided_code_that_no_by_hand_exercise_reaches_may_use_the_library():
    """solutions/models.py's TowerLocalResponseNorm calls F.local_response_norm, and the layers use nn.Conv2d: fine."""
    source = (REPO_ROOT / "solutions" / "models.py").read_text()
    assert "F.local_response_norm(" in source and "nn.Conv2d(" in source
    assert flags_of("models", source) == {"4.2": []}


# ---------------------------------------------------------------- honest alternatives: they run, and pass

DISTANCES_AND_ONE_HOT = {
    "unsqueeze and a product with itself": """
        import torch

        def pairwise_squared_distances(X, Y):
            differences = X.unsqueeze(1) - Y.unsqueeze(0)  # (N, M, D)
            return (differences * differences).sum(-1)

        def one_hot(y, num_classes):
            return torch.eye(num_classes, device=y.device)[y]
    """,
    "vector_norm and scatter_": """
        import torch
        from torch import linalg

        def pairwise_squared_distances(X, Y):
            return linalg.vector_norm(X[:, None, :] - Y[None, :, :], dim=-1) ** 2

        def one_hot(y, num_classes):
            Y = torch.zeros(y.shape[0], num_classes, device=y.device)
            return Y.scatter_(1, y[:, None], 1.0)
    """,
    "einsum and a comparison with arange": """
        import torch

        def pairwise_squared_distances(X, Y):
            d = X[:, None] - Y[None]
            return torch.einsum("nmd,nmd->nm", d, d)

        def one_hot(y, num_classes):
            return (y[:, None] == torch.arange(num_classes, device=y.device)[None, :]).to(torch.float32)
    """,
}

SOFTMAX_FAMILY = {
    "amax, exp and sum; gather; scatter_; diag_embed": """
        import torch

        def softmax(z, dim=-1):
            e = (z - z.amax(dim=dim, keepdim=True)).exp()
            return e / e.sum(dim=dim, keepdim=True)

        def log_softmax(z, dim=-1):
            s = z - z.amax(dim=dim, keepdim=True)
            return s - s.exp().sum(dim=dim, keepdim=True).log()

        def cross_entropy(logits, targets):
            return -log_softmax(logits, dim=1).gather(1, targets[:, None]).mean()

        def cross_entropy_grad(logits, targets):
            P = softmax(logits, dim=1)
            return (P - torch.zeros_like(P).scatter_(1, targets[:, None], 1.0)) / logits.shape[0]

        def softmax_jacobian(z):
            p = softmax(z, dim=0)
            return torch.diag_embed(p) - p[:, None] * p[None, :]
    """,
    "torch.max, torch.exp, torch.log; F.one_hot building blocks": """
        import torch
        import torch.nn.functional as F

        def softmax(z, dim=-1):
            m = torch.max(z, dim=dim, keepdim=True).values
            e = torch.exp(z - m)
            return e / torch.sum(e, dim=dim, keepdim=True)

        def log_softmax(z, dim=-1):
            m = torch.max(z, dim=dim, keepdim=True).values
            return z - m - torch.log(torch.sum(torch.exp(z - m), dim=dim, keepdim=True))

        def cross_entropy(logits, targets):
            Y = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
            return -(Y * log_softmax(logits, 1)).sum() / logits.shape[0]

        def cross_entropy_grad(logits, targets):
            Y = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
            return (softmax(logits, 1) - Y) / logits.shape[0]

        def softmax_jacobian(z):
            p = softmax(z, 0)
            return p[:, None] * (torch.eye(z.shape[0], dtype=z.dtype) - p[None, :])
    """,
    "log space first; indexing; an in-place subtraction": """
        import math
        import torch

        def log_softmax(z, dim=-1):
            shifted = z - z.max(dim=dim, keepdim=True)[0]
            return shifted - shifted.exp().sum(dim, keepdim=True).log()

        def softmax(z, dim=-1):
            return log_softmax(z, dim).exp()

        def cross_entropy(logits, targets):
            rows = torch.arange(logits.shape[0], device=logits.device)
            return -log_softmax(logits, 1)[rows, targets].sum() / logits.shape[0]

        def cross_entropy_grad(logits, targets):
            grad = softmax(logits, 1).clone()
            grad[torch.arange(logits.shape[0]), targets] -= 1.0
            return grad / logits.shape[0]

        def softmax_jacobian(z):
            p = softmax(z, 0)
            return torch.diag(p) - torch.outer(p, p)
    """,
}

ACTIVATIONS = {
    "torch.where and exp": """
        import torch

        def relu(z):
            return torch.where(z > 0, z, torch.zeros_like(z))

        def relu_grad(z):
            return torch.where(z > 0, torch.ones_like(z), torch.zeros_like(z))

        def sigmoid(z):
            e = torch.exp(-z.abs())
            return torch.where(z >= 0, 1 / (1 + e), e / (1 + e))

        def sigmoid_grad(z):
            s = sigmoid(z)
            return s - s * s

        def tanh(z):
            e = torch.exp(-2 * z.abs())
            return torch.sign(z) * (1 - e) / (1 + e)

        def tanh_grad(z):
            return 1 - tanh(z) ** 2
    """,
    "clamp, maximum, expm1 and your own sigmoid for tanh": """
        import torch

        def relu(z):
            return torch.maximum(z, torch.zeros_like(z))

        def relu_grad(z):
            return (z > 0).to(z.dtype)

        def sigmoid(z):
            return torch.exp(-torch.logaddexp(torch.zeros_like(z), -z))

        def sigmoid_grad(z):
            return sigmoid(z) * sigmoid(-z)

        def tanh(z):
            return 2 * sigmoid(2 * z) - 1

        def tanh_grad(z):
            t = tanh(z)
            return (1 - t) * (1 + t)
    """,
    "a product with a mask, clamp_min and expm1": """
        import torch

        def relu(z):
            return z * (z > 0)

        def relu_grad(z):
            return z.gt(0).type(z.dtype)

        def sigmoid(z):
            return 0.5 * (1 + torch.sign(z) * (1 - torch.exp(-z.abs())) / (1 + torch.exp(-z.abs())))

        def sigmoid_grad(z):
            s = sigmoid(z)
            return s * (1 - s)

        def tanh(z):
            e = torch.expm1(-2 * z.abs())  # exp(-2|z|) - 1, in (-1, 0]
            return -torch.sign(z) * e / (2 + e)

        def tanh_grad(z):
            return 1 - tanh(z).pow(2)
    """,
}

MLP_BACKWARD = {
    "a loop from the last layer": """
        import torch

        def relu_grad(z):
            return (z > 0).to(z.dtype)

        def mlp_backward(params, cache, dlogits):
            A, Z = cache
            grads = []
            delta = dlogits
            for l in range(len(params) - 1, -1, -1):
                W, _ = params[l]
                grads.insert(0, (delta.T @ A[l], delta.sum(0)))
                if l > 0:
                    delta = (delta @ W) * relu_grad(Z[l - 1])
            return grads
    """,
    "einsum over reversed pairs": """
        import torch

        def mlp_backward(params, cache, dlogits):
            A, Z = cache
            grads = [None] * len(params)
            delta = dlogits
            for l, ((W, _), a) in reversed(list(enumerate(zip(params, A)))):
                grads[l] = (torch.einsum("no,ni->oi", delta, a), torch.einsum("no->o", delta))
                if l:
                    delta = torch.einsum("no,oi->ni", delta, W) * (Z[l - 1] > 0)
            return grads
    """,
    "matmul and a recursion": """
        import torch

        def _layer(params, A, Z, l, delta):
            W, _ = params[l]
            here = [(torch.matmul(delta.transpose(0, 1), A[l]), delta.sum(dim=0))]
            if l == 0:
                return here
            return _layer(params, A, Z, l - 1, torch.matmul(delta, W) * Z[l - 1].gt(0)) + here

        def mlp_backward(params, cache, dlogits):
            A, Z = cache
            return _layer(params, A, Z, len(params) - 1, dlogits)
    """,
}

CONVOLUTIONS = {  # int stride and padding, no dilation or groups: enough to show the styles
    "as_strided and einsum": """
        import torch
        import torch.nn.functional as F

        def conv1d(x, w, b=None, stride=1, padding=0):
            x = F.pad(x, (padding, padding))
            N, C, L = x.shape
            K = w.shape[2]
            L_out = (L - K) // stride + 1
            sN, sC, sL = x.stride()
            windows = x.as_strided((N, C, L_out, K), (sN, sC, sL * stride, sL))  # (N, C, L_out, K)
            out = torch.einsum("nctk,ock->not", windows, w)
            return out if b is None else out + b[None, :, None]

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            x = F.pad(x, (padding,) * 4)
            N, C, H, W = x.shape
            kH, kW = w.shape[2:]
            H_out, W_out = (H - kH) // stride + 1, (W - kW) // stride + 1
            sN, sC, sH, sW = x.stride()
            windows = x.as_strided((N, C, H_out, W_out, kH, kW), (sN, sC, sH * stride, sW * stride, sH, sW))
            out = torch.einsum("nchwkl,ockl->nohw", windows, w)
            return out if b is None else out + b.view(1, -1, 1, 1)
    """,
    "Tensor.unfold and one matmul": """
        import torch
        import torch.nn.functional as F

        def conv1d(x, w, b=None, stride=1, padding=0):
            windows = F.pad(x, (padding, padding)).unfold(2, w.shape[2], stride)  # (N, C, L_out, K)
            out = torch.tensordot(windows, w, dims=([1, 3], [1, 2])).permute(0, 2, 1)  # (N, C_out, L_out)
            return out if b is None else out + b[None, :, None]

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            N = x.shape[0]
            C_out, C_in, kH, kW = w.shape
            windows = F.pad(x, (padding,) * 4).unfold(2, kH, stride).unfold(3, kW, stride)  # (N, C, Ho, Wo, kH, kW)
            H_out, W_out = windows.shape[2:4]
            cols = windows.permute(0, 2, 3, 1, 4, 5).reshape(N * H_out * W_out, C_in * kH * kW)
            out = (cols @ w.reshape(C_out, -1).T).reshape(N, H_out, W_out, C_out).permute(0, 3, 1, 2)
            return out if b is None else out + b.view(1, -1, 1, 1)
    """,
    "F.pad and a loop over the kernel taps": """
        import torch
        import torch.nn.functional as F

        def conv1d(x, w, b=None, stride=1, padding=0):
            x = F.pad(x, (padding, padding))
            K = w.shape[2]
            L_out = (x.shape[2] - K) // stride + 1
            out = 0
            for k in range(K):
                out = out + torch.einsum("ncl,oc->nol", x[:, :, k : k + stride * (L_out - 1) + 1 : stride], w[:, :, k])
            return out if b is None else out + b[None, :, None]

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            x = F.pad(x, (padding,) * 4)
            kH, kW = w.shape[2:]
            H_out, W_out = (x.shape[2] - kH) // stride + 1, (x.shape[3] - kW) // stride + 1
            out = x.new_zeros(x.shape[0], w.shape[0], H_out, W_out)
            for i in range(kH):
                for j in range(kW):
                    tap = x[:, :, i : i + stride * (H_out - 1) + 1 : stride, j : j + stride * (W_out - 1) + 1 : stride]
                    out += torch.einsum("nchw,oc->nohw", tap, w[:, :, i, j])
            return out if b is None else out + b.view(1, -1, 1, 1)
    """,
    "im2col with F.unfold, and Python loops for the naive ones": """
        import torch
        import torch.nn.functional as F

        def conv1d_naive(x, w, b=None, stride=1, padding=0):
            x = F.pad(x, (padding, padding))
            K = w.shape[2]
            L_out = (x.shape[2] - K) // stride + 1
            columns = [(x[:, None, :, t * stride : t * stride + K] * w[None]).sum(dim=(2, 3)) for t in range(L_out)]
            out = torch.stack(columns, dim=2)
            return out if b is None else out + b[None, :, None]

        def conv2d_naive(x, w, b=None, stride=1, padding=0):
            x = F.pad(x, (padding,) * 4)
            kH, kW = w.shape[2:]
            H_out, W_out = (x.shape[2] - kH) // stride + 1, (x.shape[3] - kW) // stride + 1
            out = x.new_zeros(x.shape[0], w.shape[0], H_out, W_out)
            for i in range(H_out):
                for j in range(W_out):
                    patch = x[:, :, i * stride : i * stride + kH, j * stride : j * stride + kW]
                    out[:, :, i, j] = torch.einsum("nckl,ockl->no", patch, w)
            return out if b is None else out + b.view(1, -1, 1, 1)

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            N, _, H, W = x.shape
            C_out, _, kH, kW = w.shape
            cols = F.unfold(x, (kH, kW), padding=padding, stride=stride)  # (N, C_in*kH*kW, L)
            out = w.reshape(C_out, -1) @ cols  # (N, C_out, L)
            H_out, W_out = (H + 2 * padding - kH) // stride + 1, (W + 2 * padding - kW) // stride + 1
            out = out.view(N, C_out, H_out, W_out)
            return out if b is None else out + b.view(1, -1, 1, 1)
    """,
}

CONV_BACKWARDS = {
    "F.unfold and F.fold": """
        import torch
        import torch.nn.functional as F

        def conv2d_backward(dout, x, w, stride=1, padding=0, dilation=1, groups=1):
            N, C, H, W = x.shape
            C_out, _, kH, kW = w.shape
            cols = F.unfold(x, (kH, kW), padding=padding, stride=stride)  # (N, C*kH*kW, L)
            g = dout.reshape(N, C_out, -1)  # (N, C_out, L)
            dw = torch.einsum("nol,nkl->ok", g, cols).reshape(w.shape)
            dcols = torch.einsum("ok,nol->nkl", w.reshape(C_out, -1), g)
            dx = F.fold(dcols, (H, W), (kH, kW), padding=padding, stride=stride)
            return dx, dw, dout.sum(dim=(0, 2, 3))
    """,
    "a loop over the taps onto strided slices": """
        import torch
        import torch.nn.functional as F

        def conv2d_backward(dout, x, w, stride=1, padding=0, dilation=1, groups=1):
            x_pad = F.pad(x, (padding,) * 4)
            H_out, W_out = dout.shape[2:]
            dx_pad = torch.zeros_like(x_pad)
            dw = torch.zeros_like(w)
            for i in range(w.shape[2]):
                for j in range(w.shape[3]):
                    rows = slice(i, i + stride * (H_out - 1) + 1, stride)
                    cols = slice(j, j + stride * (W_out - 1) + 1, stride)
                    dw[:, :, i, j] = torch.einsum("nohw,nchw->oc", dout, x_pad[:, :, rows, cols])
                    dx_pad[:, :, rows, cols] += torch.einsum("nohw,oc->nchw", dout, w[:, :, i, j])
            H, W = x.shape[2:]
            return dx_pad[:, :, padding : padding + H, padding : padding + W], dw, dout.sum(dim=(0, 2, 3))
    """,
    "windows by Tensor.unfold and index_add_": """
        import torch
        import torch.nn.functional as F

        def conv2d_backward(dout, x, w, stride=1, padding=0, dilation=1, groups=1):
            N, C, H, W = x.shape
            kH, kW = w.shape[2:]
            x_pad = F.pad(x, (padding,) * 4)
            H_pad, W_pad = x_pad.shape[2:]
            windows = x_pad.unfold(2, kH, stride).unfold(3, kW, stride)  # (N, C, Ho, Wo, kH, kW)
            H_out, W_out = windows.shape[2:4]
            dw = torch.einsum("nohw,nchwkl->ockl", dout, windows)
            dwindows = torch.einsum("nohw,ockl->nchwkl", dout, w)
            rows = torch.arange(H_out)[:, None] * stride + torch.arange(kH)[None, :]  # (Ho, kH)
            cols = torch.arange(W_out)[:, None] * stride + torch.arange(kW)[None, :]  # (Wo, kW)
            index = (rows[:, None, :, None] * W_pad + cols[None, :, None, :]).reshape(-1)  # (Ho*Wo*kH*kW,)
            dx_pad = x.new_zeros(N, C, H_pad * W_pad).index_add_(2, index, dwindows.reshape(N, C, -1))
            dx = dx_pad.view(N, C, H_pad, W_pad)[:, :, padding : padding + H, padding : padding + W]
            return dx, dw, dout.sum(dim=(0, 2, 3))
    """,
}

POOLING = {  # padding 0, stride given: enough to show the styles
    "as_strided and amax; scatter_add_; F.fold": """
        import torch
        import torch.nn.functional as F

        def _windows(x, k, s):
            N, C, H, W = x.shape
            H_out, W_out = (H - k) // s + 1, (W - k) // s + 1
            sN, sC, sH, sW = x.stride()
            return x.as_strided((N, C, H_out, W_out, k, k), (sN, sC, sH * s, sW * s, sH, sW))

        def max_pool2d(x, kernel_size, stride=None, padding=0):
            return _windows(x, kernel_size, stride or kernel_size).amax(dim=(-2, -1))

        def max_pool2d_backward(dout, x, kernel_size, stride=None, padding=0):
            k, s = kernel_size, stride or kernel_size
            N, C, H, W = x.shape
            windows = _windows(x, k, s)
            first = windows.reshape(*windows.shape[:4], k * k).argmax(-1)  # (N, C, Ho, Wo)
            H_out, W_out = first.shape[2:]
            rows = torch.arange(H_out)[:, None] * s + first // k
            cols = torch.arange(W_out)[None, :] * s + first % k
            dx = dout.new_zeros(N, C, H * W).scatter_add_(2, (rows * W + cols).reshape(N, C, -1), dout.reshape(N, C, -1))
            return dx.view(N, C, H, W)

        def avg_pool2d(x, kernel_size, stride=None, padding=0):
            return _windows(x, kernel_size, stride or kernel_size).mean(dim=(-2, -1))

        def avg_pool2d_backward(dout, x, kernel_size, stride=None, padding=0):
            k, s = kernel_size, stride or kernel_size
            N, C, H, W = x.shape
            share = (dout / (k * k)).reshape(N * C, 1, -1).expand(-1, k * k, -1)
            return F.fold(share, (H, W), (k, k), stride=s).view(N, C, H, W)
    """,
    "Tensor.unfold and max; a one-hot of the argmax; a loop over taps": """
        import torch
        import torch.nn.functional as F

        def max_pool2d(x, kernel_size, stride=None, padding=0):
            k, s = kernel_size, stride or kernel_size
            windows = x.unfold(2, k, s).unfold(3, k, s)  # (N, C, Ho, Wo, k, k)
            return windows.reshape(*windows.shape[:4], -1).max(dim=-1).values

        def max_pool2d_backward(dout, x, kernel_size, stride=None, padding=0):
            k, s = kernel_size, stride or kernel_size
            N, C, H, W = x.shape
            cols = F.unfold(x.reshape(N * C, 1, H, W), k, stride=s)  # (N*C, k*k, L)
            first = cols.argmax(dim=1, keepdim=True)  # (N*C, 1, L)
            picked = torch.arange(k * k)[None, :, None] == first  # (N*C, k*k, L)
            spread = picked.to(dout.dtype) * dout.reshape(N * C, 1, -1)
            return F.fold(spread, (H, W), k, stride=s).view(N, C, H, W)

        def avg_pool2d(x, kernel_size, stride=None, padding=0):
            k, s = kernel_size, stride or kernel_size
            return x.unfold(2, k, s).unfold(3, k, s).mean(dim=(-2, -1))

        def avg_pool2d_backward(dout, x, kernel_size, stride=None, padding=0):
            k, s = kernel_size, stride or kernel_size
            H_out, W_out = dout.shape[2:]
            dx = torch.zeros_like(x)
            for i in range(k):
                for j in range(k):
                    dx[:, :, i : i + s * (H_out - 1) + 1 : s, j : j + s * (W_out - 1) + 1 : s] += dout / (k * k)
            return dx
    """,
    "F.unfold columns, amax and index_put_ with accumulate": """
        import torch
        import torch.nn.functional as F

        def max_pool2d(x, kernel_size, stride=None, padding=0):
            k, s = kernel_size, stride or kernel_size
            N, C, H, W = x.shape
            cols = F.unfold(x.reshape(N * C, 1, H, W), k, stride=s)  # (N*C, k*k, L)
            H_out, W_out = (H - k) // s + 1, (W - k) // s + 1
            return cols.amax(dim=1).view(N, C, H_out, W_out)

        def max_pool2d_backward(dout, x, kernel_size, stride=None, padding=0):
            k, s = kernel_size, stride or kernel_size
            N, C, H, W = x.shape
            first = x.unfold(2, k, s).unfold(3, k, s).flatten(-2).argmax(-1)  # (N, C, Ho, Wo)
            H_out, W_out = first.shape[2:]
            n, c, i, j = torch.meshgrid(torch.arange(N), torch.arange(C), torch.arange(H_out), torch.arange(W_out), indexing="ij")
            dx = torch.zeros_like(x)
            dx.index_put_((n, c, i * s + first // k, j * s + first % k), dout, accumulate=True)
            return dx

        def avg_pool2d(x, kernel_size, stride=None, padding=0):
            k, s = kernel_size, stride or kernel_size
            N, C, H, W = x.shape
            cols = F.unfold(x.reshape(N * C, 1, H, W), k, stride=s)
            return cols.mean(dim=1).view(N, C, (H - k) // s + 1, (W - k) // s + 1)

        def avg_pool2d_backward(dout, x, kernel_size, stride=None, padding=0):
            k, s = kernel_size, stride or kernel_size
            N, C, H, W = x.shape
            H_out, W_out = dout.shape[2:]
            rows = (torch.arange(H_out)[:, None] * s + torch.arange(k)[None, :]).reshape(-1)  # (Ho*k,)
            cols = (torch.arange(W_out)[:, None] * s + torch.arange(k)[None, :]).reshape(-1)  # (Wo*k,)
            share = (dout / (k * k)).repeat_interleave(k, dim=2).repeat_interleave(k, dim=3)  # (N, C, Ho*k, Wo*k)
            dx = torch.zeros_like(x).index_add_(2, rows, torch.zeros(N, C, rows.numel(), W, dtype=x.dtype).index_add_(3, cols, share))
            return dx
    """,
}

_LRN_FUNCTION = """
class LocalResponseNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):
        denominator = k + alpha * channel_window_sum(x * x, size)
        ctx.save_for_backward(x, denominator)
        ctx.size, ctx.alpha, ctx.beta = size, alpha, beta
        return x * denominator ** -beta

    @staticmethod
    def backward(ctx, dout):
        x, denominator = ctx.saved_tensors
        scaled = dout * torch.exp(-ctx.beta * torch.log(denominator))
        through = channel_window_sum(scaled * x / denominator, ctx.size)
        return scaled - 2 * ctx.alpha * ctx.beta * x * through, None, None, None, None
"""
LOCAL_RESPONSE_NORMS = {
    "a cumulative sum over padded channels": """
        import torch
        import torch.nn.functional as F

        def channel_window_sum(t, size):
            half, channels = size // 2, t.shape[1]
            running = F.pad(t, (0, 0, 0, 0, half + 1, half)).cumsum(dim=1)  # (N, C + size, H, W)
            return running[:, size : size + channels] - running[:, :channels]
    """,
    "a loop over channels with clipped windows": """
        import torch

        def channel_window_sum(t, size):
            half, channels = size // 2, t.shape[1]
            sums = [t[:, max(0, c - half) : min(channels, c + half + 1)].sum(dim=1) for c in range(channels)]
            return torch.stack(sums, dim=1)
    """,
    "a band matrix and einsum": """
        import torch

        def channel_window_sum(t, size):
            c = torch.arange(t.shape[1], device=t.device)
            band = ((c[:, None] - c[None, :]).abs() <= size // 2).to(t.dtype)  # (C, C)
            return torch.einsum("nchw,cd->ndhw", t, band)
    """,
    "an average pool over channels (pooling is a building block for the window sum)": """
        import torch
        import torch.nn.functional as F

        def channel_window_sum(t, size):
            padded = F.pad(t, (0, 0, 0, 0, size // 2, size // 2)).unsqueeze(1)  # (N, 1, C + 2 half, H, W)
            return F.avg_pool3d(padded, (size, 1, 1), stride=1).squeeze(1) * size
    """,
}

LOCAL_RESPONSE_NORMS = {name: textwrap.dedent(window_sum) + _LRN_FUNCTION for name, window_sum in LOCAL_RESPONSE_NORMS.items()}

HONEST = [
    *(("basics", name, source) for name, source in DISTANCES_AND_ONE_HOT.items()),
    *(("mlp", name, source) for name, source in {**SOFTMAX_FAMILY, **ACTIVATIONS, **MLP_BACKWARD}.items()),
    *(("conv", name, source) for name, source in {**CONVOLUTIONS, **CONV_BACKWARDS, **POOLING}.items()),
    *(("models", name, source) for name, source in LOCAL_RESPONSE_NORMS.items()),
]


@pytest.mark.parametrize("module, name, source", HONEST, ids=[f"{m}: {n}" for m, n, _ in HONEST])
def test_honest_alternative_has_no_flags(module, name, source):
    ast.parse(textwrap.dedent(source))  # a source that does not parse gets no flags: that would prove nothing
    flags = flags_of(module, source)
    assert not any(flags.values()), describe(flags)


def _data(*shape, positive=False):
    x = torch.randn(*shape, generator=generator(), dtype=torch.float64)
    return x.abs() + 0.1 if positive else x


@pytest.mark.parametrize("name", DISTANCES_AND_ONE_HOT)
def test_honest_distances_and_one_hot_are_right(name):
    ns = run(DISTANCES_AND_ONE_HOT[name])
    X, Y = _data(5, 3), _data(4, 3) + 1
    assert_close(ns["pairwise_squared_distances"](X, Y), torch.cdist(X, Y) ** 2, f"{name}: distances")
    y = torch.tensor([2, 0, 1, 2])
    assert torch.equal(ns["one_hot"](y, 4), F.one_hot(y, 4).float()), f"{name}: one-hot"


@pytest.mark.parametrize("name", SOFTMAX_FAMILY)
def test_honest_softmax_family_is_right(name):
    ns = run(SOFTMAX_FAMILY[name])
    z, targets = _data(4, 5) * 30, torch.tensor([0, 4, 2, 2])
    assert_close(ns["softmax"](z, dim=1), torch.softmax(z, dim=1), f"{name}: softmax")
    assert_close(ns["log_softmax"](z, dim=0), torch.log_softmax(z, dim=0), f"{name}: log_softmax")
    assert_close(ns["cross_entropy"](z, targets), F.cross_entropy(z, targets), f"{name}: cross_entropy")
    leaf = z.clone().requires_grad_()
    (expected,) = torch.autograd.grad(F.cross_entropy(leaf, targets), leaf)
    assert_close(ns["cross_entropy_grad"](z, targets), expected, f"{name}: cross_entropy_grad")
    v = z[0] / 30
    assert_close(ns["softmax_jacobian"](v), torch.autograd.functional.jacobian(lambda u: torch.softmax(u, 0), v), f"{name}: jacobian")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_honest_activations_are_right(name):
    ns = run(ACTIVATIONS[name])
    z = torch.cat([_data(20) * 5, torch.tensor([-800.0, 800.0], dtype=torch.float64)])
    for function, reference in (("relu", torch.relu), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh)):
        assert_close(ns[function](z), reference(z), f"{name}: {function}")
        leaf = z[:20].clone().requires_grad_()
        (expected,) = torch.autograd.grad(reference(leaf).sum(), leaf)
        assert_close(ns[f"{function}_grad"](z[:20]), expected, f"{name}: {function}_grad")


@pytest.mark.parametrize("name", MLP_BACKWARD)
def test_honest_mlp_backward_is_right(name):
    ns = run(MLP_BACKWARD[name])
    sizes = [3, 4, 5, 2]
    params = [(_data(n_out, n_in) + i, _data(n_out) - i) for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))]
    X, dlogits = _data(6, 3), _data(6, 2) * 2
    leaves = [(W.clone().requires_grad_(), b.clone().requires_grad_()) for W, b in params]
    A, Z, a = [X], [], X
    for l, (W, b) in enumerate(leaves):
        z = a @ W.T + b
        if l < len(leaves) - 1:
            Z.append(z.detach())
            a = torch.relu(z)
            A.append(a.detach())
    z.backward(dlogits)
    grads = ns["mlp_backward"](params, (A, Z), dlogits)
    for l, ((dW, db), (W, b)) in enumerate(zip(grads, leaves)):
        assert_close(dW, W.grad, f"{name}: dW_{l + 1}")
        assert_close(db, b.grad, f"{name}: db_{l + 1}")


@pytest.mark.parametrize("name", CONVOLUTIONS)
def test_honest_convolutions_are_right(name):
    ns = run(CONVOLUTIONS[name])
    x, w, b = _data(2, 3, 7, 6), _data(4, 3, 3, 2), _data(4)
    for stride, padding in ((1, 0), (2, 1)):
        for function in ("conv2d", "conv2d_naive"):
            if function in ns:
                expected = F.conv2d(x, w, b, stride=stride, padding=padding)
                assert_close(ns[function](x, w, b, stride=stride, padding=padding), expected, f"{name}: {function}")
        for function in ("conv1d", "conv1d_naive"):
            if function in ns:
                expected = F.conv1d(x[:, :, 0], w[:, :, 0], b, stride=stride, padding=padding)
                assert_close(ns[function](x[:, :, 0], w[:, :, 0], b, stride=stride, padding=padding), expected, f"{name}: {function}")


@pytest.mark.parametrize("name", CONV_BACKWARDS)
def test_honest_convolution_backwards_are_right(name):
    ns = run(CONV_BACKWARDS[name])
    for stride, padding in ((1, 0), (2, 1)):
        x, w, b = (t.requires_grad_() for t in (_data(2, 3, 7, 6), _data(4, 3, 3, 2), _data(4)))
        out = F.conv2d(x, w, b, stride=stride, padding=padding)
        dout = _data(*out.shape)
        out.backward(dout)
        dx, dw, db = ns["conv2d_backward"](dout, x.detach(), w.detach(), stride=stride, padding=padding)
        for got, leaf, what in ((dx, x, "dx"), (dw, w, "dw"), (db, b, "db")):
            assert_close(got, leaf.grad, f"{name}: {what} (stride {stride}, padding {padding})")


@pytest.mark.parametrize("name", POOLING)
def test_honest_pooling_is_right(name):
    ns = run(POOLING[name])
    for kernel, stride in ((2, 2), (3, 2)):
        x = _data(2, 3, 7, 8).requires_grad_()
        for function, reference in (("max_pool2d", F.max_pool2d), ("avg_pool2d", F.avg_pool2d)):
            out = reference(x, kernel, stride)
            assert_close(ns[function](x.detach(), kernel, stride), out.detach(), f"{name}: {function}")
            dout = _data(*out.shape)
            (expected,) = torch.autograd.grad(out, x, dout)
            assert_close(ns[f"{function}_backward"](dout, x.detach(), kernel, stride), expected, f"{name}: {function}_backward")


@pytest.mark.parametrize("name", LOCAL_RESPONSE_NORMS)
def test_honest_local_response_norms_are_right(name):
    ns = run(LOCAL_RESPONSE_NORMS[name])
    size, alpha, beta, k = 5, 1e-2, 0.75, 2.0
    x = _data(2, 7, 3, 3).requires_grad_()
    expected = F.local_response_norm(x, size, alpha=alpha * size, beta=beta, k=k)  # torch's alpha is on the mean
    got = ns["LocalResponseNormFunction"].apply(x, size, alpha, beta, k)
    assert_close(got, expected, f"{name}: forward")
    dout = _data(*x.shape) * 3
    (want,) = torch.autograd.grad(expected, x, dout)
    (have,) = torch.autograd.grad(got, x, dout)
    assert_close(have, want, f"{name}: backward")


# ---------------------------------------------------------------- cheats: each flagged where it is, naming what it used

CHEATS = [
    # (what, module, exercise, the message names, source with its flagged line marked)
    ("a plain call", "conv", "2.4", "torch.nn.functional.conv2d", """
        import torch.nn.functional as F

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            return F.conv2d(x, w, b, stride, padding, dilation, groups)  # <- flagged
    """),
    ("from ... import ... as", "conv", "2.4", "torch.nn.functional.conv2d", """
        from torch.nn.functional import conv2d as correlate

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            return correlate(x, w, b, stride, padding)  # <- flagged
    """),
    ("from torch import nn, then nn.functional", "conv", "2.2", "torch.nn.functional.conv1d", """
        from torch import nn

        def conv1d(x, w, b=None, stride=1, padding=0):
            return nn.functional.conv1d(x, w, b, stride, padding)  # <- flagged
    """),
    ("a module-level alias", "conv", "2.4", "torch.nn.functional.conv2d", """
        import torch.nn.functional as F

        fast = F.conv2d  # <- flagged

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            return fast(x, w, b, stride, padding)
    """),
    ("an alias of an alias of the module", "conv", "2.4", "torch.nn.functional.conv2d", """
        import torch
        nnf = torch.nn.functional
        G = nnf

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            H = G
            return H.conv2d(x, w, b, stride, padding)  # <- flagged
    """),
    ("a module-level lambda", "conv", "2.2", "torch.conv1d", """
        import torch

        _c = lambda x, w, b, s, p: torch.conv1d(x, w, b, s, p)  # <- flagged

        def conv1d(x, w, b=None, stride=1, padding=0):
            return _c(x, w, b, stride, padding)
    """),
    ("functools.partial", "conv", "2.6", "torch.nn.functional.max_pool2d", """
        import functools
        import torch.nn.functional as F

        _pool = functools.partial(F.max_pool2d, padding=0)  # <- flagged

        def max_pool2d(x, kernel_size, stride=None, padding=0):
            return _pool(x, kernel_size, stride)
    """),
    ("a helper function, two calls deep", "conv", "2.4", "_im2col", """
        import torch

        def _im2col(x, w):
            return torch.nn.functional.conv2d(x, w)  # <- flagged

        def _columns(x, w):
            return _im2col(x, w)

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            return _columns(x, w)
    """),
    ("a helper class's method", "conv", "2.7", "torch.nn.functional.avg_pool2d", """
        import torch.nn.functional as F

        class _Pooler:
            def __init__(self, k):
                self.k = k

            def __call__(self, x):
                return self.run(x)

            def run(self, x):
                return F.avg_pool2d(x, self.k)  # <- flagged

        def avg_pool2d(x, kernel_size, stride=None, padding=0):
            return _Pooler(kernel_size)(x)
    """),
    ("a helper class's attribute", "mlp", "1.4", "torch.nn.functional.log_softmax", """
        import torch

        class _Ops:
            log_softmax = torch.nn.functional.log_softmax  # <- flagged

        def log_softmax(z, dim=-1):
            return _Ops.log_softmax(z, dim)
    """),
    ("a decorator", "mlp", "1.8", "torch.sigmoid", """
        import torch

        def _library(f):
            return lambda z: torch.sigmoid(z)  # <- flagged

        @_library
        def sigmoid(z):
            return z
    """),
    ("a default argument", "mlp", "1.8", "torch.relu", """
        import torch

        def relu(z, _f=torch.relu):  # <- flagged
            return _f(z)
    """),
    ("a nested function", "conv", "2.4", "torch.nn.functional.conv2d", """
        import torch.nn.functional as F

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            def inner():
                return F.conv2d  # <- flagged
            return inner()(x, w)
    """),
    ("getattr with a computed name", "conv", "2.4", "getattr with a computed attribute name", """
        import torch.nn.functional as F

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            return getattr(F, "conv" + "2d")(x, w)  # <- flagged
    """),
    ("getattr with a literal name", "mlp", "1.8", "torch.tanh", """
        import torch

        def tanh(z):
            return getattr(torch, "tanh")(z)  # <- flagged
    """),
    ("a module's __dict__", "conv", "2.2", "__dict__", """
        import torch.nn.functional as F

        def conv1d(x, w, b=None, stride=1, padding=0):
            return F.__dict__["conv1d"](x, w)  # <- flagged
    """),
    ("vars()", "conv", "2.3", "vars", """
        import torch.nn.functional as F

        def conv2d_naive(x, w, b=None, stride=1, padding=0):
            return vars(F)["conv2d"](x, w)  # <- flagged
    """),
    ("globals()", "mlp", "1.4", "globals", """
        import torch

        def softmax(z, dim=-1):
            return globals()["tor" + "ch"].softmax(z, dim)  # <- flagged
    """),
    ("importlib", "conv", "2.1", "importlib", """
        def conv1d_naive(x, w, b=None, stride=1, padding=0):
            import importlib  # <- flagged
            return importlib.import_module("torch.nn.functional").conv1d(x, w)
    """),
    ("__import__", "conv", "2.6", "__import__", """
        def max_pool2d(x, kernel_size, stride=None, padding=0):
            return __import__("torch").nn.functional.max_pool2d(x, kernel_size)  # <- flagged
    """),
    ("torch.ops", "conv", "2.5", "torch.ops.aten.convolution_backward", """
        import torch

        def conv2d_backward(dout, x, w, stride=1, padding=0, dilation=1, groups=1):
            return torch.ops.aten.convolution_backward(  # <- flagged
                dout, x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, True])
    """),
    ("torch's private C bindings", "conv", "2.7", "torch._C._nn.avg_pool2d", """
        import torch

        def avg_pool2d(x, kernel_size, stride=None, padding=0):
            return torch._C._nn.avg_pool2d(x, kernel_size)  # <- flagged
    """),
    ("a numpy convolution", "conv", "2.1", "numpy.convolve", """
        import torch
        import numpy as np

        def conv1d_naive(x, w, b=None, stride=1, padding=0):
            return torch.from_numpy(np.convolve(x.numpy()[0, 0], w.numpy()[0, 0], "valid"))  # <- flagged
    """),
    ("a scipy correlation", "conv", "2.3", "scipy.signal.correlate2d", """
        import torch
        from scipy import signal

        def conv2d_naive(x, w, b=None, stride=1, padding=0):
            return torch.from_numpy(signal.correlate2d(x.numpy()[0, 0], w.numpy()[0, 0], "valid"))  # <- flagged
    """),
    ("numpy is not on the import list", "conv", "2.4", "imports numpy", """
        import numpy  # <- flagged
        import torch

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            return x
    """),
    ("a patched probe", "conv", "2.4", "labs.grader.worker.probes.count_torch_calls", """
        import labs
        import torch

        labs.grader.worker.probes.count_torch_calls = lambda function, *args, **kwargs: 1  # <- flagged

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            return x
    """),
    ("an imported probe module", "conv", "2.6", "labs.provided.probes", """
        from labs.provided import probes  # <- flagged

        def max_pool2d(x, kernel_size, stride=None, padding=0):
            return x
    """),
    ("a torch function mode", "mlp", "1.4", "TorchFunctionMode", """
        import torch

        class _Quiet(torch.overrides.TorchFunctionMode):  # <- flagged
            pass

        def softmax(z, dim=-1):
            with _Quiet():
                e = (z - z.amax(dim, keepdim=True)).exp()
            return e / e.sum(dim, keepdim=True)
    """),
    ("a __torch_function__", "conv", "2.4", "__torch_function__", """
        import torch

        class Quiet(torch.Tensor):
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):  # <- flagged
                return super().__torch_function__(func, types, args, kwargs or {})

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            return x.as_subclass(Quiet)
    """),
    ("sys.setprofile", "mlp", "1.8", "imports sys", """
        import sys  # <- flagged
        import torch

        def relu(z):
            sys.setprofile(None)
            return z.clamp_min(0)
    """),
    ("monkeypatching torch", "conv", "2.4", "torch.nn.functional.pad", """
        import torch
        import torch.nn.functional as F

        F.pad = lambda x, pad, value=0.0: x  # <- flagged

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            return x
    """),
    ("exec", "mlp", "1.4", "exec", """
        import torch

        exec(open("solutions/mlp.py").read())  # <- flagged
    """),
    ("eval", "mlp", "1.5", "eval", """
        import torch

        def cross_entropy(logits, targets):
            return eval("torch.nn.functional.cross_entropy")(logits, targets)  # <- flagged
    """),
    ("an import of the solutions", "mlp", "1.4", "solutions.mlp", """
        def softmax(z, dim=-1):
            from solutions.mlp import softmax as reference  # <- flagged
            return reference(z, dim)
    """),
    ("labs.use_implementation", "mlp", "1.4", "labs.use_implementation", """
        import labs

        def softmax(z, dim=-1):
            labs.use_implementation("solutions")  # <- flagged
            return z
    """),
    ("a module-level __getattr__", "mlp", "1.4", "__getattr__", """
        import torch

        def __getattr__(name):  # <- flagged
            return torch.nn.functional.__dict__[name]
    """),
    ("torch.autograd.grad in a backward", "mlp", "1.6", "torch.autograd.grad", """
        import torch
        import torch.nn.functional as F

        def cross_entropy_grad(logits, targets):
            with torch.enable_grad():
                z = logits.detach().clone()
                z.requires_grad = True
                loss = -(z - z.exp().sum(1, keepdim=True).log())[torch.arange(len(targets)), targets].mean()
                (grad,) = torch.autograd.grad(loss, z)  # <- flagged
            return grad
    """),
    ("autograd's jacobian", "mlp", "1.7", "torch.autograd.functional.jacobian", """
        import torch
        from torch.autograd.functional import jacobian

        def softmax(z, dim=-1):
            e = (z - z.amax(dim, keepdim=True)).exp()
            return e / e.sum(dim, keepdim=True)

        def softmax_jacobian(z):
            return jacobian(lambda v: softmax(v, 0), z)  # <- flagged
    """),
    ("torch.func", "mlp", "1.7", "torch.func.jacrev", """
        import torch

        def softmax_jacobian(z):
            return torch.func.jacrev(lambda v: (v - v.max()).exp() / (v - v.max()).exp().sum())(z)  # <- flagged
    """),
    (".backward() in a backward pass", "mlp", "1.11", ".backward", """
        import torch

        def mlp_backward(params, cache, dlogits):
            A, Z = cache
            leaves = [(W.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()) for W, b in params]
            a = A[0]
            for l, (W, b) in enumerate(leaves):
                a = a @ W.T + b
                if l < len(leaves) - 1:
                    a = a.clamp_min(0)
            a.backward(dlogits)  # <- flagged
            return [(W.grad, b.grad) for W, b in leaves]
    """),
    ("requires_grad_ and grad_fn", "mlp", "1.11", ".grad_fn", """
        import torch

        def mlp_backward(params, cache, dlogits):
            A, Z = cache
            W = params[0][0].detach().requires_grad_()
            out = A[0] @ W.T
            return out.grad_fn(dlogits)  # <- flagged
    """),
    ("requires_grad=True", "mlp", "1.8", "requires_grad=True", """
        import torch

        def relu_grad(z):
            leaf = torch.tensor(z.tolist(), dtype=z.dtype, requires_grad=True)  # <- flagged
            return leaf
    """),
    ("requires_grad_ in an LRN backward", "models", "4.2", ".requires_grad_", """
        import torch

        def channel_window_sum(t, size):
            return t

        class LocalResponseNormFunction(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, size, alpha, beta, k):
                ctx.save_for_backward(x)
                return x

            @staticmethod
            def backward(ctx, dout):
                (x,) = ctx.saved_tensors
                with torch.enable_grad():
                    leaf = x.detach().requires_grad_()  # <- flagged
                    (dx,) = torch.autograd.grad(leaf * 2, leaf, dout)
                return dx, None, None, None, None
    """),
    ("the library's LRN in forward", "models", "4.2", "torch.nn.functional.local_response_norm", """
        import torch
        import torch.nn.functional as F

        class LocalResponseNormFunction(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, size, alpha, beta, k):
                return F.local_response_norm(x, size, alpha * size, beta, k)  # <- flagged
    """),
    ("nn.LocalResponseNorm", "models", "4.2", "torch.nn.LocalResponseNorm", """
        import torch
        from torch import nn

        class LocalResponseNormFunction(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, size, alpha, beta, k):
                return nn.LocalResponseNorm(size, alpha * size, beta, k)(x)  # <- flagged
    """),
    ("the provided fast LRN", "models", "4.2", "labs.provided.fast_lrn.local_response_norm", """
        import torch
        from labs.provided import fast_lrn

        class LocalResponseNormFunction(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, size, alpha, beta, k):
                return fast_lrn.local_response_norm(x, size, alpha, beta, k)  # <- flagged
    """),
    ("F through a provided helper's imports", "models", "4.2", "labs.provided.training.F.local_response_norm", """
        from labs.provided.training import F

        def channel_window_sum(t, size):
            return F.local_response_norm(t, size)  # <- flagged
    """),
    ("a tensor method .softmax()", "mlp", "1.4", ".softmax", """
        def softmax(z, dim=-1):
            return z.softmax(dim)  # <- flagged
    """),
    ("a tensor method .log_softmax()", "mlp", "1.5", ".log_softmax", """
        import torch

        def cross_entropy(logits, targets):
            return -logits.log_softmax(1)[torch.arange(len(targets)), targets].mean()  # <- flagged
    """),
    ("logsumexp", "mlp", "1.4", "torch.logsumexp", """
        import torch

        def log_softmax(z, dim=-1):
            return z - torch.logsumexp(z, dim, keepdim=True)  # <- flagged
    """),
    ("torch.special", "mlp", "1.8", "torch.special.expit", """
        import torch

        def sigmoid(z):
            return torch.special.expit(z)  # <- flagged
    """),
    ("the nn loss module", "mlp", "1.5", "torch.nn.CrossEntropyLoss", """
        from torch import nn

        def cross_entropy(logits, targets):
            return nn.CrossEntropyLoss()(logits, targets)  # <- flagged
    """),
    ("nll_loss", "mlp", "1.6", "torch.nn.functional.nll_loss", """
        import torch
        import torch.nn.functional as F

        def cross_entropy_grad(logits, targets):
            return F.nll_loss(logits, targets)  # <- flagged
    """),
    ("F.one_hot", "basics", "1.2", "torch.nn.functional.one_hot", """
        import torch.nn.functional as F

        def one_hot(y, num_classes):
            return F.one_hot(y, num_classes).float()  # <- flagged
    """),
    ("torch.cdist", "basics", "1.1", "torch.cdist", """
        import torch

        def pairwise_squared_distances(X, Y):
            return torch.cdist(X, Y) ** 2  # <- flagged
    """),
    ("conv_transpose2d for dx", "conv", "2.5", "torch.nn.functional.conv_transpose2d", """
        import torch
        import torch.nn.functional as F

        def conv2d_backward(dout, x, w, stride=1, padding=0, dilation=1, groups=1):
            dx = F.conv_transpose2d(dout, w, stride=stride, padding=padding)  # <- flagged
            return dx, None, dout.sum((0, 2, 3))
    """),
    ("torch.nn.grad", "conv", "2.5", "torch.nn.grad.conv2d_weight", """
        import torch

        def conv2d_backward(dout, x, w, stride=1, padding=0, dilation=1, groups=1):
            dw = torch.nn.grad.conv2d_weight(x, w.shape, dout, stride, padding)  # <- flagged
            return None, dw, dout.sum((0, 2, 3))
    """),
    ("autograd in the conv backward", "conv", "2.5", "torch.autograd.grad", """
        import torch

        def conv2d_backward(dout, x, w, stride=1, padding=0, dilation=1, groups=1):
            x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
            out = (x[:, None] * w[None]).sum()
            return torch.autograd.grad(out, (x, w), dout)  # <- flagged
    """),
    ("a pooling module", "conv", "2.6", "torch.nn.MaxPool2d", """
        from torch import nn

        def max_pool2d(x, kernel_size, stride=None, padding=0):
            return nn.MaxPool2d(kernel_size, stride, padding)(x)  # <- flagged
    """),
    ("an average pool as a convolution", "conv", "2.7", "torch.conv2d", """
        import torch

        def avg_pool2d(x, kernel_size, stride=None, padding=0):
            C = x.shape[1]
            box = x.new_full((C, 1, kernel_size, kernel_size), 1 / kernel_size**2)
            return torch.conv2d(x, box, stride=stride or kernel_size, groups=C)  # <- flagged
    """),
    ("a module passed around as a value", "conv", "2.4", "passes the module torch.nn.functional", """
        import torch

        def _pick(namespace):
            return namespace.conv2d

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            return _pick(torch.nn.functional)(x, w)  # <- flagged
    """),
    ("operator.attrgetter with a literal", "conv", "2.2", ".conv1d", """
        import operator
        import torch

        _get = operator.attrgetter("conv1d")  # <- flagged

        def conv1d(x, w, b=None, stride=1, padding=0):
            return _get(torch)(x, w)
    """),
    ("operator.attrgetter with a computed name", "conv", "2.4", "attrgetter", """
        import operator
        import torch

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            name = "".join(["conv", "2d"])
            return operator.attrgetter(name)(torch)(x, w)  # <- flagged
    """),
    ("a star import after the definition", "mlp", "1.4", "torch.nn.functional.softmax", """
        def softmax(z, dim=-1):
            return z

        from torch.nn.functional import *  # <- flagged
    """),
    ("rebinding the exercise's name at module level", "mlp", "1.4", "torch.softmax", """
        import torch

        def softmax(z, dim=-1):
            e = (z - z.amax(dim, keepdim=True)).exp()
            return e / e.sum(dim, keepdim=True)

        softmax = lambda z, dim=-1: torch.softmax(z, dim)  # <- flagged
    """),
    ("a method inherited from torch.Tensor", "mlp", "1.4", ".softmax", """
        import torch

        class _T(torch.Tensor):
            pass

        def softmax(z, dim=-1):
            return _T.softmax(z, dim)  # <- flagged
    """),
    ("an nn.Parameter for autograd", "conv", "2.5", "torch.nn.Parameter", """
        import torch
        from torch import nn

        def conv2d_backward(dout, x, w, stride=1, padding=0, dilation=1, groups=1):
            w = nn.Parameter(w.clone())  # <- flagged
            return w
    """),
    ("annotations evaluated by typing.get_type_hints", "conv", "2.4", "typing.get_type_hints", """
        from __future__ import annotations
        import typing
        import torch.nn.functional as F

        def _hidden(x: F.conv2d):
            pass

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            return typing.get_type_hints(_hidden)["x"](x, w)  # <- flagged
    """),
    ("string.Formatter's field lookup", "mlp", "1.4", "string.Formatter", """
        import string

        def softmax(z, dim=-1):
            method, _ = string.Formatter().get_field("0.softmax", (type(z),), {})  # <- flagged
            return method(z, dim)
    """),
    ("a module-level container", "conv", "2.4", "torch.nn.functional.conv2d", """
        import torch.nn.functional as F

        _TABLE = {}

        def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            return _TABLE["c"](x, w)

        _TABLE["c"] = F.conv2d  # <- flagged
    """),
    ("a container filled by a helper", "mlp", "1.8", "torch.tanh", """
        import torch

        _OPS = []

        def _register():
            _OPS.append(torch.tanh)  # <- flagged

        _register()

        def tanh(z):
            return _OPS[0](z)
    """),
    ("softmax as autograd's gradient of a hand-written log-sum-exp (a dishonest-student review)", "mlp", "1.4", ".backward", """
        def softmax(z, dim=-1):
            shifted = z.detach().clone()
            shifted.requires_grad = True
            (shifted - shifted.amax(dim=dim, keepdim=True).detach()).exp().sum(dim=dim).log().sum().backward()  # <- flagged
            return shifted.grad
    """),
]


def _marked_line(source: str) -> int:
    lines = textwrap.dedent(source).splitlines()
    return next(i for i, line in enumerate(lines, start=1) if "# <- flagged" in line)


@pytest.mark.parametrize("what, module, exercise, named, source", CHEATS, ids=[c[0] for c in CHEATS])
def test_cheat_is_flagged_in_its_exercise_at_its_line(what, module, exercise, named, source):
    flags = flags_of(module, source)
    line = _marked_line(source)
    at_line = [f for f in flags[exercise] if f.line == line]
    assert at_line, f"{what}: exercise {exercise} not flagged at line {line}; got:\n{describe(flags)}"
    assert any(named in f.message() for f in at_line), f"{what}: no message names {named!r}; got:\n{describe(flags)}"
    assert all(f.message().startswith(f"exercise {exercise} ") and f"labs/{module}.py:{line};" in f.message() for f in at_line)


def test_message_names_exercise_call_place_and_reason():
    (flag,) = flags_of("conv", CHEATS[0][4])["2.4"]
    assert flag.message() == (
        "exercise 2.4 calls torch.nn.functional.conv2d at labs/conv.py:5; this exercise is written by hand (see its docstring)"
    )


def test_a_helpers_flag_says_which_helper_and_which_function_uses_it():
    source = next(c[4] for c in CHEATS if c[0] == "a helper function, two calls deep")
    (flag,) = flags_of("conv", source)["2.4"]
    assert "(in _im2col, which conv2d uses)" in flag.what


# ---------------------------------------------------------------- who gets flagged, and who does not


def _solution(module: str) -> str:
    return (REPO_ROOT / "solutions" / f"{module}.py").read_text()


def test_a_cheat_costs_only_the_exercises_that_reach_it():
    source = _solution("mlp") + "\n\nsoftmax = lambda z, dim=-1: torch.softmax(z, dim)\n"
    flagged = {e for e, found in flags_of("mlp", source).items() if found}
    assert flagged == {"1.4", "1.6", "1.7"}  # 1.6 and 1.7 call softmax; 1.5 calls log_softmax; 1.8 and 1.11 neither


def test_a_forbidden_call_in_one_function_leaves_the_others_alone():
    source = _solution("conv").replace(
        "    return windows.amax(dim=(-2, -1))  # (N, C, H_out, W_out)",
        "    return F.max_pool2d(x, kernel, stride)  # (N, C, H_out, W_out)",
    )
    assert source != _solution("conv")
    flags = flags_of("conv", source)
    assert {e for e, found in flags.items() if found} == {"2.6"}, describe(flags)


def test_an_import_inside_a_function_costs_that_functions_exercise():
    source = _solution("conv").replace("    N = x.shape[0]\n    C_out, kH, kW", "    import os\n    N = x.shape[0]\n    C_out, kH, kW", 1)
    assert source != _solution("conv")
    flags = flags_of("conv", source)
    assert {e for e, found in flags.items() if found} == {"2.4"}, describe(flags)


def test_an_opaque_module_level_statement_costs_every_by_hand_exercise_of_its_module():
    flags = flags_of("conv", _solution("conv") + "\n\nimport os\n")
    assert set(flags) == {"2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7"}
    assert all(found and "at module level" in found[0].why for found in flags.values()), describe(flags)


def test_exercises_that_are_not_by_hand_are_never_reported():
    source = _solution("conv") + "\n\ndef _library(x, w):\n    return F.conv2d(x, w)\n"
    assert set(flags_of("conv", source)) == {"2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7"}  # no 2.8
    assert set(flags_of("basics", _solution("basics"))) == {"1.1", "1.2"}  # no 1.3
    assert set(flags_of("models", _solution("models"))) == {"4.2"}  # no 3.1, 4.1


def test_names_are_followed_across_modules_when_all_are_given():
    conv = "import torch.nn.functional as F\n\ndef _window(t, size):\n    return F.local_response_norm(t, size)\n"
    models = "from .conv import _window\n\ndef channel_window_sum(t, size):\n    return _window(t, size)\n"
    flags = check_submission({"conv": (conv, "labs/conv.py"), "models": (models, "labs/models.py")})
    (flag,) = flags["4.2"]
    assert (flag.path, flag.line) == ("labs/conv.py", 4)
    assert "torch.nn.functional.local_response_norm (in labs.conv._window, which channel_window_sum uses)" in flag.what


def test_catalog_functions_override_the_rules_lists():
    source = "import torch.nn.functional as F\n\ndef my_conv(x, w):\n    return F.conv2d(x, w)\n"
    assert check_source(source, "labs/conv.py", "conv")["2.4"] == []
    assert check_source(source, "labs/conv.py", "conv", {"2.4": ["my_conv"]})["2.4"]


def test_a_source_that_does_not_parse_gets_no_flags():
    flags = check_source("def softmax(z:\n", "labs/mlp.py", "mlp")
    assert flags == {e: [] for e, r in RULES.items() if r.module == "mlp"}


@pytest.mark.parametrize("source", [
    "import torch\n\ndef relu(z):\n    if z.requires_grad:\n        raise ValueError(f'{z.__class__.__name__} needs no grad')\n    return z.clamp_min(0)\n",
    "import torch\nimport torch.nn.functional as F\n\ndef relu(z):\n    with torch.no_grad():\n        return torch.where(z > 0, z, 0.0)\n",
    "import torch\n\ndef relu(z):\n    return getattr(z, 'clamp_min')(0)\n",
    "import torch\n\ntorch.backends.cudnn.benchmark = True\n\ndef relu(z):\n    return z.clamp(min=0)\n",
    "import torch\n\ndef relu_grad(z):\n    with torch.set_grad_enabled(False):\n        return (z.detach().requires_grad_(False) > 0).to(z.dtype)\n",
])
def test_harmless_idioms_near_the_rules_are_not_flagged(source):
    flags = flags_of("mlp", source)
    assert not any(flags.values()), describe(flags)


@pytest.mark.parametrize("exercise", sorted(RULES))
def test_each_by_hand_exercise_says_its_rule_in_the_stub_docstring(exercise):
    """Students know the rule before they write: the stub's docstring carries the catalog's words."""
    rule = RULES[exercise]
    tree = ast.parse((REPO_ROOT / "labs" / f"{rule.module}.py").read_text())
    first = rule.functions[0].split(".")[0]
    node = next(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == first)
    docstring = " ".join((ast.get_docstring(node) or "").split())
    note = " ".join(rule.allowed_note.split())
    assert f"Written by hand (exercise {exercise}" in docstring, f"{first}'s docstring does not say that {exercise} is written by hand"
    assert note[1:] in docstring, f"{first}'s docstring does not carry the rule of exercise {exercise}: {textwrap.shorten(note, 120)}"


OTHER_OPERATIONS_THAT_DO_THE_JOB = [  # found by the end-to-end cheat check: library routines that are the answer in disguise
    ("1.4", "mlp", "import torch\nimport torch.nn.functional as F\ndef softmax(z, dim=-1):\n    eye = torch.eye(z.shape[dim])\n"
     "    return F.scaled_dot_product_attention(z.unsqueeze(-2), eye, eye, scale=1.0).squeeze(-2)\n", 5),
    ("1.4", "mlp", "import torch\ndef log_softmax(z, dim=-1):\n    return z - torch.logcumsumexp(z, dim).narrow(dim, z.shape[dim] - 1, 1)\n", 3),
    ("1.8", "mlp", "import torch\nimport torch.nn.functional as F\ndef sigmoid(z):\n    return F.glu(torch.stack([torch.ones_like(z), z]), dim=0)[0]\n", 4),
    ("1.8", "mlp", "import torch\ndef sigmoid(z):\n    return torch.softmax(torch.stack([torch.zeros_like(z), z]), 0)[1]\n", 3),
    ("2.7", "conv", "import torch.nn.functional as F\ndef avg_pool2d(x, kernel_size, stride=None, padding=0):\n"
     "    return F.interpolate(x, scale_factor=1 / kernel_size, mode='area')\n", 3),
]


@pytest.mark.parametrize("exercise, module, source, line", OTHER_OPERATIONS_THAT_DO_THE_JOB,
                         ids=["attention-softmax", "logcumsumexp", "glu-sigmoid", "softmax-sigmoid", "interpolate-area"])
def test_a_library_routine_that_is_the_answer_in_disguise_is_flagged(exercise, module, source, line):
    flags = check_source(source, f"labs/{module}.py", module)[exercise]
    assert any(flag.line == line for flag in flags), [flag.message() for flag in flags]


RED_TEAM_CHEATS = [  # a dishonest-student review found these ways past an earlier reading; each must stay flagged
    ("2.4", "conv", "import torch\nclass _K:\n    f = torch.nn.functional\n"
     "def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):\n    return _K.f.conv2d(x, w, b, stride, padding, dilation, groups)\n"),
    ("2.4", "conv", "import torch\nclass _K:\n    def __init__(self):\n        self.f = torch.nn.functional\n_k = _K()\n"
     "def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):\n    return _k.f.conv2d(x, w, b, stride, padding, dilation, groups)\n"),
    ("1.7", "mlp", "import torch\ndef softmax_jacobian(z):\n"
     "    return torch.nn.functional.torch.autograd.functional.jacobian(lambda v: v.exp() / v.exp().sum(), z)\n"),
    ("2.5", "conv", "import torch\ndef conv2d_backward(dout, x, w, stride=1, padding=0, dilation=1, groups=1):\n"
     "    return torch.autograd.function.torch.autograd.grad(x.sum(), (x, w), dout)\n"),
    ("1.4", "mlp", "import torch\ndef softmax(z, dim=-1):\n"
     "    return torch.nn.functional.torch.distributions.Categorical(logits=z).probs\n"),
    ("2.4", "conv", "import torch\n@torch.jit.script\ndef _loop(x, w):\n    return x\n"
     "def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):\n    return _loop(x, w)\n"),
]


@pytest.mark.parametrize("exercise, module, source", RED_TEAM_CHEATS,
                         ids=["class-attribute-module", "instance-attribute-module", "torch-through-a-submodule",
                              "exempt-prefix-re-export", "distributions-through-a-submodule", "jit-script-loop"])
def test_what_a_red_team_found_stays_flagged(exercise, module, source):
    assert check_source(source, f"labs/{module}.py", module)[exercise], f"exercise {exercise} not flagged:\n{source}"
