# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Data model: datalist loading and validation, NIfTI loading, VALDO import, simulator (``bundle.data.synth``).

Names load their submodule on first use (:mod:`bundle._lazy`): importing the package is cheap.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "cache": ("PlainPersistentDataset",),
        "datalist": (
            "PATH_KEYS",
            "SPLITS",
            "DatalistError",
            "check_subject_id",
            "check_unique_subjects",
            "expected_channels",
            "folder_entries",
            "inference_split",
            "load_datalist",
            "load_inference_list",
            "prepare_entry",
            "read_datalist",
            "resolve_entry",
            "save_datalist",
        ),
        "plan": ("inference_entries", "input_plan"),
        "subject": ("CLASSES", "RATER_CHOICES", "LoadSubjectd", "load_volume", "validate_lesions"),
        "validate": ("validate_datalist",),
    },
)
