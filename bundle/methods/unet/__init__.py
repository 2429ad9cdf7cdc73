# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""3D U-Net with lesion-wise whole-volume validation (microbleeds; ``docs/unet.md``).

The method is configuration only (``configs/unet/``): MONAI's ``UNet`` and losses, the core's
``bundle.losses.WeightedSumLoss``, ``bundle.transforms.RandCropAroundObjectd`` and the lesion-wise validation
handler ``bundle.handlers.LesionDetection``. Code it alone needs goes here: the class targets and the
class-labelled detections of the structural detector (EPVS and lacunes, :mod:`.structural`) and its rater heads
(:mod:`.raters`).
"""

from __future__ import annotations

from .raters import RaterHeads, feature_names, fit_rater_heads, load_rater_heads, object_features, rater_columns
from .structural import (
    BackgroundOutsided,
    ClassMapd,
    ClassMapDetections,
    brain_medians,
    class_map,
    class_objects,
    fluid_beyond,
)

__all__ = [
    "BackgroundOutsided",
    "ClassMapDetections",
    "RaterHeads",
    "ClassMapd",
    "brain_medians",
    "class_map",
    "class_objects",
    "feature_names",
    "fit_rater_heads",
    "fluid_beyond",
    "load_rater_heads",
    "object_features",
    "rater_columns",
]
