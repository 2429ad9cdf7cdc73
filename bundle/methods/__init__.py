# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The four methods, one package each (``docs/architecture.md``), named by architecture:

- ``twostage``: the two-stage microbleed detector (Rau et al.): U-Net ensemble, candidates, mimic-CNN ensemble;
- ``unet``: the 3D U-Net with lesion-wise whole-volume validation (microbleeds), built from core and MONAI parts;
- ``rcnn``: the multirater 3D RCNN (Sudre et al.), EPVS vs lacunes with rater heads;
- ``gpunet``: GP-Unet (Dubost et al.), detection learned from counts.

A method imports the core (``bundle.data``, ``metrics``, ``transforms``, ``inference``, ``engines``, ``handlers``,
``evaluation``, ``losses``) and never another method; the core never imports a method. Each loads on first use, so
config expressions such as ``$bundle.methods.rcnn.rcnn_columns(...)`` work after ``$import bundle``.
"""

from __future__ import annotations

import importlib

METHODS = ("twostage", "unet", "rcnn", "gpunet")
__all__ = ["METHODS"]


def __getattr__(name: str):
    if name in METHODS:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
