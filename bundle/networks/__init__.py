# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Networks not in MONAI, used from configs as ``bundle.networks.<Name>``."""

from __future__ import annotations

from .cmb_detector import TABLE_COLUMNS, CMBNetworks, TwoStageCMBDetector, stride_overlap
from .gpunet import GPUNet
from .mimic_cnn import MimicCNN
from .rcnn import MultiraterRCNN, RefinementHead, RPNHead, crop_boxes, cube_nms, highresnet_layers, rcnn_columns

__all__ = [
    "CMBNetworks",
    "GPUNet",
    "MimicCNN",
    "MultiraterRCNN",
    "RPNHead",
    "RefinementHead",
    "TABLE_COLUMNS",
    "TwoStageCMBDetector",
    "crop_boxes",
    "cube_nms",
    "highresnet_layers",
    "rcnn_columns",
    "stride_overlap",
]
