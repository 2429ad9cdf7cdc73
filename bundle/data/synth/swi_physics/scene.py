# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Geometry (head pose, acquisition and fine grids) and tissue (susceptibility, PD, R2*, background field) of one
simulated SWI subject."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi

from ..anatomy import Anatomy, euler_rotation, nucleus
from .physics import CHI_TISSUE, PHYSICS_MM, Acquisition, dipole_field


# ---- geometry ---------------------------------------------------------------------------------------------------
@dataclass
class Frames:
    """Head frame (anatomy, MNI-like mm) -> scanner (world RAS mm, B0 = +z) -> acquisition/fine grids."""

    pose: np.ndarray  # 3x3, head -> world rotation
    centre: np.ndarray  # head-frame point placed at the world origin
    r_acq: np.ndarray  # 3x3, columns = acquisition axes in world
    lo: np.ndarray  # acquisition-frame position (mm) of the fine grid's voxel-0 centre
    fine_shape: tuple
    acq_shape: tuple
    spacing: np.ndarray
    pitch: np.ndarray  # fine-grid voxel sizes: min(PHYSICS_MM, acquisition spacing) per axis

    def head_to_world(self, h: np.ndarray) -> np.ndarray:
        return (np.asarray(h) - self.centre) @ self.pose.T

    def world_to_head(self, w: np.ndarray) -> np.ndarray:
        return np.asarray(w) @ self.pose + self.centre

    def fine_affine(self) -> np.ndarray:
        a = np.eye(4)
        a[:3, :3] = self.r_acq * self.pitch
        a[:3, 3] = self.r_acq @ self.lo
        return a

    def acq_affine(self) -> np.ndarray:
        a = np.eye(4)
        a[:3, :3] = self.r_acq * self.spacing
        a[:3, 3] = self.r_acq @ (self.lo - self.pitch / 2 + self.spacing / 2)
        return a


def frames_of(anat: Anatomy, acq: Acquisition, rng: np.random.Generator) -> Frames:
    pitch, roll, yaw = np.deg2rad(acq.pose_deg)
    pose = euler_rotation(np.array([pitch, roll, yaw]))
    centre = np.array([0.0, -18.0, 10.0]) + rng.uniform(-3, 3, 3)
    r_acq = euler_rotation(np.array([np.deg2rad(acq.tilt_deg), *np.deg2rad(rng.uniform(-3, 3, 2))]))
    brain = np.argwhere(anat.brain > 0).astype(float)
    head = brain @ anat.affine[:3, :3].T + anat.affine[:3, 3]
    in_acq = ((head - centre) @ pose.T) @ r_acq  # acquisition-frame coordinates
    spacing = np.asarray(acq.spacing, float)
    lo_edge = in_acq.min(0) - 4.0
    extent = in_acq.max(0) + 4.0 - lo_edge
    acq_shape = tuple(int(np.ceil(e / s)) for e, s in zip(extent, spacing))
    pitch = np.minimum(PHYSICS_MM, spacing)
    fine_shape = tuple(int(2 * np.ceil(n * s / p / 2)) for n, s, p in zip(acq_shape, spacing, pitch))
    return Frames(pose, centre, r_acq, lo_edge + pitch / 2, fine_shape, acq_shape, spacing, pitch)


def sample_head(maps: torch.Tensor, affine: np.ndarray, head_pts: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Trilinear samples of (C, I, J, K) ``maps`` on a head-frame grid of ``affine`` at points (..., 3) in mm."""
    inv = np.linalg.inv(affine)
    v = head_pts.reshape(-1, 3) @ inv[:3, :3].T + inv[:3, 3]
    size = np.array(maps.shape[1:], float)
    norm = torch.from_numpy((2.0 * v / (size - 1.0) - 1.0).astype(np.float32))
    grid = norm.flip(-1).reshape(1, 1, 1, -1, 3)
    src = maps[None] - fill if fill else maps[None]
    out = torch.nn.functional.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return (out.reshape(maps.shape[0], *head_pts.shape[:-1]) + fill).numpy()


def grid_points(frames: Frames, shape, step, offset) -> np.ndarray:
    """World mm of a grid in the acquisition orientation: voxel n at acquisition-frame ``lo + offset + n step``."""
    step, offset = np.broadcast_to(step, (3,)), np.broadcast_to(offset, (3,))
    axes = [frames.lo[a] + offset[a] + step[a] * np.arange(shape[a]) for a in range(3)]
    g = np.stack(np.meshgrid(*axes, indexing="ij"), -1).astype(np.float32)
    return g @ frames.r_acq.T.astype(np.float32)


# ---- tissue ----------------------------------------------------------------------------------------------------
IRON = {  # nucleus -> (extra chi ppm, extra R2* at 3 T in 1/s)
    "pallidum": (0.16, 30.0),
    "putamen": (0.07, 12.0),
    "caudate": (0.05, 8.0),
}
IRON_MNI = {  # MNI ellipsoids (left side; mirrored) not in anatomy.NUCLEI
    "substantia_nigra": ((-10.0, -18.0, -12.0), (3.5, 6.0, 3.0), 0.12, 22.0),
    "red_nucleus": ((-5.0, -20.0, -8.0), (3.0, 3.5, 3.0), 0.09, 15.0),
    "dentate": ((-15.0, -57.0, -35.0), (6.0, 7.0, 5.0), 0.09, 15.0),
}
AIR_MNI = {  # air cavities (centre, semi-axes) in MNI mm; sized randomly per subject
    "sphenoid": ((0.0, 12.0, -32.0), (11.0, 11.0, 9.0)),
    "ethmoid": ((0.0, 40.0, -28.0), (9.0, 14.0, 9.0)),
    "frontal": ((0.0, 66.0, 8.0), (12.0, 5.0, 10.0)),
    "mastoid_left": ((-56.0, -26.0, -48.0), (7.0, 10.0, 7.0)),
    "mastoid_right": ((56.0, -26.0, -48.0), (7.0, 10.0, 7.0)),
}


def ellipsoid_mni(mni: np.ndarray, centre, radii) -> np.ndarray:
    c = np.asarray(centre, np.float32)[:, None, None, None]
    r = np.asarray(radii, np.float32)[:, None, None, None]
    return (((mni - c) / r) ** 2).sum(0) <= 1.0


def tissue_maps(anat: Anatomy, acq: Acquisition, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """chi (ppm rel. to tissue), PD and R2* (1/s) of the healthy brain on the 1 mm head grid; the iron mask."""
    j = lambda: float(rng.uniform(1 - acq.tissue_jitter, 1 + acq.tissue_jitter))  # noqa: E731
    scale_r2 = acq.b0 / 3.0
    iron = np.zeros(anat.shape, np.float32)
    r2_iron = np.zeros(anat.shape, np.float32)
    for name, (dchi, dr2) in IRON.items():
        m = ndi.gaussian_filter(nucleus(anat, name).astype(np.float32), 1.0)
        f = j()
        iron += m * dchi * f
        r2_iron += m * dr2 * f
    for (centre, radii, dchi, dr2) in IRON_MNI.values():
        m = ellipsoid_mni(anat.mni, centre, radii) | ellipsoid_mni(anat.mni, (-centre[0], *centre[1:]), radii)
        m = ndi.gaussian_filter(m.astype(np.float32), 1.0) * anat.brain
        f = j()
        iron += m * dchi * f
        r2_iron += m * dr2 * f
    chi = 0.02 * j() * anat.gm - 0.03 * j() * anat.wm + iron
    pd = 0.80 * j() * anat.gm + 0.68 * j() * anat.wm + 1.0 * anat.csf
    r2 = (17.0 * j() * anat.gm + 21.0 * j() * anat.wm + 3.0 * anat.csf + r2_iron) * scale_r2
    return chi.astype(np.float32), pd.astype(np.float32), r2.astype(np.float32)


def background_field(anat: Anatomy, chi_tissue: np.ndarray, frames: Frames, rng: np.random.Generator) -> tuple:
    """``dB/B0`` (ppm) of the head (tissue, iron, air cavities, outside air) on a 2 mm head grid, shimmed to second
    order over the brain. Returns (field, affine of that grid)."""
    step, p = 2, 12  # 2 mm grid, padded by 24 mm: the template's field of view ends a few mm from the brain
    brain = np.pad(anat.brain[::step, ::step, ::step] > 0, p)
    mni = np.pad(anat.mni[:, ::step, ::step, ::step], ((0, 0), (p, p), (p, p), (p, p)), mode="reflect",
                 reflect_type="odd")  # linear extrapolation of the (smooth) MNI coordinates
    tissue = np.pad(chi_tissue[::step, ::step, ::step], p)
    dist = ndi.distance_transform_edt(~brain, sampling=2.0)
    head = dist <= rng.uniform(9.0, 14.0)  # CSF, skull and scalp around the brain
    neck = (np.hypot(mni[0] / 55.0, (mni[1] + 20.0) / 60.0) <= 1.0) & (mni[2] < -40)
    head |= neck
    chi = np.where(head, CHI_TISSUE, 0.0).astype(np.float32)
    chi += np.where(brain, tissue, 0.0)
    for centre, radii in AIR_MNI.values():
        size = rng.uniform(0.7, 1.3)
        cav = ellipsoid_mni(mni, np.asarray(centre) + rng.normal(0, 2, 3), np.asarray(radii) * size) & (dist > 3.0)
        chi[cav] = 0.0
    b_head = frames.pose.T @ np.array([0.0, 0.0, 1.0])  # B0 in the head frame
    fld = dipole_field(chi, b_head, pad=32)
    # second-order shim over the brain (least squares on the brain voxels)
    idx = np.argwhere(brain).astype(np.float32)
    x = (idx - idx.mean(0)) / 50.0
    cols = [np.ones(len(x)), *x.T, x[:, 0] * x[:, 1], x[:, 0] * x[:, 2], x[:, 1] * x[:, 2], *(x.T**2)]
    a = np.stack(cols, 1)
    coef, *_ = np.linalg.lstsq(a, fld[brain], rcond=None)
    allx = (np.indices(brain.shape).reshape(3, -1).T.astype(np.float32) - idx.mean(0)) / 50.0
    cols = [np.ones(len(allx)), *allx.T, allx[:, 0] * allx[:, 1], allx[:, 0] * allx[:, 2], allx[:, 1] * allx[:, 2]]
    cols += list(allx.T**2)
    fld = fld - (np.stack(cols, 1) @ coef).reshape(brain.shape).astype(np.float32)
    affine = anat.affine.copy()
    affine[:3, :3] = anat.affine[:3, :3] * step
    affine[:3, 3] = anat.affine[:3, 3] - anat.affine[:3, :3] @ np.full(3, float(p * step))
    return fld.astype(np.float32), affine
