# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The first simulator's tasks, their modalities and classes: plain data, so the command line reads them without
importing the simulator (torch, MONAI)."""

from __future__ import annotations

__all__ = ["TASKS"]

TASKS = {
    "cmb": {"modalities": ("swi",), "classes": ("cmb",)},
    "epvs_lacune": {"modalities": ("t1", "t2", "flair"), "classes": ("epvs", "lacune")},
    # GP-Unet (docs/gpunet.md): EPVS in the basal ganglia only, so ``count`` is the count within the ROI
    "epvs": {"modalities": ("t2",), "classes": ("epvs",)},
    # the main job's demo (bundle.data.synth.demo_input): every marker in one brain, every modality
    "all": {"modalities": ("swi", "t1", "t2", "flair"), "classes": ("cmb", "epvs", "lacune")},
}
