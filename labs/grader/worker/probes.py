"""Small experiments that run where the student's code runs, and return only data.

A graded test that needs autograd through a student's model, or an inside view of a call
(how many torch operations it made), cannot get it from the other side of the grading
channel: gradients live in the worker's autograd graph. These functions do that work in the
worker and hand back tensors and numbers, which the test then compares with what it computes
itself. Tests call them through `tests.helpers.in_worker(probe, ...)`, which runs them here
when the code under test was imported directly (plain pytest, the notebooks).

Everything returned is a claim of the worker's; the tests never take it as the expected value.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labs.grader.worker import references

# ---------------------------------------------------------------- builtins the proxies need


def builtin_iter(value):
    return iter(value)


def builtin_next(iterator):
    return next(iterator)


def builtin_len(value) -> int:
    return len(value)


def builtin_getitem(value, key):
    return operator.getitem(value, key)


def builtin_contains(value, item) -> bool:
    return item in value


# ---------------------------------------------------------------- autograd


def forward_backward(function, args: tuple, grad_output: Tensor) -> dict:
    """out = function(*args); out.backward(grad_output).

    Returns {"output", "input_grads" (one per tensor argument, None where it got none),
    "parameter_grads" ({name: grad or None}, for an nn.Module)}.
    """
    with torch.enable_grad():
        out = function(*args)
        out.backward(grad_output)
    parameters = dict(function.named_parameters()) if isinstance(function, nn.Module) else {}
    return {
        "output": out.detach(),
        "input_grads": [a.grad for a in args if isinstance(a, Tensor)],
        "parameter_grads": {name: p.grad for name, p in parameters.items()},
    }


def sgd_losses(net: nn.Module, x: Tensor, y: Tensor, lr: float, steps: int) -> list[float]:
    """Plain gradient descent on the cross-entropy of one batch; the loss before each step.

    Written out rather than torch.optim.SGD, whose first use imports torch._dynamo (seconds)."""
    losses = []
    for _ in range(steps):
        net.zero_grad()
        with torch.enable_grad():
            loss = F.cross_entropy(net(x), y)
            loss.backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= lr * p.grad
        losses.append(loss.item())
    return losses


def fit_mse(layer: nn.Module, inputs: Tensor, targets: Tensor, lr: float, steps: int) -> tuple[float, dict]:
    """torch.optim.SGD on the mean squared error; the last loss and the final parameters."""
    optimizer = torch.optim.SGD(layer.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        with torch.enable_grad():
            loss = F.mse_loss(layer(inputs), targets)
            loss.backward()
        optimizer.step()
    return loss.item(), {name: p.detach() for name, p in layer.named_parameters()}


def cross_tower_gradient(net: nn.Module, x: Tensor, after: str, before: str, seed: int = 0) -> tuple[float, float]:
    """Largest |gradient| of one tower's half of `before`'s input w.r.t. the other tower's half of `after`'s output.

    Returns (tower 0 from tower 1, tower 1 from tower 0); both 0.0 when nothing crosses.
    """
    seen = {}

    def replace(module, inputs, output):
        seen["after"] = output.detach().requires_grad_()
        return seen["after"].clone()  # a non-leaf, so that an in-place ReLU is allowed

    def capture(module, inputs):
        seen["before"] = inputs[0]

    hooks = [getattr(net, after).register_forward_hook(replace), getattr(net, before).register_forward_pre_hook(capture)]
    try:
        with torch.enable_grad():
            net(x)
    finally:
        for hook in hooks:
            hook.remove()
    start, end = seen["after"], seen["before"]
    half_in, half_out = start.shape[1] // 2, end.shape[1] // 2
    weights = torch.randn(end.shape, generator=torch.Generator().manual_seed(seed))  # no accidental cancellations
    largest = []
    for tower_out, other_in in ((slice(0, half_out), slice(half_in, None)), (slice(half_out, None), slice(0, half_in))):
        (grad,) = torch.autograd.grad((end * weights)[:, tower_out].sum(), start, retain_graph=True)
        largest.append(grad[:, other_in].abs().max().item())
    return largest[0], largest[1]


# ---------------------------------------------------------------- looking inside


class _CountTorchCalls(torch.overrides.TorchFunctionMode):
    """Counts the torch functions and tensor methods called inside `with`."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def count_torch_calls(function, *args, **kwargs) -> int:
    """How many torch operations function(*args, **kwargs) makes: a vectorized function makes
    as many on a large input as on a small one; a Python loop over positions makes more."""
    with _CountTorchCalls() as counter:
        function(*args, **kwargs)
    return counter.calls


def count_modules(net: nn.Module, kind: type) -> int:
    """How many of net's modules are instances of `kind`."""
    return sum(isinstance(module, kind) for module in net.modules())


def reference_calls(module=None) -> dict:
    """How often each stand-in of references.py ran since the last reset_reference_calls()."""
    return dict(references.CALLS)


def reset_reference_calls(module=None) -> None:
    for name in references.CALLS:
        references.CALLS[name] = 0
