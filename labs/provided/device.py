"""Pick the device to compute on: CUDA, then Apple MPS, then CPU, unless told otherwise."""

from __future__ import annotations

import os

import torch


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """Return `preferred`, else LABS_DEVICE, else the best available device.

    Args:
        preferred: "cpu", "cuda", "cuda:1", "mps", a torch.device, or None for automatic.

    Raises:
        ValueError: the requested device does not exist on this machine.
    """
    choice = preferred if preferred is not None else os.environ.get("LABS_DEVICE") or None
    if choice is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(choice)
    except RuntimeError as error:
        raise ValueError(f"unknown device {choice!r}: expected 'cpu', 'cuda', 'cuda:N' or 'mps'") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {choice!r} was requested but this machine has no CUDA GPU; use 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {choice!r} was requested but only {torch.cuda.device_count()} GPU(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {choice!r} was requested but Apple MPS is not available here; use 'cpu'")
    return device


def describe(device: torch.device) -> str:
    """A one-line human description, e.g. "cuda:0 (NVIDIA H100 80GB HBM3)" or "cpu (2 threads)"."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)
