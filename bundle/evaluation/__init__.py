# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Evaluation command: detections table or predicted maps against a datalist -> metrics.json + froc.png."""

from __future__ import annotations

from .evaluate import evaluate, main
from .plots import plot_froc

__all__ = ["evaluate", "main", "plot_froc"]
