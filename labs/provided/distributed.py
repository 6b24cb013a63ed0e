"""Training on several GPUs or machines with DistributedDataParallel (DDP).

One process per GPU. Each process holds a full copy of the model and trains on its own
shard of every epoch's shuffled indices (`training.batch_indices` with rank/world_size);
after each backward pass DDP averages the gradients across processes (an all-reduce), so
every copy takes the same optimizer step and the copies stay identical. Only rank 0 prints
progress and writes checkpoints. NCCL carries the all-reduce between GPUs, gloo between
CPU processes (slow, but it lets the course test the mechanism on a laptop).

The launcher, torchrun, starts the processes and tells each one its RANK, LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT through environment variables, which `setup` reads.
The batch size is per process: 4 GPUs at --batch-size 256 train on 1,024 images per step
(raise the learning rate accordingly, e.g. linearly: Goyal et al. 2017).

One machine, all its GPUs:

    torchrun --standalone --nproc_per_node=gpu -m labs train alexnet --data cifar10
    torchrun --standalone --nproc_per_node=4   -m labs train alexnet --data imagefolder --data-dir /data/imagenet-subset

Several machines (here 2 nodes with 8 GPUs each); run on every node, with the same
rendezvous address (a host:port of node 0 that the others can reach) and job id:

    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=node0.example.org:29500 \\
        --rdzv_id=alexnet-1 -m labs train alexnet --data imagefolder --data-dir /shared/imagenet-subset

(`python -m torch.distributed.run` is the same program as `torchrun`.) Every node needs the
data at the same path (or its own copy) and the same code. On CPU only, the same commands
run gloo processes, e.g. `torchrun --standalone --nproc_per_node=2 -m labs train alexnet
--data synthetic --device cpu` (what tests/course/test_distributed.py checks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Context:
    """Where this process stands: rank among world_size processes, its local GPU index, its device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that prints and saves."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def rank_and_world_size() -> tuple[int, int]:
    """(rank, world size) of this process in the process group; (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched_by_torchrun() -> bool:
    """True when torchrun started this process (it sets WORLD_SIZE and RANK)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def setup(device: torch.device) -> Context:
    """Join the process group when launched by torchrun with several processes.

    Args:
        device: the device the recipe picked ("cuda" or "cpu"). On CUDA each process takes
            GPU LOCAL_RANK and the NCCL backend; on CPU, gloo.

    Returns:
        The Context; (rank 0, world size 1, `device`) for an ordinary single process.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context(0, 0, 1, device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"process with LOCAL_RANK {local_rank} found only {torch.cuda.device_count()} GPU(s): "
                "start at most one process per GPU (--nproc_per_node)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"distributed training runs on CUDA (NCCL) or CPU (gloo), not on {device}")
    if not dist.is_initialized():
        dist.init_process_group(backend, device_id=device if backend == "nccl" else None)
    return Context(rank, local_rank, world_size, device)


def wrap(model: nn.Module, context: Context) -> nn.Module:
    """DistributedDataParallel around `model` in a distributed run; the model itself otherwise.

    DDP broadcasts rank 0's weights at construction, so every copy starts equal.
    """
    if not context.distributed:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def cleanup() -> None:
    """Leave the process group (call once at the end of a distributed run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
