# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Preprocessing transforms (array + dictionary pairs), used from configs as ``bundle.transforms.<Name>``."""

from __future__ import annotations

from .array import (
    HistogramPeakNormalize,
    N4BiasFieldCorrection,
    ROIFloor,
    SoftROIMask,
    TrimRescale,
    WhiteMatterZScore,
    estimate_white_matter,
    head_mask,
    histogram_peak,
)
from .dictionary import (
    HeadMaskd,
    WorkingGridd,
    HistogramPeakNormalized,
    N4BiasFieldCorrectiond,
    ROIFloord,
    SoftROIMaskd,
    TrimRescaled,
    WhiteMatterZScored,
)
from .gpunet import BlendWithImaged, CountMatchedObjectsd, predicted_count
from .rcnn import (
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
from .sampling import ObjectCentresd, RandCropAroundObjectd, RandWindowsd, crop_padded, object_centres

__all__ = [
    "BlendWithImaged",
    "CountMatchedObjectsd",
    "predicted_count",
    "HistogramPeakNormalize",
    "HistogramPeakNormalized",
    "N4BiasFieldCorrection",
    "N4BiasFieldCorrectiond",
    "OBJECT_COLUMNS",
    "ObjectTabled",
    "RCNN_CHOICES",
    "RPNTargetsd",
    "SamplingWeightsd",
    "SignedDistanced",
    "object_table",
    "rpn_targets",
    "sampling_weights",
    "signed_distance",
    "ObjectCentresd",
    "RandCropAroundObjectd",
    "RandWindowsd",
    "ROIFloor",
    "ROIFloord",
    "SoftROIMask",
    "SoftROIMaskd",
    "TrimRescale",
    "TrimRescaled",
    "crop_padded",
    "WhiteMatterZScore",
    "WhiteMatterZScored",
    "estimate_white_matter",
    "histogram_peak",
    "head_mask",
    "HeadMaskd",
    "WorkingGridd",
    "object_centres",
]
