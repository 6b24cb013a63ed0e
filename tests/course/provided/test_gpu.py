"""The CUDA tier: what only a GPU can check. Every test skips, saying why, where CUDA is absent.

    .venv/bin/python -m pytest --impl solutions -m gpu tests/course/provided/test_gpu.py

One GPU: a bf16 autocast + channels_last training step lowers the loss of LeNet-5 and AlexNet;
torch.compile gives the eager model's outputs and gradients; the lab's conv2d and
conv2d_backward run on CUDA and match F.conv2d and autograd; the LeNet and AlexNet recipes
train on CUDA (MNIST from LABS_DATA_DIR where it is needed). Two GPUs: AlexNet's two towers,
one per GPU, equal the grouped model, and two NCCL processes under torchrun end with the
same weights.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from labs.provided.seeding import seed_everything
from tests.course.provided.test_distributed import assert_both_ranks_trained_alike
from tests.helpers import assert_close

from labs import REPO_ROOT
CUDA = torch.cuda.is_available()
GPUS = torch.cuda.device_count() if CUDA else 0

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not CUDA, reason="needs CUDA: torch.cuda.is_available() is False on this machine"),
]
two_gpus = pytest.mark.skipif(GPUS < 2, reason=f"needs two CUDA GPUs, found {GPUS}")


@pytest.fixture
def exact_fp32():
    """fp32 without TF32, so that two ways of computing the same thing agree to ~1e-5."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _net_and_batch(name: str, models, batch: int = 32):
    """A model without dropout and a fixed batch on cuda: LeNet-5 at 32x32, AlexNet at 227x227."""
    seed_everything(0)
    if name == "lenet":
        net, x = models.LeNet5(num_classes=10), torch.randn(batch, 1, 32, 32)  # (B, 1, 32, 32)
    else:
        net, x = models.AlexNet(num_classes=10, dropout=0.0), torch.randn(batch, 3, 227, 227)  # (B, 3, 227, 227)
    y = torch.randint(0, 10, (batch,))  # (B,)
    return net.cuda(), x.cuda(), y.cuda()


def _run(command: list[str], timeout: int, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "LABS_IMPL": "solutions", **env}
    return subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------- one GPU


@pytest.mark.parametrize("name", ["lenet", "alexnet"])
def test_bf16_channels_last_training_steps_lower_the_loss(name, models):
    net, x, y = _net_and_batch(name, models)
    net = net.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)  # (B, C, H, W) stored as (B, H, W, C)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(4):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = net(x)  # (B, 10)
            loss = F.cross_entropy(logits.float(), y)
        assert logits.dtype == torch.bfloat16, f"under bf16 autocast {name}'s logits should be bf16, got {logits.dtype}"
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(p.grad).all() for p in net.parameters()), f"{name}: non-finite gradients under bf16"
    assert losses[-1] < losses[0], f"{name}: four bf16 + channels_last steps on one batch should lower its loss, got {losses}"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ["lenet", "alexnet"])
def test_compiled_model_matches_eager(name, models, exact_fp32):
    net, x, y = _net_and_batch(name, models, batch=8)
    compiled = torch.compile(net)
    outputs, gradients = [], []
    for model in (net, compiled):
        net.zero_grad(set_to_none=True)
        logits = model(x)  # (8, 10)
        F.cross_entropy(logits, y).backward()
        outputs.append(logits.detach())
        gradients.append({key: p.grad.clone() for key, p in net.named_parameters()})
    scale = outputs[0].abs().max().item()
    assert_close(outputs[1], outputs[0], f"{name}: torch.compile logits against eager", rtol=1e-4, atol=1e-4 * scale)
    for key, expected in gradients[0].items():
        assert_close(gradients[1][key], expected, f"{name}: torch.compile gradient of {key} against eager",
                     rtol=1e-3, atol=1e-3 * expected.abs().max().item())


@pytest.mark.parametrize(
    "stride, padding, dilation, groups",
    [(1, 0, 1, 1), (2, 1, 1, 1), (1, "same", 2, 1), (4, 0, 1, 1), (1, 2, 1, 2)],
    ids=["plain", "stride-padding", "same-dilated", "alexnet-conv1", "grouped"],
)
def test_lab_conv2d_and_its_backward_match_torch_on_cuda(stride, padding, dilation, groups):
    import labs.conv as conv  # the reference under --impl solutions

    generator = torch.Generator().manual_seed(0)
    kernel = 11 if stride == 4 else 3
    x = torch.randn(2, 4, 23, 23, dtype=torch.float64, generator=generator).cuda()  # (N, C_in, H, W)
    w = torch.randn(6, 4 // groups, kernel, kernel, dtype=torch.float64, generator=generator).cuda()  # (C_out, C_in/groups, kH, kW)
    b = torch.randn(6, dtype=torch.float64, generator=generator).cuda()  # (C_out,)
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    out = conv.conv2d(x, w, b, **options)
    assert out.device.type == "cuda", f"conv2d on CUDA inputs should return a CUDA tensor, got one on {out.device}"
    x_ref, w_ref, b_ref = (t.clone().requires_grad_() for t in (x, w, b))
    expected = F.conv2d(x_ref, w_ref, b_ref, **options)
    assert_close(out, expected, f"conv2d on CUDA ({options})")

    dout = torch.randn(expected.shape, dtype=torch.float64, generator=generator).cuda()  # (N, C_out, H_out, W_out)
    expected.backward(dout)
    dx, dw, db = conv.conv2d_backward(dout, x, w, **options)
    for got, reference, what in ((dx, x_ref.grad, "dx"), (dw, w_ref.grad, "dw"), (db, b_ref.grad, "db")):
        assert got.device.type == "cuda", f"conv2d_backward's {what} should be on CUDA, got {got.device}"
        assert_close(got, reference, f"conv2d_backward {what} on CUDA ({options}) against autograd")


@pytest.mark.timeout(300)
def test_lenet_recipe_trains_on_cuda(mnist_dir, tmp_path):
    result = _run(
        [sys.executable, "-m", "labs", "train", "lenet", "--fast", "--device", "cuda", "--epochs", "2", "--no-progress",
         "--checkpoint", str(tmp_path / "lenet.pt"), "--out", str(tmp_path)],
        timeout=280, LABS_DATA_DIR=str(mnist_dir),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "bf16=True, channels_last=True" in result.stdout, "on CUDA the recipe should turn on bf16 and channels_last"
    accuracy = float(result.stdout.split("test accuracy:")[1].split("%")[0]) / 100
    assert accuracy >= 0.9, f"two fast epochs of LeNet-5 on CUDA reached only {accuracy:.2%}"


@pytest.mark.timeout(300)
def test_alexnet_recipe_learns_mnist_on_cuda(mnist_dir, tmp_path):
    result = _run(
        [sys.executable, "-m", "labs", "train", "alexnet", "--data", "mnist", "--fast", "--device", "cuda", "--no-progress",
         "--checkpoint", "none", "--out", str(tmp_path)],
        timeout=280, LABS_DATA_DIR=str(mnist_dir),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "on cuda" in result.stdout and "bf16=True, channels_last=True" in result.stdout, result.stdout[-2000:]
    accuracy = float(result.stdout.split("test accuracy:")[1].split("%")[0]) / 100
    assert accuracy >= 0.8, f"AlexNet's fast MNIST run on CUDA reached only {accuracy:.2%}"


@pytest.mark.timeout(600)
def test_alexnet_recipe_compiles_on_cuda_and_says_how_long_it_took(tmp_path):
    result = _run(
        [sys.executable, "-m", "labs", "train", "alexnet", "--data", "synthetic", "--fast", "--device", "cuda", "--compile",
         "--max-steps", "3", "--checkpoint", "none", "--no-progress", "--out", str(tmp_path)],
        timeout=580,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "compiling the model with torch.compile" in result.stdout, result.stdout[-2000:]
    assert "the first step took" in result.stdout, result.stdout[-2000:]


# ----------------------------------------------------------------------------- two GPUs


@two_gpus
def test_two_towers_on_two_gpus_equal_the_grouped_model(models, exact_fp32):
    seed_everything(0)
    grouped = models.AlexNet(num_classes=10, groups=2).eval()
    x = torch.randn(4, 3, 227, 227)  # (N, 3, 227, 227)
    towers = models.TwoTowerAlexNet(grouped, devices=("cuda:0", "cuda:1")).eval()
    assert {p.device for p in towers.towers[1].parameters()} == {torch.device("cuda:1")}, "the second tower should live on cuda:1"
    with torch.no_grad():
        expected = grouped.cuda(0)(x.cuda(0))  # (N, 10)
        actual = towers(x.cuda(0))  # (N, 10) on cuda:0
    assert actual.device == torch.device("cuda:0"), f"the logits should come back on the first tower's GPU, got {actual.device}"
    assert_close(actual, expected, "TwoTowerAlexNet on cuda:0 and cuda:1 against AlexNet(groups=2) on cuda:0",
                 rtol=1e-4, atol=1e-4 * expected.abs().max().item())


@two_gpus
@pytest.mark.timeout(300)
def test_two_towers_recipe_trains_on_two_gpus(tmp_path):
    result = _run(
        [sys.executable, "-m", "labs", "train", "alexnet", "--data", "synthetic", "--fast", "--two-towers", "--max-steps", "3",
         "--checkpoint", "none", "--no-progress", "--out", str(tmp_path)],
        timeout=280,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "two towers: cuda:0 and cuda:1" in result.stdout, result.stdout[-2000:]


@two_gpus
@pytest.mark.timeout(300)
def test_two_nccl_processes_end_with_identical_trained_weights(tmp_path, models):
    pattern = str(tmp_path / "rank{rank}.pt")
    result = _run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "labs", "train", "alexnet", "--data", "synthetic", "--device", "cuda", "--fast", "--max-steps", "3",
         "--batch-size", "16", "--synthetic-size", "128", "--checkpoint", "none", "--no-progress", "--save-rank-state", pattern],
        timeout=280,
    )
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "x 2 process(es)" in result.stdout, "rank 0 should report a run with two processes"
    assert_both_ranks_trained_alike(pattern, models, "NCCL DDP")
