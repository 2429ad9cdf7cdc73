# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The head around the brain, for simulated scans that are not skull-stripped (``head=True`` of the structural and
the first simulator; docs/data.md, "The head around the brain").

The template is a brain only, so the tissues outside it are laid out by distance from the subject's brain mask,
with thicknesses drawn per subject: a CSF layer (1-3 mm), the skull (5-8 mm: two tables of cortical bone with
fatty marrow between), the scalp (4-8 mm: muscle under fat), and a neck below the skull base. Their signals come
from relaxation times through the same sequence equations as the brain's (structural simulator) or from relative
levels per contrast (first simulator). The air outside stays dark, with the scan's noise.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .anatomy import Anatomy

__all__ = ["HEAD_LEVELS", "HEAD_RELAXATION", "HEAD_TISSUES", "head_fractions", "head_image"]

HEAD_TISSUES = ("bone", "marrow", "muscle", "fat")
#: (T1 ms, T2 ms, PD) per field strength; cortical bone's T2 of 1 ms makes it dark in every sequence
HEAD_RELAXATION = {
    1.5: {"bone": (250.0, 1.0, 0.1), "marrow": (300.0, 70.0, 0.9), "muscle": (1000.0, 35.0, 0.75),
          "fat": (260.0, 80.0, 0.95)},
    3.0: {"bone": (300.0, 1.0, 0.1), "marrow": (380.0, 65.0, 0.9), "muscle": (1400.0, 32.0, 0.75),
          "fat": (380.0, 75.0, 0.95)},
}  # fmt: skip
#: relative levels (white matter 1) of the first simulator's contrasts (its TISSUE table's scale); SWI is a long-TE
#: gradient echo: fat bright, muscle dark (short T2*)
HEAD_LEVELS = {
    "swi": {"bone": 0.03, "marrow": 0.7, "muscle": 0.35, "fat": 0.9},
    "t1": {"bone": 0.05, "marrow": 1.3, "muscle": 0.55, "fat": 1.5},
    "t2": {"bone": 0.03, "marrow": 0.9, "muscle": 0.35, "fat": 1.1},
    "flair": {"bone": 0.03, "marrow": 1.0, "muscle": 0.4, "fat": 1.2},
}


def _ramp(dist: np.ndarray, start: float, stop: float) -> np.ndarray:
    """1 between ``start`` and ``stop`` mm, with a 1 mm partial-volume edge on each side."""
    return np.clip(np.minimum(dist - start + 0.5, stop - dist + 0.5), 0.0, 1.0).astype(np.float32)


def head_fractions(anat: Anatomy, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Partial-volume fractions of ``csf`` and :data:`HEAD_TISSUES` outside the brain mask (zero inside), by the
    distance from it (mm) and, for the neck, the voxels' template coordinates; they fill what the template's grey
    matter, white matter and CSF leave of each voxel."""
    spacing = np.linalg.norm(anat.affine[:3, :3], axis=0)
    dist = ndi.distance_transform_edt(anat.brain < 0.5, sampling=spacing).astype(np.float32)
    csf_mm, skull_mm, scalp_mm = rng.uniform(1.0, 3.0), rng.uniform(5.0, 8.0), rng.uniform(4.0, 8.0)
    table = 0.3 * skull_mm  # each table of the skull; the diploe (marrow) between
    out = {"csf": _ramp(dist, 0.0, csf_mm)}
    s0 = csf_mm
    out["bone"] = _ramp(dist, s0, s0 + table) + _ramp(dist, s0 + skull_mm - table, s0 + skull_mm)
    out["marrow"] = _ramp(dist, s0 + table, s0 + skull_mm - table)
    s1 = s0 + skull_mm
    out["muscle"] = _ramp(dist, s1, s1 + 0.4 * scalp_mm)
    out["fat"] = _ramp(dist, s1 + 0.4 * scalp_mm, s1 + scalp_mm)
    x, y, z = anat.mni  # a neck: an elliptic column below the skull base, muscle inside a ring of fat
    column = np.hypot(x / 55.0, (y + 20.0) / 60.0)
    neck = (z < -45.0) & (column <= 1.0) & (anat.brain < 0.5) & (dist > s1)
    out["muscle"] = np.where(neck & (column < 0.85), 1.0, out["muscle"]).astype(np.float32)
    out["fat"] = np.where(neck & (column >= 0.85), 1.0, out["fat"]).astype(np.float32)
    outside = (anat.brain < 0.5).astype(np.float32)
    room = np.clip(1.0 - anat.gm - anat.wm - anat.csf, 0.0, 1.0)  # what the brain's tissues leave of each voxel
    return {k: np.clip(v, 0.0, 1.0) * outside * room for k, v in out.items()}


def head_image(fractions: dict[str, np.ndarray], levels: dict[str, float]) -> np.ndarray:
    """The noise-free head outside the brain: each fraction times its tissue's level (``levels`` has ``csf`` and
    :data:`HEAD_TISSUES`)."""
    return sum(fractions[t] * np.float32(levels[t]) for t in fractions).astype(np.float32)
