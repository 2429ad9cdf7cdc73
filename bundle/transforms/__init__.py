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
    HistogramPeakNormalized,
    N4BiasFieldCorrectiond,
    ROIFloord,
    SoftROIMaskd,
    TrimRescaled,
    WhiteMatterZScored,
    WorkingGridd,
)
from .modalities import SUBSETS_T1_T2_FLAIR, AvailabilityChannelsd, ModalityChannelsd, PerModalityd, RandModalityDropd
from .regions import BrainMaskd, BrainRegionsd, RandChannelPickd, RegionsInputd, TemplateMapd, regions_input
from .sampling import ObjectCentresd, RandCropAroundObjectd, RandWindowsd, crop_padded, object_centres

__all__ = [
    "BrainMaskd",
    "BrainRegionsd",
    "RandChannelPickd",
    "RegionsInputd",
    "regions_input",
    "TemplateMapd",
    "AvailabilityChannelsd",
    "ModalityChannelsd",
    "PerModalityd",
    "RandModalityDropd",
    "SUBSETS_T1_T2_FLAIR",
    "HistogramPeakNormalize",
    "HistogramPeakNormalized",
    "N4BiasFieldCorrection",
    "N4BiasFieldCorrectiond",
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
