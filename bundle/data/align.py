# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Bring a subject's modalities onto one grid (``docs/data.md``, "Modalities on different grids").

A modality stored on another grid than the detector's reference (another resolution, orientation or field of view,
same session) is resampled onto it through the two affines (world RAS mm, MONAI ``ResampleToMatch``). Where the
head moved between the acquisitions the affines do not say so: :func:`rigid_transform` estimates the motion with a
rigid registration (SimpleITK, Mattes mutual information, so any pair of contrasts) and :func:`moved` folds it
into the affine before resampling. :func:`overlap` measures how well two scans of a subject agree once on one grid:
the Dice of their head masks inside the field of view they share. :func:`align_onto` does all three, as the loader
(:class:`bundle.data.LoadSubjectd`) asks.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import ResampleToMatch
from scipy import ndimage as ndi

__all__ = ["ALIGN", "LPS", "align_onto", "foreground", "grid_difference", "moved", "overlap", "resample_onto",
           "rigid_transform"]  # fmt: skip

ALIGN = ("fail", "affine", "auto", "rigid")  # what the loader does with a modality on another grid (align_onto)

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS (ITK's world), its own inverse


def resample_onto(vol: MetaTensor, ref: MetaTensor, mode: str = "bilinear") -> MetaTensor:
    """``vol`` (C, ...) on the grid of ``ref`` (its shape and affine) through their affines; zero outside ``vol``'s
    field of view. The result carries ``ref``'s metadata and no applied operations (the reference grid is the
    subject's input grid)."""
    out = ResampleToMatch(mode=mode, padding_mode="zeros")(vol, ref)
    return MetaTensor(out.as_tensor().to(torch.float32), meta=dict(ref.meta))


def moved(vol: MetaTensor, world: np.ndarray) -> MetaTensor:
    """``vol`` with its affine corrected by ``world`` (4 x 4, RAS mm; a point of the reference's world maps to
    ``world @ p`` in ``vol``'s): resampling it through the affines then undoes the motion."""
    out = MetaTensor(vol.as_tensor(), meta=dict(vol.meta))
    out.affine = torch.as_tensor(np.linalg.inv(world) @ vol.affine.double().numpy(), dtype=torch.float64)
    return out


def sitk_image(array: np.ndarray, affine: np.ndarray):
    """A SimpleITK image (ITK's LPS world) of an (I, J, K) array with a RAS ``affine``."""
    import SimpleITK as sitk

    lps = LPS @ np.asarray(affine, float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array, np.float32).transpose(2, 1, 0)))
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in (lps[:3, :3] / spacing).ravel()])
    img.SetOrigin([float(v) for v in lps[:3, 3]])
    return img


def _sitk(vol: MetaTensor):
    return sitk_image(vol[0].numpy(), vol.affine.double().numpy())


def rigid_transform(vol: MetaTensor, ref: MetaTensor, seed: int = 1) -> np.ndarray:
    """The rigid motion (4 x 4, RAS mm) from ``ref``'s world to ``vol``'s: SimpleITK's Euler 3D transform,
    started from no motion (rotating about the reference's centre), fitted by Mattes mutual information on 2
    resolution levels (every 4th, then every 2nd voxel; 4 and 2 mm smoothing) with a fixed sampling ``seed`` (not
    0, SimpleITK's "wall clock"), so a rerun gives the same answer."""
    import SimpleITK as sitk

    fixed, moving = _sitk(ref), _sitk(vol)
    # no motion to start: the affines already put both in one world (a slab's box centre is not the head's)
    start = sitk.Euler3DTransform()
    start.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in fixed.GetSize()]))
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.05, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=200)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2])
    reg.SetSmoothingSigmasPerLevel([4.0, 2.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(start, inPlace=False)
    found = reg.Execute(fixed, moving)
    matrix, centre, shift = _affine_parts(found)
    lps = np.eye(4)
    lps[:3, :3] = matrix
    lps[:3, 3] = shift + centre - matrix @ centre
    return LPS @ lps @ LPS


def _affine_parts(transform) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(matrix, centre, translation) of a SimpleITK rigid transform, composite or not."""
    import SimpleITK as sitk

    if transform.GetName() == "CompositeTransform":
        transform = transform.GetNthTransform(transform.GetNumberOfTransforms() - 1)
    euler = sitk.Euler3DTransform(transform)
    return (np.array(euler.GetMatrix()).reshape(3, 3), np.array(euler.GetCenter()), np.array(euler.GetTranslation()))


def grid_difference(a: MetaTensor, b: MetaTensor, atol: float = 1e-3) -> str | None:
    """How the grid of ``b`` differs from ``a``'s (shape, or affine by more than ``atol`` mm); None: the same."""
    if a.shape[1:] != b.shape[1:]:
        return f"shape {tuple(b.shape[1:])} differs from {tuple(a.shape[1:])}"
    diff = float((a.affine.double() - b.affine.double()).abs().max())
    if diff > atol:
        return f"affine differs by up to {diff:.4g} (tolerance {atol:g})"
    return None


def foreground(vol: MetaTensor, sigma_mm: float = 1.5, fraction: float = 0.1) -> np.ndarray:
    """The head (H, W, D bool) of channel 0 in any MR contrast: smoothed by ``sigma_mm``, above ``fraction`` of its
    99th percentile (air is dark in every contrast; Otsu's cut would split tissues in FLAIR), the largest
    component, holes filled."""
    spacing = np.linalg.norm(vol.affine.double().numpy()[:3, :3], axis=0)
    smooth = ndi.gaussian_filter(vol[0].numpy().astype(np.float32), sigma_mm / spacing)
    head = smooth > fraction * float(np.percentile(smooth, 99))
    lab, n = ndi.label(head)
    if n > 1:
        head = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return ndi.binary_fill_holes(head)


def overlap(ref_head: np.ndarray, vol: MetaTensor, fov: np.ndarray) -> float:
    """Dice of the head ``ref_head`` (:func:`foreground` of the reference) and the head of ``vol`` (on the
    reference's grid) inside ``fov`` (the voxels ``vol`` covers); 1.0 where neither has head there."""
    a, b = ref_head & fov, foreground(vol) & fov
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _motion(world: np.ndarray, ref: MetaTensor) -> tuple[float, float]:
    """Rotation (degrees) and shift of the reference's centre (mm) of a rigid ``world`` transform."""
    angle = np.degrees(np.arccos(np.clip((np.trace(world[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)))
    centre = ref.affine.double().numpy() @ np.r_[(np.array(ref.shape[1:]) - 1) / 2.0, 1.0]
    return float(angle), float(np.linalg.norm(world @ centre - centre))


def _onto(vol: MetaTensor, ref: MetaTensor, ref_head: np.ndarray) -> tuple[MetaTensor, float]:
    """``vol`` on ``ref``'s grid and its :func:`overlap` with the reference."""
    ones = MetaTensor(torch.ones_like(vol[:1].as_tensor()), meta=dict(vol.meta))
    fov = resample_onto(ones, ref, "nearest")[0].numpy() > 0.5
    out = resample_onto(vol, ref)
    return out, overlap(ref_head, out, fov)


def align_onto(vol: MetaTensor, ref: MetaTensor, how: str = "auto", min_overlap: float = 0.95,
               ref_head: np.ndarray | None = None, atol: float = 1e-3) -> tuple[MetaTensor, dict]:  # fmt: skip
    """``vol`` on the grid of ``ref`` and what was done: through the affines (``affine``), then a rigid
    registration where the head overlap is below ``min_overlap`` and the registration raises it (``auto``) or
    always (``rigid``). The record: ``resampled``, ``registered``, ``rotation_deg`` and ``shift_mm`` of the motion
    found, ``overlap`` (:func:`overlap` after alignment) and ``flagged`` (overlap still below ``min_overlap``).
    ``ref_head``: the reference's :func:`foreground`, when the caller has it; ``atol``: the grid tolerance (mm). On
    the same grid, ``auto`` keeps a registration only if it raises the overlap by 0.01 or more (no made-up motion
    for an image that was aligned)."""
    if how not in ALIGN[1:]:
        raise ValueError(f"align: {how!r} is not one of {list(ALIGN[1:])}")
    ref_head = foreground(ref) if ref_head is None else ref_head
    same = grid_difference(ref, vol, atol) is None
    out, score = (vol, overlap(ref_head, vol, np.ones(ref_head.shape, bool))) if same else _onto(vol, ref, ref_head)
    record = {"resampled": not same, "registered": False, "rotation_deg": 0.0, "shift_mm": 0.0}
    if how == "rigid" or (how == "auto" and score < min_overlap):
        world = rigid_transform(vol, ref)
        fixed, fixed_score = _onto(moved(vol, world), ref, ref_head)
        if how == "rigid" or fixed_score > score + (0.01 if same else 0.0):
            rotation, shift = _motion(world, ref)
            out, score = fixed, fixed_score
            record.update(resampled=True, registered=True, rotation_deg=round(rotation, 2), shift_mm=round(shift, 2))
    return out, {**record, "overlap": round(score, 4), "flagged": score < min_overlap}
