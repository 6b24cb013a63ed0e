"""Checkpoints: a training run saved after every epoch, so that an interrupted run resumes.

A checkpoint holds the model (unwrapped from DDP and torch.compile), the optimizer and scheduler
states, the random number generators' states, the epoch and the history; it is written
atomically (`labs.provided.atomic`), so a crash mid-save leaves the previous checkpoint whole.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from labs.provided.atomic import write_atomically


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel and/or torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model



def _rng_states(generator: torch.Generator) -> dict:
    states = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(generator: torch.Generator, states: dict) -> None:
    generator.set_state(states["generator"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def atomic_save(obj: object, path: str | Path) -> Path:
    """torch.save `obj` to `path` so that `path` is either the old file or the complete new one.

    (labs.provided.atomic: a temporary file beside it, flushed, then renamed over it.)
    """
    return write_atomically(path, lambda file: torch.save(obj, file))


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    generator: torch.Generator,
    epoch: int,
    history: dict[str, list[float]],
    extra: dict | None = None,
) -> Path:
    """Write everything needed to continue training after `epoch` epochs, atomically.

    Holds: model (unwrapped from DDP/compile), optimizer and scheduler state, the data
    generator's and torch's RNG states, epoch count, history and `extra` (e.g. the recipe's
    arguments).
    """
    state = {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": _rng_states(generator),
        "epoch": epoch,
        "history": history,
        "extra": extra or {},
    }
    return atomic_save(state, path)


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    generator: torch.Generator | None = None,
) -> dict:
    """Restore what `save_checkpoint` wrote into the given objects; return the checkpoint dict.

    The model's weights are loaded onto the model's own device. Pass optimizer, scheduler and
    generator to continue training; the model alone to evaluate.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: train first (the recipes write one with --checkpoint)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    unwrap(model).load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        if state["scheduler"] is None:
            raise ValueError(f"{path} was saved without a learning-rate scheduler; resume with the same options")
        scheduler.load_state_dict(state["scheduler"])
    if generator is not None:
        _set_rng_states(generator, state["rng"])
    return state
