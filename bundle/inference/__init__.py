# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Inference outputs: the detections table (``docs/outputs.md``)."""

from __future__ import annotations

from .cohort import merge_parts, run_part
from .cohort_page import write_cohort_page
from .detections import (
    COLUMNS,
    TABLE_COLUMNS,
    DetectionTableError,
    detection_rows,
    input_grid,
    input_grid_rows,
    objects_from_detector_table,
    print_summary,
    read_detections,
    to_grid,
    write_detections,
)
from .isolation import FAILED, SKIPPED, IsolatedDataset, IsolatingEvaluator, failure_reason, finish_run, short_errors
from .monai_label import SlicerBoxDetector, StructuralBoxes
from .outputs import (
    ComponentInstances,
    MapDetections,
    MaskMap,
    OutputMap,
    RegionDetections,
    RegionMap,
    SubjectReader,
    TableDetections,
    instance_map_of_rows,
)
from .run_folder import SubjectRecords, claim_output, close_run, shard

__all__ = [
    "merge_parts",
    "run_part",
    "write_cohort_page",
    "claim_output",
    "close_run",
    "shard",
    "SubjectRecords",
    "FAILED",
    "SKIPPED",
    "IsolatedDataset",
    "IsolatingEvaluator",
    "failure_reason",
    "finish_run",
    "short_errors",
    "ComponentInstances",
    "MapDetections",
    "MaskMap",
    "OutputMap",
    "RegionDetections",
    "RegionMap",
    "SubjectReader",
    "TableDetections",
    "instance_map_of_rows",
    "input_grid",
    "input_grid_rows",
    "to_grid",
    "SlicerBoxDetector",
    "StructuralBoxes",
    "COLUMNS",
    "TABLE_COLUMNS",
    "DetectionTableError",
    "detection_rows",
    "objects_from_detector_table",
    "print_summary",
    "read_detections",
    "write_detections",
]
