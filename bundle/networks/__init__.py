# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Networks not in MONAI, used from configs as ``bundle.networks.<Name>``."""

from __future__ import annotations

from .cmb_detector import TABLE_COLUMNS, TwoStageCMBDetector, stride_overlap
from .mimic_cnn import MimicCNN

__all__ = ["MimicCNN", "TABLE_COLUMNS", "TwoStageCMBDetector", "stride_overlap"]
