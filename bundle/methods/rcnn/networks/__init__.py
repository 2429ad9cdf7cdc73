# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The multirater 3D RCNN's networks (:mod:`.rcnn`: the whole detector; :mod:`.layers`: its parts)."""

from __future__ import annotations

from .layers import RefinementHead, RPNHead, crop_boxes, cube_nms, highresnet_layers, rcnn_columns
from .rcnn import PARTS, MultiraterRCNN

__all__ = [
    "PARTS",
    "MultiraterRCNN",
    "RPNHead",
    "RefinementHead",
    "crop_boxes",
    "cube_nms",
    "highresnet_layers",
    "rcnn_columns",
]
