# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Training components that MONAI's single-network trainers do not cover, used from configs as ``bundle.engines.*``."""

from __future__ import annotations

from .staged import RCNNPrepareBatch, StagedTraining
from .two_stage import TwoStageTraining, leave_k_out, read_mimics, write_mimics
from .windows import WindowStream, WindowTraining

__all__ = [
    "RCNNPrepareBatch",
    "StagedTraining",
    "TwoStageTraining",
    "WindowStream",
    "WindowTraining",
    "leave_k_out",
    "read_mimics",
    "write_mimics",
]
