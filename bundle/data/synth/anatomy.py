# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Subject anatomy: the ICBM152 2009a tissue maps under a random affine + smooth deformation, on any grid.

Every output voxel keeps the template (MNI) coordinate it was sampled from, so anatomical regions
(basal ganglia, centrum semiovale, ...) are defined once in MNI millimetres and follow the deformation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from monai.data.utils import affine_to_spacing
from scipy import ndimage as ndi

__all__ = ["Anatomy", "build_anatomy", "load_template", "region_masks"]

TEMPLATE = Path(__file__).with_name("template") / "mni152_2009a_tissue.npz"
MAPS = ("gm", "wm", "csf", "t1", "brain")

# Approximate MNI152 ellipsoids (centre mm, semi-axes mm) of deep grey nuclei, left side; mirrored for right.
NUCLEI = {
    "putamen": ((-25.0, 2.0, 1.0), (6.0, 14.0, 9.0)),
    "pallidum": ((-19.0, -4.0, -1.0), (4.0, 7.0, 5.0)),
    "caudate": ((-13.0, 12.0, 9.0), (5.0, 8.0, 8.0)),
    "thalamus": ((-11.0, -18.0, 7.0), (7.0, 11.0, 8.0)),
    "internal_capsule": ((-19.0, -2.0, 6.0), (5.0, 14.0, 10.0)),
}


@dataclass
class Anatomy:
    """Tissue maps of one subject on its output grid.

    Attributes:
        affine: 4x4 voxel-to-world (RAS mm) matrix of the output grid.
        gm, wm, csf, t1, brain: float32 maps of shape ``shape`` (probabilities; ``t1`` is the template's T1w in [0, 1]).
        mni: float32 array (3, *shape), the MNI coordinate (mm) each voxel centre was sampled from.
        to_mni: the linear part (rotation times scale) of the map from world to MNI millimetres.
    """

    affine: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    t1: np.ndarray
    brain: np.ndarray
    mni: np.ndarray
    to_mni: np.ndarray | None = None  # 3x3 linear part of the world -> MNI map (head rotation and scale)
    _nuclei: dict = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.gm.shape)

    @property
    def spacing(self) -> np.ndarray:
        return affine_to_spacing(self.affine)


@lru_cache(maxsize=1)
def load_template() -> dict[str, np.ndarray]:
    """Return the vendored template maps as float32 in [0, 1] plus its ``affine``."""
    with np.load(TEMPLATE) as data:
        out = {k: data[k].astype(np.float32) / (1.0 if k == "brain" else 255.0) for k in MAPS}
        out["affine"] = data["affine"].astype(np.float64)
    return out


def euler_rotation(angles_rad: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles_rad)
    sx, sy, sz = np.sin(angles_rad)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _grid(spacing: np.ndarray, rng: np.random.Generator, margin_mm: float = 0.0) -> tuple[np.ndarray, tuple]:
    """Output grid covering the template's field of view (widened by ``margin_mm`` on every side), shifted by a
    few mm."""
    tmpl = load_template()
    fov = np.array(tmpl["gm"].shape) * affine_to_spacing(tmpl["affine"]) + 2.0 * margin_mm
    shape = tuple(int(np.ceil(f / s)) for f, s in zip(fov, spacing))
    affine = np.eye(4)
    affine[:3, :3] = np.diag(spacing)
    affine[:3, 3] = tmpl["affine"][:3, 3] - margin_mm + rng.uniform(-4, 4, 3) + 0.5 * (spacing - 1.0)
    return affine, shape


def _smooth_displacement(
    shape: tuple[int, int, int], spacing: np.ndarray, rng: np.random.Generator, amplitude_mm: float, control_mm: float
) -> np.ndarray:
    """Random smooth displacement field (3, *shape) in mm: Gaussian noise on a coarse lattice, cubic-upsampled."""
    extent = np.array(shape) * spacing
    n_ctrl = np.maximum(np.ceil(extent / control_mm).astype(int) + 1, 2)
    coarse = rng.normal(0.0, amplitude_mm, size=(3, *n_ctrl))
    mid = np.maximum((extent / 4.0).astype(int), 2)  # ~4 mm intermediate lattice, cheap cubic step
    inter = np.stack([ndi.zoom(c, mid / n_ctrl, order=3, mode="nearest") for c in coarse])
    fine = torch.nn.functional.interpolate(
        torch.from_numpy(inter.astype(np.float32))[None], size=shape, mode="trilinear", align_corners=True
    )
    return fine[0].numpy()


def build_anatomy(
    spacing: tuple[float, float, float] | np.ndarray,
    rng: np.random.Generator,
    warp_mm: float = 3.0,
    rotation_deg: float = 4.0,
    scale: float = 0.06,
    angles_deg: tuple[float, float, float] | None = None,
    margin_mm: float = 0.0,
) -> Anatomy:
    """Sample a subject's tissue maps on a grid of ``spacing`` mm, with partial-volume averaging.

    Args:
        spacing: output voxel size (mm) along i, j, k.
        rng: random generator (determines the deformation and the grid shift).
        warp_mm: standard deviation of the smooth displacement at its control points (30 mm apart).
        rotation_deg: maximum absolute rotation about each axis.
        scale: maximum relative change of head size (isotropic).
        angles_deg: the rotation about each axis, instead of a draw within ``rotation_deg``.
        margin_mm: room around the template's field of view (for a simulated head around the brain).

    Returns:
        An :class:`Anatomy`. Voxels larger than 1 mm along an axis average ``ceil(spacing)`` sub-samples along it.
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    tmpl = load_template()
    affine, shape = _grid(spacing, rng, margin_mm)
    angles = rng.uniform(-rotation_deg, rotation_deg, 3) if angles_deg is None else np.asarray(angles_deg, float)
    lin = euler_rotation(np.deg2rad(angles)) * rng.uniform(1 - scale, 1 + scale)
    centre = np.array([0.0, -18.0, 10.0], np.float32)  # rotate and scale about the middle of the brain (MNI mm)
    disp = _smooth_displacement(shape, spacing, rng, warp_mm, 30.0)
    to_tmpl_vox = np.linalg.inv(tmpl["affine"])
    n_sub = np.maximum(np.ceil(spacing - 1e-6).astype(int), 1)
    offsets = [((np.arange(n) + 0.5) / n - 0.5) for n in n_sub]
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    a33, a3 = affine[:3, :3].astype(np.float32), affine[:3, 3:4].astype(np.float32)
    t33, t3 = to_tmpl_vox[:3, :3].astype(np.float32), to_tmpl_vox[:3, 3:4].astype(np.float32)
    lin, disp = lin.astype(np.float32), disp.reshape(3, -1)

    def to_mni(offset: np.ndarray) -> np.ndarray:
        world = a33 @ (ijk + offset[:, None]) + a3
        return lin @ (world - centre[:, None]) + centre[:, None] + disp

    stack = _template_tensor()
    acc = torch.zeros(len(MAPS), ijk.shape[1])
    mni_centre = to_mni(np.zeros(3, np.float32))  # regions are looked up at voxel centres
    for oi in offsets[0]:
        for oj in offsets[1]:
            for ok in offsets[2]:
                off = np.array([oi, oj, ok], np.float32)
                mni = mni_centre if not off.any() else to_mni(off)
                acc += _sample(stack, t33 @ mni + t3) / float(np.prod(n_sub))
    vol = {k: acc[n].numpy().reshape(shape) for n, k in enumerate(MAPS)}
    vol["brain"] = (vol["brain"] >= 0.5).astype(np.float32)
    return Anatomy(affine=affine, mni=mni_centre.reshape(3, *shape).astype(np.float32), to_mni=lin.astype(np.float64),
                   **vol)


@lru_cache(maxsize=1)
def _template_tensor() -> torch.Tensor:
    tmpl = load_template()
    return torch.from_numpy(np.stack([tmpl[k] for k in MAPS]))[None]


def _sample(stack: torch.Tensor, tv: np.ndarray) -> torch.Tensor:
    """Trilinear sampling of the (1, C, I, J, K) template at voxel coordinates ``tv`` (3, N); zero outside."""
    size = torch.tensor(stack.shape[2:], dtype=torch.float32)[:, None]
    norm = 2.0 * torch.from_numpy(tv) / (size - 1.0) - 1.0
    grid = norm.flip(0).T.reshape(1, 1, 1, -1, 3)  # grid_sample wants (x, y, z) = (K, J, I)
    out = torch.nn.functional.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(stack.shape[1], -1)


def _in_ellipsoid(mni: np.ndarray, centre: tuple, radii: tuple) -> np.ndarray:
    c = np.asarray(centre, np.float32)[:, None, None, None]
    r = np.asarray(radii, np.float32)[:, None, None, None]
    return (((mni - c) / r) ** 2).sum(0) <= 1.0


def nucleus(anat: Anatomy, name: str) -> np.ndarray:
    """Boolean mask of a deep nucleus (both hemispheres) from :data:`NUCLEI`, computed once per subject."""
    if name not in anat._nuclei:
        centre, radii = NUCLEI[name]
        right = (-centre[0], centre[1], centre[2])
        anat._nuclei[name] = _in_ellipsoid(anat.mni, centre, radii) | _in_ellipsoid(anat.mni, right, radii)
    return anat._nuclei[name]


def region_masks(anat: Anatomy) -> dict[str, np.ndarray]:
    """Boolean masks of the regions where the simulator places objects.

    Returns:
        ``basal_ganglia`` (putamen, pallidum, caudate, internal capsule), ``thalamus``, ``pallidum``,
        ``centrum_semiovale`` (deep white matter above the ventricles), ``lobar`` (cortico-subcortical junction of
        the cerebrum, at least 6 mm inside the brain surface so bloomed CMBs are not cut by the brain mask),
        ``inferior_edge`` (brain boundary near the skull base, where susceptibility artefacts arise).
    """
    x, y, z = anat.mni
    inside = anat.brain > 0
    cerebrum = inside & ~((y < -45) & (z < -8)) & (z > -35)
    bg = nucleus(anat, "putamen") | nucleus(anat, "pallidum") | nucleus(anat, "caudate")
    bg |= nucleus(anat, "internal_capsule")
    step = float(anat.spacing.min())
    eroded = ndi.binary_erosion(inside, iterations=max(1, int(round(3.0 / step))))
    edge = inside & ~eroded
    deep = ndi.binary_erosion(eroded, iterations=max(1, int(round(3.0 / step))))  # >= 6 mm from the surface
    return {
        "basal_ganglia": bg & inside & (anat.csf < 0.3),
        "thalamus": nucleus(anat, "thalamus") & inside & (anat.csf < 0.3),
        "pallidum": nucleus(anat, "pallidum") & inside,
        "centrum_semiovale": (anat.wm > 0.85) & (z > 20) & (z < 48) & (np.abs(x) > 8) & (np.abs(x) < 36),
        "lobar": cerebrum & deep & (anat.gm > 0.3) & (anat.gm < 0.7) & (anat.wm > 0.25) & (z > -20),
        "inferior_edge": edge & (z < -8) & ((y > 25) | (np.abs(x) > 35)) & (y > -40),
    }
