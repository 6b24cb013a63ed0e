"""DistributedDataParallel through torchrun: two CPU processes (gloo) train AlexNet's small
configuration on synthetic data; both must end with the same weights, different from the start.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from labs import REPO_ROOT

pytestmark = pytest.mark.slow  # every check here starts processes that import torch


@pytest.mark.timeout(180)
def test_two_gloo_processes_end_with_identical_trained_weights(tmp_path, models):
    pattern = str(tmp_path / "rank{rank}.pt")
    env = {**os.environ, "LABS_IMPL": "solutions", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "labs", "train", "alexnet", "--data", "synthetic", "--device", "cpu",
        "--max-steps", "2", "--batch-size", "4", "--synthetic-size", "32", "--checkpoint", "none",
        "--no-progress", "--save-rank-state", pattern,
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "x 2 process(es)" in result.stdout, "rank 0 should report a run with two processes"
    assert result.stdout.count("training throughput") == 1, "only rank 0 should print"

    assert_both_ranks_trained_alike(pattern, models, "DDP")


def assert_both_ranks_trained_alike(pattern: str, models, what: str) -> None:
    """Ranks 0 and 1 saved (`--save-rank-state pattern`) the same weights, which training changed."""
    states = [torch.load(pattern.format(rank=rank), weights_only=True) for rank in (0, 1)]
    for name, value in states[0].items():
        assert torch.equal(value, states[1][name]), f"after {what} training, rank 0 and rank 1 disagree on {name}"

    # The starting weights: the same seed, the same model, before any step.
    torch.manual_seed(0)
    start = models.AlexNet(num_classes=10, small_inputs=True).state_dict()
    changed = [name for name, value in start.items() if not torch.equal(value, states[0][name])]
    assert "conv1.weight" in changed and "fc8.weight" in changed, "training should have changed the weights"
