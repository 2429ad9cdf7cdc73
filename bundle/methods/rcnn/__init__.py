# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Multirater 3D RCNN (Sudre et al.; ``docs/rcnn.md``): EPVS vs lacunes with one head per rater. Network, targets,
losses, staged training, detections and maps, and the multirater evaluation."""

from __future__ import annotations

from .detections import BoxInstances, RCNNDetections, box_map, rcnn_rows
from .engine import RCNNPrepareBatch, StagedTraining
from .evaluation import SIZE_BINS_VOXELS, box_iou, multirater_figures
from .losses import TERMS, MultiraterRCNNLoss, match_proposals, sample_balanced
from .networks import MultiraterRCNN, RefinementHead, RPNHead, crop_boxes, cube_nms, highresnet_layers, rcnn_columns
from .smooth_distance import smooth_distance
from .transforms import (
    OBJECT_COLUMNS,
    RCNN_CHOICES,
    ObjectTabled,
    RPNTargetsd,
    SamplingWeightsd,
    SignedDistanced,
    object_table,
    rpn_targets,
    sampling_weights,
    signed_distance,
)

__all__ = [
    "OBJECT_COLUMNS",
    "RCNN_CHOICES",
    "SIZE_BINS_VOXELS",
    "TERMS",
    "MultiraterRCNN",
    "MultiraterRCNNLoss",
    "ObjectTabled",
    "BoxInstances",
    "RCNNDetections",
    "RCNNPrepareBatch",
    "RPNHead",
    "RPNTargetsd",
    "RefinementHead",
    "SamplingWeightsd",
    "SignedDistanced",
    "StagedTraining",
    "box_iou",
    "box_map",
    "crop_boxes",
    "cube_nms",
    "highresnet_layers",
    "match_proposals",
    "multirater_figures",
    "object_table",
    "rcnn_columns",
    "rcnn_rows",
    "rpn_targets",
    "sample_balanced",
    "sampling_weights",
    "signed_distance",
    "smooth_distance",
]
