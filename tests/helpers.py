"""Assertions whose failure messages say what differed and where, in words a student can use."""

from __future__ import annotations

import torch
from torch import Tensor


def assert_close(actual, expected: Tensor, what: str, rtol: float | None = None, atol: float | None = None,
                 dtype_of_input: bool = True) -> None:
    """Assert `actual` equals `expected` in shape, dtype and value; the message names the worst entry.

    `expected` carries the dtype the result must have; most functions keep their input's
    (`dtype_of_input` says so in the message).

    Tolerances default to 1e-10 (float64) or 1e-5 (float32 and below), relative and absolute.
    """
    if not isinstance(actual, Tensor):
        from labs.grader.trusted.proxies import type_name  # a proxy names the student's own type

        raise AssertionError(f"{what} should return a torch.Tensor, got {type_name(actual)}")
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    if actual.dtype != expected.dtype:  # else "got -2.0115564, expected -2.0115564" hides the difference
        got, wanted = str(actual.dtype).removeprefix("torch."), str(expected.dtype).removeprefix("torch.")
        raise AssertionError(f"{what} returned {got}, expected {wanted}" + (f" (the input's dtype)" if dtype_of_input else ""))
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
    """Run a probe of labs/grader/worker/probes.py where the code under test runs, and return its data.

    During grading that is the worker process that runs the student's code; in a plain pytest
    run it is this process.
    """
    from labs.grader.trusted.proxies import run_probe

    return run_probe(probe, *args, **kwargs)


def value_after_the_call(tensor: Tensor) -> Tensor:
    """What the code under test left in `tensor`, an argument this test passed it.

    In a plain pytest run that is the tensor itself. During grading the student's code works on
    the worker's copy: the test's tensor never changes, and the worker's claim of what its code
    changed in place is returned instead.
    """
    from labs.grader.trusted.proxies import claimed_in_place

    claim = claimed_in_place(tensor)
    return tensor if claim is None else claim


def assert_leaves_inputs_unchanged(function, args: dict, what: str, **options) -> None:
    """Call function(*args.values(), **options) and assert that no tensor argument changed.

    `args` maps each positional argument's name to its value, for the message.
    """
    before = {name: value.clone() for name, value in args.items() if isinstance(value, Tensor)}
    function(*args.values(), **options)
    for name, copy in before.items():
        after = value_after_the_call(args[name])
        if after.shape != copy.shape or not torch.equal(after, copy):
            raise AssertionError(
                f"{what} changed its argument {name} in place: leave inputs alone and compute new tensors "
                f"(for example `z - m` rather than `z -= m`, `torch.clamp` rather than `clamp_`)"
            )
