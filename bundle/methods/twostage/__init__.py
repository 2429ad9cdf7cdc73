# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Two-stage microbleed detector (Rau et al.; ``docs/twostage.md``): networks, candidates, the whole detector as one
module, and its training plan (U-Nets, mimics by cross-validation, CNNs)."""

from __future__ import annotations

from .candidates import candidates_from_map
from .detector import TABLE_COLUMNS, TwoStageCMBDetector
from .engine import MIMIC_COLUMNS, TwoStageTraining, leave_k_out, read_mimics, write_mimics
from .networks import STAGE2_VIEWS, CMBNetworks, MimicCNN, stage2_view, stride_overlap

__all__ = [
    "MIMIC_COLUMNS",
    "STAGE2_VIEWS",
    "TABLE_COLUMNS",
    "CMBNetworks",
    "MimicCNN",
    "TwoStageCMBDetector",
    "TwoStageTraining",
    "candidates_from_map",
    "leave_k_out",
    "read_mimics",
    "stage2_view",
    "stride_overlap",
    "write_mimics",
]
