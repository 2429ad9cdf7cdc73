# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Inference outputs: the detections table (``docs/outputs.md``).

Names load their submodule on first use (:mod:`bundle._lazy`): importing the package is cheap.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "cohort": ("merge_parts", "run_part"),
        "cohort_page": ("write_cohort_page",),
        "detections": (
            "COLUMNS",
            "TABLE_COLUMNS",
            "DetectionTableError",
            "detection_rows",
            "input_grid",
            "input_grid_rows",
            "objects_from_detector_table",
            "print_summary",
            "read_detections",
            "to_grid",
            "write_detections",
        ),
        "isolation": (
            "FAILED",
            "SKIPPED",
            "IsolatedDataset",
            "IsolatingEvaluator",
            "failure_reason",
            "finish_run",
            "short_errors",
        ),
        "monai_label": ("SlicerBoxDetector", "StructuralBoxes"),
        "outputs": (
            "ComponentInstances",
            "MapDetections",
            "MaskMap",
            "OutputMap",
            "RegionDetections",
            "RegionMap",
            "SubjectReader",
            "TableDetections",
            "instance_map_of_rows",
        ),
        "processes": ("auto_processes", "check_processes", "run_shards", "shard_commands"),
        "run_folder": ("SubjectRecords", "claim_output", "close_run", "match_itk_threads", "shard"),
    },
)
