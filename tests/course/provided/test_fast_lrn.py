"""labs/provided/fast_lrn.py (local response normalisation as one matrix product) and what uses it:
TowerLocalResponseNorm's impl="auto" / "fast" and AlexNet's dense towers.

    .venv/bin/python -m pytest --impl solutions tests/course/provided/test_fast_lrn.py

CPU, float64: a hand case of the band matrix and of the formula; the forward pass against
F.local_response_norm and the reference's exercise 4.2 for odd and even windows, one and two
towers, NCHW, channels_last and strided inputs; the hand-written backward pass against autograd
through F.local_response_norm and torch.autograd.gradcheck; torch.library.opcheck on both custom
ops; torch.compile (aot_eager, and inductor as a slow test) against eager; AlexNet with the fast
LRN and with dense towers against the plain model. CUDA (marked gpu, skipped without CUDA): the
model takes the fast path there, agrees with torch in fp32, trains under bf16 autocast and
compiles, CUDA graphs included.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labs.provided import fast_lrn
from tests.helpers import assert_close

CUDA = torch.cuda.is_available()
cuda_only = pytest.mark.skipif(not CUDA, reason="needs CUDA: torch.cuda.is_available() is False on this machine")
LAYOUTS = ("contiguous", "channels_last", "strided")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread is as fast, and on a busy two-core machine two OpenMP threads
    waiting on each other made each elementwise kernel here 100x slower (22 ms for 43,200 values)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _input(shape: tuple[int, int, int, int], layout: str = "contiguous", seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """A float64 (N, C, H, W) batch of ReLU-like values in [0, 3), stored as `layout` says."""
    generator = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    if layout == "strided":  # every other column of a wider batch: neither NCHW- nor channels_last-contiguous
        x = 3 * torch.rand(n, c, h, 2 * w, dtype=torch.float64, generator=generator)[..., ::2]  # (N, C, H, W), strided
    else:
        x = 3 * torch.rand(shape, dtype=torch.float64, generator=generator)  # (N, C, H, W)
    x = x.to(device)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)  # (N, C, H, W) stored as (N, H, W, C)
    return x


def _torch_lrn(x: torch.Tensor, size: int, alpha: float, beta: float, k: float, groups: int) -> torch.Tensor:
    """The plain formula: F.local_response_norm per tower, alpha moved from the mean to the sum."""
    towers = x.chunk(groups, dim=1)  # groups x (N, C / groups, H, W)
    return torch.cat([F.local_response_norm(t, size, alpha=alpha * size, beta=beta, k=k) for t in towers], dim=1)  # (N, C, H, W)


# ----------------------------------------------------------------------------- by hand


def test_band_matrix_by_hand():
    # B[j, c] = 1 when channel j is in the window of c. Size 3: c - 1 .. c + 1.
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]], dtype=torch.float64)
    assert_close(fast_lrn.band_matrix(4, 3, dtype=torch.float64), expected, "band_matrix(4 channels, size 3)")
    # Two towers of two channels: the window of channel 1 stops at channel 1, that of channel 2 starts at 2.
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.float64)
    assert_close(fast_lrn.band_matrix(4, 3, groups=2, dtype=torch.float64), expected, "band_matrix(4 channels, size 3, groups 2)")
    # Size 2, as F.local_response_norm: channels c - 1 .. c, so B[c - 1, c] = B[c, c] = 1 and B is not symmetric.
    expected = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1]], dtype=torch.float64)
    assert_close(fast_lrn.band_matrix(4, 2, dtype=torch.float64), expected, "band_matrix(4 channels, size 2)")


def test_fast_lrn_by_hand():
    # size 3, alpha 1, beta 1, k 1 on channels (1, 2, 3): b = a / (1 + sum of squares of a and its neighbours)
    # b0 = 1 / (1 + 1 + 4) = 1/6, b1 = 2 / (1 + 1 + 4 + 9) = 2/15, b2 = 3 / (1 + 4 + 9) = 3/14
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).view(1, 3, 1, 1)  # (1, 3, 1, 1)
    b = fast_lrn.local_response_norm(a, size=3, alpha=1.0, beta=1.0, k=1.0)
    assert_close(b.flatten(), torch.tensor([1 / 6, 2 / 15, 3 / 14], dtype=torch.float64), "fast local_response_norm (size 3)")
    # Two towers (1, 2) and (3, 4): b = (1/(1+1+4), 2/(1+1+4), 3/(1+9+16), 4/(1+9+16))
    a = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).view(1, 4, 1, 1)  # (1, 4, 1, 1)
    b = fast_lrn.local_response_norm(a, size=3, alpha=1.0, beta=1.0, k=1.0, groups=2)
    assert_close(b.flatten(), torch.tensor([1 / 6, 2 / 6, 3 / 26, 4 / 26], dtype=torch.float64), "fast local_response_norm (groups 2)")


# ----------------------------------------------------------------------------- against the plain formula, float64


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7])
def test_forward_matches_torch_and_the_reference(models, size, groups, layout):
    alpha, beta, k = 0.05, 0.75, 2.0  # a large alpha: the window's terms are far above rounding
    for shape in ((2, 12, 3, 4), (3, 8, 1, 1)):
        x = _input(shape, layout, seed=size)
        b = fast_lrn.local_response_norm(x, size, alpha, beta, k, groups=groups)
        what = f"fast local_response_norm(x of shape {shape}, {layout}, size={size}, groups={groups})"
        assert_close(b, _torch_lrn(x, size, alpha, beta, k, groups), f"{what} against F.local_response_norm", rtol=1e-12, atol=1e-12)
        if size % 2 == 1:  # exercise 4.2's reference takes odd windows only
            reference = torch.cat([models.local_response_norm(t, size, alpha, beta, k) for t in x.chunk(groups, dim=1)], dim=1)  # (N, C, H, W)
            assert_close(b, reference, f"{what} against the reference local_response_norm (exercise 4.2)", rtol=1e-12, atol=1e-12)
        layout_kept = b.is_contiguous(memory_format=torch.channels_last) if layout == "channels_last" else b.is_contiguous()
        assert layout_kept, f"{what} returned strides {b.stride()}: expected {'channels_last' if layout == 'channels_last' else 'contiguous NCHW'}"


def test_forward_with_the_papers_values_on_alexnets_channels(models):
    x = _input((2, 96, 5, 5), "channels_last", seed=3)
    for groups in (1, 2):
        b = fast_lrn.local_response_norm(x, groups=groups)  # size 5, alpha 1e-4, beta 0.75, k 2
        expected = models.TowerLocalResponseNorm(groups=groups, impl="torch")(x)
        assert_close(b, expected, f"fast local_response_norm with the paper's values, groups={groups}", rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("size", [2, 3, 5])
def test_backward_matches_autograd_through_torch(size, groups, layout):
    alpha, beta, k = 0.05, 0.75, 2.0
    x = _input((2, 12, 3, 4), layout, seed=10 + size)
    dout = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(size))  # (N, C, H, W)
    ours, plain = x.clone().requires_grad_(), x.clone().requires_grad_()
    (got,) = torch.autograd.grad(fast_lrn.local_response_norm(ours, size, alpha, beta, k, groups=groups), ours, dout)
    (want,) = torch.autograd.grad(_torch_lrn(plain, size, alpha, beta, k, groups), plain, dout)
    assert_close(got, want, f"fast local_response_norm gradient ({layout}, size={size}, groups={groups}) against autograd "
                 "through F.local_response_norm", rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("size, groups, layout", [(3, 1, "contiguous"), (5, 2, "channels_last"), (4, 2, "strided"), (2, 1, "channels_last")])
def test_backward_passes_gradcheck(size, groups, layout):
    x = _input((2, 6, 2, 3), layout, seed=20 + size).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: fast_lrn.local_response_norm(t, size, 0.3, 0.75, 2.0, groups=groups), (x,)), \
        f"gradcheck failed for size={size}, groups={groups}, {layout}"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_custom_ops_pass_opcheck(layout):
    x = _input((2, 6, 3, 4), layout, seed=30).requires_grad_()
    torch.library.opcheck(torch.ops.labs.local_response_norm.default, (x, 3, 0.3, 0.75, 2.0, 2))
    _, denominator = torch.ops.labs.local_response_norm(x.detach(), 3, 0.3, 0.75, 2.0, 2)
    grad = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(31))  # (N, C, H, W)
    torch.library.opcheck(torch.ops.labs.local_response_norm_backward.default, (grad, x.detach(), denominator, 3, 0.3, 0.75, 2))


def test_denominator_output_is_not_differentiable():
    x = _input((1, 4, 2, 2), seed=32).requires_grad_()
    out, denominator = torch.ops.labs.local_response_norm(x, 3, 0.3, 0.75, 2.0, 1)
    assert out.requires_grad and not denominator.requires_grad, "labs::local_response_norm: b needs a gradient, D (for backward) none"
    assert_close(denominator, 2.0 + 0.3 * F.avg_pool3d(F.pad(x.detach() ** 2, (0, 0, 0, 0, 1, 1)).unsqueeze(1), (3, 1, 1), stride=1).squeeze(1) * 3,
                 "labs::local_response_norm's D = k + alpha * S")


def test_leaves_its_input_unchanged_and_keeps_the_dtype():
    x = _input((2, 6, 3, 3), "channels_last", seed=33).float()
    copy = x.clone()
    b = fast_lrn.local_response_norm(x, 5, 1e-4, 0.75, 2.0, groups=2)
    assert torch.equal(x, copy), "fast local_response_norm changed its input"
    assert b.dtype == torch.float32, f"fast local_response_norm on float32 returned {b.dtype}"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fast_lrn.local_response_norm([[1.0]]), "torch.Tensor of shape"),
        (lambda: fast_lrn.local_response_norm(torch.zeros(6, 4, 4)), r"shape \(N, C, H, W\), got \(6, 4, 4\)"),
        (lambda: fast_lrn.local_response_norm(torch.zeros(1, 6, 2, 2, dtype=torch.int64)), "floating-point"),
        (lambda: fast_lrn.local_response_norm(torch.zeros(1, 6, 2, 2), size=0), "positive window size"),
        (lambda: fast_lrn.local_response_norm(torch.zeros(1, 6, 2, 2), groups=4), "divides the 6 channels"),
    ],
    ids=["not-a-tensor", "no-batch-dim", "integers", "size-0", "groups-4-of-6"],
)
def test_bad_input_is_refused_with_what_was_expected(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call()


# ----------------------------------------------------------------------------- torch.compile


def _small_block(x: torch.Tensor) -> torch.Tensor:
    """ReLU, the fast LRN (two towers, size 5), 2x2 max pool: a slice of AlexNet's conv1 block."""
    return F.max_pool2d(fast_lrn.local_response_norm(torch.relu(x), 5, 0.05, 0.75, 2.0, groups=2), 2)  # (N, C, H/2, W/2)


def _compiled_against_eager(backend: str, layout: str) -> None:
    torch._dynamo.reset()
    graphs = []

    def recording(gm, example_inputs):  # dynamo's graph, before AOT autograd: the op should sit in it whole
        graphs.append(gm.code)
        return torch._dynamo.lookup_backend(backend)(gm, example_inputs)

    compiled = torch.compile(_small_block, backend=recording, fullgraph=True)
    x = _input((2, 8, 6, 6), layout, seed=40) - 1.5  # (2, 8, 6, 6), signs mixed for the ReLU
    dout = torch.randn(2, 8, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(41))  # (N, C, H/2, W/2)
    outputs, gradients = [], []
    for function in (_small_block, compiled):
        leaf = x.clone().requires_grad_()
        y = function(leaf)
        (grad,) = torch.autograd.grad(y, leaf, dout)
        outputs.append(y.detach())
        gradients.append(grad)
    assert any("labs.local_response_norm" in code for code in graphs), f"torch.compile's graph should call labs::local_response_norm:\n{graphs}"
    assert_close(outputs[1], outputs[0], f"torch.compile(backend={backend!r}) of the fast LRN block against eager ({layout})")
    assert_close(gradients[1], gradients[0], f"torch.compile(backend={backend!r}) gradient of the fast LRN block against eager ({layout})")


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_compiled_with_aot_eager_matches_eager(layout):
    _compiled_against_eager("aot_eager", layout)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_compiled_with_inductor_on_cpu_matches_eager():
    _compiled_against_eager("inductor", "channels_last")  # about 30 s on two cores: a C++ compile


# ----------------------------------------------------------------------------- the model


def test_tower_lrn_auto_takes_the_plain_formula_on_cpu_and_fast_computes_the_same(models, monkeypatch):
    calls = []
    original = fast_lrn.local_response_norm
    monkeypatch.setattr(fast_lrn, "local_response_norm", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    x = _input((2, 96, 4, 4), "channels_last", seed=50)
    for groups in (1, 2):
        calls.clear()
        plain = models.TowerLocalResponseNorm(groups=groups)(x)  # impl="auto" on CPU
        assert not calls, "TowerLocalResponseNorm(impl='auto') should keep F.local_response_norm on CPU"
        fast = models.TowerLocalResponseNorm(groups=groups, impl="fast")(x)
        assert calls == [1], "TowerLocalResponseNorm(impl='fast') should call labs.provided.fast_lrn.local_response_norm once"
        assert_close(fast, plain, f"TowerLocalResponseNorm(groups={groups}, impl='fast') against impl='auto' on CPU", rtol=1e-12, atol=1e-12)
        assert_close(fast, models.TowerLocalResponseNorm(groups=groups, impl="torch")(x), f"impl='fast' against impl='torch', groups={groups}",
                     rtol=1e-12, atol=1e-12)


def _alexnet_logits_and_grads(net, x: torch.Tensor):
    net.zero_grad(set_to_none=True)
    logits = net(x)  # (N, 10)
    logits.square().sum().backward()
    return logits.detach(), {name: p.grad.clone() for name, p in net.named_parameters()}


@pytest.mark.slow
def test_alexnet_with_the_fast_lrn_equals_the_plain_model(models):  # float64 AlexNet, forward and backward twice: 8 s
    torch.manual_seed(0)
    net = models.AlexNet(num_classes=10, dropout=0.0).double()
    x = _input((2, 3, 67, 67), "channels_last", seed=51)
    expected, expected_grads = _alexnet_logits_and_grads(net, x)
    net.norm1.impl = net.norm2.impl = "fast"
    logits, grads = _alexnet_logits_and_grads(net, x)
    assert_close(logits, expected, "AlexNet logits with the fast LRN against F.local_response_norm", rtol=1e-10, atol=1e-12)
    for name, want in expected_grads.items():
        assert_close(grads[name], want, f"AlexNet gradient of {name} with the fast LRN", rtol=1e-9, atol=1e-12 * want.abs().max().item())


@pytest.mark.parametrize(
    "c_in, c_out, kernel, padding, shape",
    [(96, 256, 5, 2, (2, 96, 7, 7)), (384, 384, 3, 1, (2, 384, 5, 5)), (384, 256, 3, 1, (2, 384, 5, 5))],
    ids=["conv2", "conv4", "conv5"],
)
def test_dense_tower_conv_equals_the_grouped_conv(models, c_in, c_out, kernel, padding, shape):
    torch.manual_seed(0)
    grouped = torch.nn.Conv2d(c_in, c_out, kernel, padding=padding, groups=2).double()
    dense = models.DenseTowerConv2d.from_conv(grouped)
    assert dense.weight is grouped.weight and dense.bias is grouped.bias, "DenseTowerConv2d.from_conv should share the Parameters"
    x = _input(shape, "channels_last", seed=c_in + c_out)
    dout = torch.randn(shape[0], c_out, shape[2], shape[3], dtype=torch.float64, generator=torch.Generator().manual_seed(1))  # (N, C_out, H, W)
    results = []
    for conv in (grouped, dense):
        leaf = x.clone().requires_grad_()
        out = conv(leaf)  # (N, C_out, H, W)
        results.append((out.detach(), *torch.autograd.grad(out, (leaf, conv.weight, conv.bias), dout)))
    for what, got, want in zip(("output", "dx", "dweight", "dbias"), results[1], results[0]):
        assert_close(got, want, f"DenseTowerConv2d {what} against nn.Conv2d(groups=2), {c_in} -> {c_out} channels", rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_dense_towers_have_the_grouped_models_parameters_and_outputs(models):  # two float64 AlexNets: 8 s
    torch.manual_seed(0)
    grouped = models.AlexNet(num_classes=10, dropout=0.0).double()
    dense = models.AlexNet(num_classes=10, dropout=0.0, tower_convs="dense").double()
    dense.load_state_dict(grouped.state_dict())  # strict: the same keys and shapes
    assert list(dense.state_dict()) == list(grouped.state_dict()), "AlexNet(tower_convs='dense') should keep the grouped model's state_dict keys"
    assert {type(getattr(dense, name)).__name__ for name in ("conv2", "conv4", "conv5")} == {"DenseTowerConv2d"}, \
        "AlexNet(tower_convs='dense') should run conv2, conv4 and conv5 as DenseTowerConv2d"
    x = _input((2, 3, 67, 67), "contiguous", seed=52)
    expected, expected_grads = _alexnet_logits_and_grads(grouped, x)
    logits, grads = _alexnet_logits_and_grads(dense, x)
    assert_close(logits, expected, "AlexNet(tower_convs='dense') logits against the grouped convolutions", rtol=1e-10, atol=1e-12)
    for name, want in expected_grads.items():
        assert_close(grads[name], want, f"AlexNet(tower_convs='dense') gradient of {name}", rtol=1e-9, atol=1e-12 * want.abs().max().item())


def test_set_tower_convs_switches_both_ways_sharing_the_parameters(models):
    net = models.AlexNet(num_classes=10).eval()
    weight, count = net.conv4.weight, sum(p.numel() for p in net.parameters())
    net.set_tower_convs("dense")
    assert type(net.conv4).__name__ == "DenseTowerConv2d" and net.conv4.weight is weight, "set_tower_convs('dense') should keep conv4's Parameter"
    assert not net.conv4.training, "set_tower_convs should keep eval mode"
    net.set_tower_convs("grouped")
    assert type(net.conv4) is torch.nn.Conv2d and net.conv4.weight is weight, "set_tower_convs('grouped') should give back an nn.Conv2d"
    assert sum(p.numel() for p in net.parameters()) == count, "switching the towers should not change the parameter count"
    with pytest.raises(ValueError, match="tower_convs='towers': expected one of 'grouped', 'dense'"):
        net.set_tower_convs("towers")


# ----------------------------------------------------------------------------- CUDA


@pytest.fixture
def exact_fp32():
    """fp32 without TF32, so that two ways of computing the same thing agree to ~1e-5."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.gpu
@cuda_only
def test_alexnet_takes_the_fast_path_on_cuda(models, monkeypatch):
    calls = []
    original = fast_lrn.local_response_norm
    monkeypatch.setattr(fast_lrn, "local_response_norm", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    net = models.AlexNet(num_classes=10).cuda().eval()
    with torch.no_grad():
        net(torch.randn(2, 3, 227, 227, device="cuda"))  # (2, 3, 227, 227)
    assert len(calls) == 2, f"AlexNet on CUDA should take the fast LRN at norm1 and norm2, took it {len(calls)} times"


@pytest.mark.gpu
@cuda_only
@pytest.mark.parametrize("layout", LAYOUTS)
def test_fast_lrn_matches_torch_on_cuda(layout, exact_fp32):
    for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        x = _input((4, 96, 13, 13), layout, seed=60, device="cuda").to(dtype)
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)  # .to(dtype) keeps it; said again for the reader
        leaf, plain = x.clone().requires_grad_(), x.clone().requires_grad_()
        b = fast_lrn.local_response_norm(leaf, 5, 1e-4, 0.75, 2.0, groups=2)
        expected = _torch_lrn(plain, 5, 1e-4, 0.75, 2.0, 2)
        assert_close(b, expected.detach(), f"fast LRN on CUDA ({dtype}, {layout})", rtol=tolerance, atol=tolerance)
        dout = torch.randn_like(expected)  # (N, C, H, W)
        (got,) = torch.autograd.grad(b, leaf, dout)
        (want,) = torch.autograd.grad(expected, plain, dout)
        assert_close(got, want, f"fast LRN gradient on CUDA ({dtype}, {layout})", rtol=tolerance, atol=tolerance)


@pytest.mark.gpu
@cuda_only
def test_fast_lrn_under_bf16_autocast(models):
    x = _input((8, 96, 27, 27), "channels_last", seed=61, device="cuda").float()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        b32 = fast_lrn.local_response_norm(x, groups=2)  # fp32 in: autocast is off inside, fp32 out
        b16 = fast_lrn.local_response_norm(x.bfloat16(), groups=2)
    assert b32.dtype == torch.float32 and b16.dtype == torch.bfloat16, f"the fast LRN should keep its input's dtype, got {b32.dtype}, {b16.dtype}"
    assert b16.is_contiguous(memory_format=torch.channels_last), "the fast LRN should keep channels_last under autocast"
    expected = _torch_lrn(x.double(), 5, 1e-4, 0.75, 2.0, 2)
    assert_close(b16.double(), expected, "fast LRN in bf16 against float64", rtol=2e-2, atol=1e-2)

    net = models.AlexNet(num_classes=10, dropout=0.0).cuda().to(memory_format=torch.channels_last)
    images = torch.randn(16, 3, 227, 227, device="cuda").contiguous(memory_format=torch.channels_last)  # (16, 3, 227, 227)
    labels = torch.randint(0, 10, (16,), device="cuda")  # (16,)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(4):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = net(images)  # (16, 10)
            loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert logits.dtype == torch.bfloat16, f"under bf16 autocast AlexNet's logits should be bf16, got {logits.dtype}"
    assert all(torch.isfinite(p.grad).all() for p in net.parameters()), "AlexNet with the fast LRN: non-finite gradients under bf16"
    assert losses[-1] < losses[0], f"four bf16 steps with the fast LRN on one batch should lower the loss, got {losses}"


@pytest.mark.gpu
@pytest.mark.slow
@cuda_only
@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"], ids=["inductor", "cuda-graphs"])
def test_compiled_alexnet_with_the_fast_lrn_matches_eager_on_cuda(models, mode, exact_fp32):
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = models.AlexNet(num_classes=10, dropout=0.0).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, 227, 227, device="cuda").contiguous(memory_format=torch.channels_last)  # (8, 3, 227, 227)
    compiled = torch.compile(net, mode=mode)
    expected, expected_grads = _alexnet_logits_and_grads(net, x)
    for _ in range(3):  # reduce-overhead records its CUDA graph on a later call than the first
        logits, grads = _alexnet_logits_and_grads(compiled, x)
    scale = expected.abs().max().item()
    assert_close(logits, expected, f"torch.compile(mode={mode!r}) AlexNet logits against eager", rtol=1e-4, atol=1e-4 * scale)
    for name, want in expected_grads.items():
        assert_close(grads[name], want, f"torch.compile(mode={mode!r}) gradient of {name}", rtol=1e-3, atol=1e-3 * want.abs().max().item())
