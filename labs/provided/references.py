"""Torch stand-ins for exercises, so that a test of one exercise does not depend on another.

A graded test of LeNet-5 with `conv="lab"` replaces lab 2's `Conv2dFunction` by the one here,
built on `F.conv2d` and autograd: a mistake in lab 2 then costs lab 2's points only. These are
PyTorch's own operations, not the course's solutions; they live in the provided code so that
the grading worker, which runs the student's code, has them too.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

CALLS = {"Conv2dFunction": 0}  # how often each stand-in ran, read by the tests through probes.reference_calls


class TorchConv2dFunction:
    """Stands in for lab 2's Conv2dFunction (exercises 2.4, 2.5, 2.8): F.conv2d, differentiated by autograd."""

    @staticmethod
    def apply(x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, dilation, groups: int) -> Tensor:
        CALLS["Conv2dFunction"] += 1
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
