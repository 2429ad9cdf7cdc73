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

__all__ = ["smooth_distance"]


def smooth_distance(r: torch.Tensor) -> torch.Tensor:
    """Element-wise f(|r|) of the published smooth distance loss (see the module docstring)."""
    r = r.abs()
    return torch.where(r < 0.5, 0.5 * r**2, torch.where(r <= 2.125, r - 0.125, (r - 0.125) ** 2 - 2.0))
