# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Losses not in MONAI, used from configs as ``bundle.losses.<Name>``."""

from __future__ import annotations

from .combined import WeightedSumLoss

__all__ = ["WeightedSumLoss"]
