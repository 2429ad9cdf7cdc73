# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Evaluation command: detections table or predicted maps against a datalist -> metrics.json + froc.png."""

from __future__ import annotations

from .evaluate import evaluate, main
from .multirater import box_iou, multirater_figures
from .plots import plot_froc

__all__ = ["box_iou", "evaluate", "main", "multirater_figures", "plot_froc"]
