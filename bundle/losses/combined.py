# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Weighted sum of losses, for combinations MONAI has no class for (generalised Dice + cross-entropy)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn.modules.loss import _Loss

__all__ = ["WeightedSumLoss"]


class WeightedSumLoss(_Loss):
    """``sum_i weights[i] * losses[i](input, target)``.

    Args:
        losses: loss modules taking the same ``(input, target)``.
        weights: one weight per loss (default 1 each).
    """

    def __init__(self, losses: Sequence[_Loss], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.losses = torch.nn.ModuleList(losses)
        self.weights = [1.0] * len(self.losses) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.losses):
            raise ValueError(f"{len(self.losses)} losses but {len(self.weights)} weights")

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(input, target) for w, loss in zip(self.weights, self.losses))
