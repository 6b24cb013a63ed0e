"""AlexNet on real images without CIFAR-10: `python -m labs train alexnet --data mnist`.

The digits stay uint8 (N, 1, 28, 28); each batch becomes (B, 3, S, S) on the device. On a
CPU the fast configuration learns: one epoch over 5,000 digits, from He initialisation, reaches
90% or more on the 10,000 test digits (95.3-95.6% over seeds 0-2; skipped without MNIST in LABS_DATA_DIR).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from labs.provided.recipes import alexnet

from labs import REPO_ROOT


def test_grey_digits_become_three_equal_channels_at_the_models_size_without_copies():
    digits = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)  # (4, 1, 28, 28)
    x = alexnet.grey_to_rgb(0.1307, 0.3081, 32)(digits)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32, f"expected float (4, 3, 32, 32), got {x.dtype} {tuple(x.shape)}"
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2]), "the three channels should be the same grey digit"
    assert x.stride(1) == 0, "the channel should be repeated as a view (expand), not copied three times"
    black = alexnet.grey_to_rgb(0.1307, 0.3081, 28)(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
    assert torch.allclose(black, torch.tensor(-0.1307 / 0.3081)), "a black pixel should be normalised to -mean/std"


def test_he_initialisation_keeps_the_signal_scale_and_starts_the_logits_near_zero():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 5), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(64 * 28 * 28, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
    alexnet.he_initialise(net)
    for layer, fan_in in ((net[0], 3 * 5 * 5), (net[3], 64 * 28 * 28)):
        assert layer.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05), layer
        assert torch.count_nonzero(layer.bias) == 0
    assert net[5].weight.std().item() == pytest.approx(0.01, rel=0.1), "the last layer should start small"
    x = torch.randn(64, 3, 32, 32)  # (64, 3, 32, 32)
    hidden = net[:5](x)  # (64, 512): after two ReLU layers
    assert 0.3 < hidden.pow(2).mean().item() / x.pow(2).mean().item() < 3, "the signal's scale should survive the layers"
    assert net(x).abs().max().item() < 1, "the first logits should be near 0"


@pytest.mark.timeout(300)
def test_alexnet_fast_run_on_real_mnist_reaches_90_percent(mnist_dir, tmp_path):
    env = {**os.environ, "LABS_DATA_DIR": str(mnist_dir), "LABS_IMPL": "solutions"}
    result = subprocess.run(
        [sys.executable, "-m", "labs", "train", "alexnet", "--data", "mnist", "--fast", "--device", "cpu", "--no-progress",
         "--checkpoint", "none", "--out", str(tmp_path)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=280,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "test loss" in result.stdout and "data mnist at 32x32" in result.stdout, result.stdout[-2000:]
    found = re.search(r"test accuracy: ([\d.]+)%", result.stdout)
    assert found, f"the recipe should print its test accuracy:\n{result.stdout[-2000:]}"
    accuracy = float(found.group(1)) / 100
    assert accuracy >= 0.9, f"AlexNet's fast run reached only {accuracy:.2%} on the 10,000 test digits (expected >= 90%)"


def test_alexnet_mnist_says_how_to_fetch_missing_mnist(tmp_path, capsys, monkeypatch):
    import labs.provided.data as data

    monkeypatch.setattr(data, "_download", lambda name, root: None)  # no network in the test: nothing arrives
    empty = tmp_path / "empty"
    monkeypatch.setenv("LABS_DATA_DIR", str(empty))  # restored after the test (the recipe sets it from --data-dir)
    code = alexnet.main(["--data", "mnist", "--data-dir", str(empty), "--device", "cpu", "--no-progress", "--checkpoint", "none"])
    error = capsys.readouterr().err
    assert code == 1
    assert "python -m labs download mnist" in error and str(empty / "MNIST" / "raw") in error, error
