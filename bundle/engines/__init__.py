# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Training components that MONAI's single-network trainers do not cover, used from configs as ``bundle.engines.*``."""

from __future__ import annotations

from .guard import claim_training
from .plan import FinishedNetworks, TrainingPlan
from .runs import attach_progress, preprocessed, save_state, window_trainer
from .windows import WindowStream, WindowTraining

__all__ = [
    "FinishedNetworks",
    "TrainingPlan",
    "attach_progress",
    "claim_training",
    "preprocessed",
    "save_state",
    "window_trainer",
    "WindowStream",
    "WindowTraining",
]
