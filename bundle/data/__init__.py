# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Data model: datalist loading and validation, NIfTI loading, VALDO import, simulator (``bundle.data.synth``)."""

from __future__ import annotations

from .cache import PlainPersistentDataset
from .datalist import (
    PATH_KEYS,
    SPLITS,
    DatalistError,
    check_subject_id,
    check_unique_subjects,
    expected_channels,
    folder_entries,
    inference_split,
    load_datalist,
    load_inference_list,
    prepare_entry,
    read_datalist,
    resolve_entry,
    save_datalist,
)
from .plan import inference_entries, input_plan
from .subject import CLASSES, RATER_CHOICES, LoadSubjectd, load_volume, validate_lesions
from .validate import validate_datalist

__all__ = [
    "CLASSES",
    "PATH_KEYS",
    "RATER_CHOICES",
    "SPLITS",
    "DatalistError",
    "LoadSubjectd",
    "PlainPersistentDataset",
    "check_subject_id",
    "check_unique_subjects",
    "expected_channels",
    "folder_entries",
    "inference_entries",
    "input_plan",
    "load_datalist",
    "inference_split",
    "load_inference_list",
    "load_volume",
    "prepare_entry",
    "read_datalist",
    "resolve_entry",
    "save_datalist",
    "validate_datalist",
    "validate_lesions",
]
