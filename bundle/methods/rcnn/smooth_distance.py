# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The smooth distance loss of the multirater RCNN (Sudre et al., MIDL 2019), exactly as published.

For the absolute error ``r = |prediction - target|`` of one sample::

    f(r) = 0.5 r^2            if r < 0.5
           r - 0.125          if 0.5 <= r <= 2.125
           (r - 0.125)^2 - 2  if r > 2.125

The published form is continuous at r = 2.125 (both pieces give 2) but **jumps at r = 0.5**: the quadratic
piece ends at 0.125 and the linear piece starts at 0.375 (a step of 0.25; the gradient is 0.5 on the left and 1
on the right). It is kept as printed; ``docs/rcnn.md`` records the choice.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmoothDistanceLoss", "smooth_distance"]


def smooth_distance(r: torch.Tensor) -> torch.Tensor:
    """Element-wise f(|r|) of the published smooth distance loss (see the module docstring)."""
    r = r.abs()
    return torch.where(r < 0.5, 0.5 * r**2, torch.where(r <= 2.125, r - 0.125, (r - 0.125) ** 2 - 2.0))


class SmoothDistanceLoss(nn.Module):
    """Mean (or sum, or none) of :func:`smooth_distance` over the error ``input - target``.

    Args:
        reduction: ``mean`` (the paper's 1/N sum), ``sum`` or ``none``.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        f = smooth_distance(input - target)
        if self.reduction == "none":
            return f
        if f.numel() == 0:  # no sample (e.g. no positive voxel): no regression signal, but a valid graph
            return input.sum() * 0.0
        return f.mean() if self.reduction == "mean" else f.sum()
