# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Lesion-wise evaluation shared by every detector: objects, matching, figures, FROC/CPM."""

from __future__ import annotations

from .froc import LUNA16_FPS, cpm_score, froc_curve
from .lesion_detection import DEFAULT_SIZE_BINS_MM, evaluate_scan, icc, summarise_scans
from .lesion_matching import RULES, match_by_distance, match_by_overlap, match_objects
from .metric import LesionDetectionMetric
from .objects import (
    LABEL_FORMATS,
    Objects,
    connected_components,
    label_instances,
    objects_from_instances,
    objects_from_map,
    objects_from_table,
)
from .raters import rater_profiles
from .valdo import VALDO_TASKS, valdo_scan

__all__ = [
    "DEFAULT_SIZE_BINS_MM",
    "LABEL_FORMATS",
    "LUNA16_FPS",
    "LesionDetectionMetric",
    "RULES",
    "VALDO_TASKS",
    "Objects",
    "connected_components",
    "cpm_score",
    "evaluate_scan",
    "froc_curve",
    "icc",
    "label_instances",
    "match_by_distance",
    "match_by_overlap",
    "match_objects",
    "objects_from_instances",
    "objects_from_map",
    "objects_from_table",
    "rater_profiles",
    "summarise_scans",
    "valdo_scan",
]
