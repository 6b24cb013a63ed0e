"""Torch stand-ins for exercises, so that a test of one exercise does not depend on another.

A graded test of LeNet-5 with `conv="lab"` replaces lab 2's `Conv2dFunction` by the one here,
built on `F.conv2d` and autograd: a mistake in lab 2 then costs lab 2's points only. These are
PyTorch's own operations, not the course's solutions; they live in the provided code so that
the grading worker, which runs the student's code, has them too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CALLS = {"Conv2dFunction": 0}  # how often each stand-in ran, read by the tests through probes.reference_calls


class TorchConv2dFunction:
    """Stands in for lab 2's Conv2dFunction (exercises 2.4, 2.5, 2.8): F.conv2d, differentiated by autograd."""

    @staticmethod
    def apply(x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, dilation, groups: int) -> Tensor:
        CALLS["Conv2dFunction"] += 1
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def conv2d(x: Tensor, w: Tensor, b: Tensor | None = None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """Stands in for lab 2's conv2d (exercise 2.4) in the tests of exercise 2.8: F.conv2d."""
    return F.conv2d(x, w, b, stride, padding, dilation, groups)


def conv2d_backward(dout: Tensor, x: Tensor, w: Tensor, stride=1, padding=0, dilation=1,
                    groups: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Stands in for lab 2's conv2d_backward (exercise 2.5): (dx, dw, db) by autograd through F.conv2d."""
    with torch.enable_grad():
        x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
        b = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device, requires_grad=True)
        out = F.conv2d(x, w, b, stride, padding, dilation, groups)
        return torch.autograd.grad(out, (x, w, b), dout)
