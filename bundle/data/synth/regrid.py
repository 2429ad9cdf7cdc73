# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""A simulated scan as another acquisition of the same session would store it: :func:`reslice` puts it on another
grid (voxel size, orientation, field of view) with the affine saying so, :func:`move` moves the head inside an
unchanged grid (motion between two acquisitions, which no affine records). Both keep the world of every other
file of the subject, so the labels and records stay true for the images left alone. They resample with nibabel
(``nibabel.processing``), not with the bundle's own :mod:`bundle.data.align`, so that tests of the one check the
other."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from .anatomy import euler_rotation

__all__ = ["move", "reslice", "rigid"]


def rigid(rotation_deg: Sequence[float], shift_mm: Sequence[float], centre: Sequence[float]) -> np.ndarray:
    """4 x 4 world transform (RAS mm): the Euler rotation ``rotation_deg`` about ``centre``, then ``shift_mm``."""
    out = np.eye(4)
    out[:3, :3] = euler_rotation(np.deg2rad(np.asarray(rotation_deg, float)))
    out[:3, 3] = np.asarray(centre, float) - out[:3, :3] @ np.asarray(centre, float) + np.asarray(shift_mm, float)
    return out


def _centre(img: nib.Nifti1Image) -> np.ndarray:
    return (img.affine @ np.r_[(np.array(img.shape[:3]) - 1) / 2.0, 1.0])[:3]


def _write(img: nib.Nifti1Image, grid: tuple, path) -> Path:
    """``img`` resampled (linearly, zero outside) onto ``grid`` = (shape, affine), written to ``path``."""
    out = resample_from_to(nib.Nifti1Image(np.asarray(img.dataobj, np.float32), img.affine), grid, order=1, cval=0.0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(out.dataobj, np.float32), grid[1]), str(path))
    return Path(path)


def reslice(src, dst, spacing: Sequence[float], rotation_deg: Sequence[float] = (0.0, 0.0, 0.0)) -> Path:
    """Write ``src`` to ``dst`` on a grid of ``spacing`` mm whose axes are rotated by ``rotation_deg`` (Euler,
    about the scan's centre) and that covers the scan's field of view (linear interpolation)."""
    img = nib.load(str(src))
    axes = rigid(rotation_deg, (0, 0, 0), (0, 0, 0))[:3, :3] @ np.diag(np.asarray(spacing, float))
    extent = np.abs(img.affine[:3, :3]) @ np.array(img.shape[:3])  # world box of the scan
    shape = tuple(int(np.ceil(e)) for e in np.abs(np.linalg.inv(axes)) @ extent)
    affine = np.eye(4)
    affine[:3, :3] = axes
    affine[:3, 3] = _centre(img) - axes @ ((np.array(shape) - 1) / 2.0)
    return _write(img, (shape, affine), dst)


def move(src, dst, rotation_deg: Sequence[float], shift_mm: Sequence[float]) -> Path:
    """Write ``src`` to ``dst`` with the head rotated by ``rotation_deg`` about the scan's centre and shifted by
    ``shift_mm`` (world RAS mm), on the same grid and with the same affine."""
    img = nib.load(str(src))
    world = rigid(rotation_deg, shift_mm, _centre(img))
    # the head at world @ p shows what was at p: sample the scan through an affine that moved with the head
    followed = nib.Nifti1Image(np.asarray(img.dataobj, np.float32), world @ img.affine)
    return _write(followed, (img.shape[:3], img.affine), dst)
