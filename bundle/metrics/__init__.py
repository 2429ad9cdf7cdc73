# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Lesion-wise evaluation shared by every detector: objects, matching, figures, FROC/CPM.

Names load their submodule on first use (:mod:`bundle._lazy`): importing the package is cheap.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "froc": ("LUNA16_FPS", "cpm_score", "froc_curve"),
        "lesion_detection": ("DEFAULT_SIZE_BINS_MM", "evaluate_scan", "icc", "summarise_scans"),
        "lesion_matching": ("RULES", "match_by_distance", "match_by_overlap", "match_objects"),
        "metric": ("LesionDetectionMetric",),
        "objects": (
            "LABEL_FORMATS",
            "Objects",
            "connected_components",
            "label_instances",
            "objects_from_instances",
            "objects_from_map",
            "objects_from_table",
        ),
        "raters": ("rater_profiles",),
        "valdo": ("VALDO_TASKS", "valdo_scan"),
    },
)
