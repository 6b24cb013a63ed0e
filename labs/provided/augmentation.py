"""Augmentation of whole batches on the data's device: random shifts and horizontal flips.

Each draws from the generator it is given (the training loop's data generator), so a seeded
run repeats exactly, and a resumed one continues where it stopped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def random_shift(images: Tensor, max_shift: int, generator: torch.Generator | None = None) -> Tensor:
    """Shift every image by its own random (dy, dx) in [-max_shift, max_shift], filling with zeros.

    The same as torchvision's RandomCrop(size, padding=max_shift) for a whole batch at once,
    on the images' device. Random numbers come from `generator` (CPU), so runs repeat.

    Args:
        images: (N, C, H, W).
    Returns:
        (N, C, H, W), same dtype and device.
    """
    if max_shift <= 0:
        return images
    N, C, H, W = images.shape
    s = max_shift
    padded = F.pad(images, (s, s, s, s))  # (N, C, H + 2s, W + 2s)
    offsets = torch.randint(0, 2 * s + 1, (2, N), generator=generator).to(images.device)  # (2, N)
    rows = offsets[0, :, None] + torch.arange(H, device=images.device)  # (N, H)
    cols = offsets[1, :, None] + torch.arange(W, device=images.device)  # (N, W)
    n = torch.arange(N, device=images.device)[:, None, None]  # (N, 1, 1)
    shifted = padded.permute(0, 2, 3, 1)[n, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return shifted.permute(0, 3, 1, 2)  # (N, C, H, W)


def random_flip(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right with probability 1/2.

    Args:
        images: (N, C, H, W).
    Returns:
        (N, C, H, W).
    """
    flip = (torch.rand(images.shape[0], generator=generator) < 0.5).to(images.device)  # (N,)
    return torch.where(flip[:, None, None, None], images.flip(3), images)  # (N, 1, 1, 1) broadcasts over (C, H, W)
