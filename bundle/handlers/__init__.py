# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Ignite handlers, used from configs as ``bundle.handlers.<Name>``."""

from __future__ import annotations

from .checkpoints import best_score_state, in_checkpoint, latest_checkpoint
from .lesion_detection import SCALAR_FIGURES, LesionDetection
from .qc_report import QCReport, choose_slices, subject_montage, write_index
from .writers import (
    AlignmentWriter,
    CountsWriter,
    DetectionsTableWriter,
    FailuresWriter,
    InstanceMapWriter,
    LabelMapWriter,
    MapWriter,
    SubjectWriter,
    TemplateMapWriter,
    Writers,
    write_counts,
)

__all__ = [
    "SCALAR_FIGURES",
    "AlignmentWriter",
    "CountsWriter",
    "DetectionsTableWriter",
    "FailuresWriter",
    "InstanceMapWriter",
    "LabelMapWriter",
    "MapWriter",
    "SubjectWriter",
    "TemplateMapWriter",
    "Writers",
    "write_counts",
    "LesionDetection",
    "QCReport",
    "choose_slices",
    "best_score_state",
    "in_checkpoint",
    "latest_checkpoint",
    "subject_montage",
    "write_index",
]
