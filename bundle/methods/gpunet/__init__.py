# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""GP-Unet (Dubost et al.; ``docs/gpunet.md``): detection learned from counts. Network, saliency inferer, the
count-matched threshold, its transforms and its writer."""

from __future__ import annotations

from .count_threshold import BLOBS, count_matched_objects
from .networks import GPUNet
from .saliency import SaliencyInferer
from .transforms import BlendWithImaged, CountMatchedObjectsd, predicted_count
from .writer import CountPredictionsWriter, InstanceDetections

__all__ = [
    "BLOBS",
    "BlendWithImaged",
    "CountMatchedObjectsd",
    "GPUNet",
    "CountPredictionsWriter",
    "InstanceDetections",
    "SaliencyInferer",
    "count_matched_objects",
    "predicted_count",
]
