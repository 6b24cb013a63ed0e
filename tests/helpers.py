"""Assertions whose failure messages say what differed and where, in words a student can use."""

from __future__ import annotations

import torch
from torch import Tensor


def assert_close(actual, expected: Tensor, what: str, rtol: float | None = None, atol: float | None = None) -> None:
    """Assert `actual` equals `expected` in shape and value; the message names the worst entry.

    Tolerances default to 1e-10 (float64) or 1e-5 (float32 and below), relative and absolute.
    """
    if not isinstance(actual, Tensor):
        raise AssertionError(f"{what} should return a torch.Tensor, got {type(actual).__name__}")
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    precise = expected.dtype == torch.float64
    rtol = rtol if rtol is not None else (1e-10 if precise else 1e-5)
    atol = atol if atol is not None else (1e-10 if precise else 1e-5)
    actual_values = actual.detach().to("cpu", torch.float64)
    expected_values = expected.detach().to("cpu", torch.float64)
    if actual_values.numel() == 0:
        return
    if not torch.isfinite(actual_values).all() and torch.isfinite(expected_values).all():
        index = tuple(int(i) for i in torch.nonzero(~torch.isfinite(actual_values))[0])
        raise AssertionError(f"{what} is not finite at index {index}: got {actual_values[index].item()}, expected {expected_values[index].item():.6g}")
    error = (actual_values - expected_values).abs()
    allowed = atol + rtol * expected_values.abs()
    if not bool((error <= allowed).all()):
        index = tuple(int(i) for i in torch.nonzero(error > allowed)[0]) if actual_values.dim() else ()
        worst = float(error.max())
        raise AssertionError(
            f"{what} differs at index {index}: got {actual_values[index].item():.8g}, expected "
            f"{expected_values[index].item():.8g} (largest absolute error {worst:.3g}, allowed {atol:g} + {rtol:g}*|expected|)"
        )


def in_worker(probe, *args, **kwargs):
    """Run a probe of labs/provided/probes.py where the code under test runs, and return its data.

    During grading that is the worker process that runs the student's code; in a plain pytest
    run it is this process.
    """
    from labs.provided.remote import run_probe

    return run_probe(probe, *args, **kwargs)
