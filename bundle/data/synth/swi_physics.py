# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""SWI and T2*-weighted gradient echo simulated from physics (task ``swi``; ``docs/data.md``).

Per subject:

1. **Anatomy** in a head frame: the ICBM152 tissue maps under a random deformation (:func:`build_anatomy`), placed
   in the scanner with a random head pose; B0 is the scanner's z axis.
2. **Susceptibility** (ppm, relative to air): tissue at -9.4 with grey/white contrast, iron-rich deep nuclei
   (pallidum, putamen, caudate, substantia nigra, red nucleus, dentate), air in the sinuses and ear canals and
   outside the head (so air-tissue boundaries below the frontal and temporal lobes distort the field), a venous
   tree (medullary veins radial to the ventricles, deep veins, cortical and cerebellar veins; connected polylines
   with side branches), microbleeds (paramagnetic ellipsoids; lobar, deep, infratentorial, some beside veins) and
   calcifications (diamagnetic).
3. **Field** by dipole convolution, ``dB/B0 = IFFT(D(k) FFT(chi))`` with ``D = 1/3 - (k.b)^2/|k|^2`` (Lorentz
   sphere corrected, ``b`` the B0 direction in the grid's frame): the head on a 2 mm grid (then a second-order
   shim fitted over the brain is removed, as a scanner's shim does), the small sources on a fine 0.5 mm grid in
   the acquisition's orientation.
4. **Signal**: ``PD exp(-R2* TE) exp(-i gamma dB TE)`` on the fine grid, integrated (complex mean) over the box
   of each acquisition voxel, so blooming and drop-out come from intra-voxel dephasing; a point-spread function,
   a receive bias, complex Gaussian noise; the output is the magnitude (T2*-GRE) or SWI (magnitude times a
   high-pass-filtered negative-phase mask to a power), skull-stripped, int16, on an oblique affine.
5. **Labels**: a microbleed's label is the set of voxels whose noise-free magnitude it lowers to under half of
   the magnitude without it (its visible, bloomed extent), connected to its darkest voxel.

Everything varies per scan within a named :data:`PRESETS` setting; subject ``i`` of seed ``s`` uses
``numpy.random.default_rng([s, i, 7])`` and is identical whatever the cohort size.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import torch
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from ..io import write_json, write_nifti
from .anatomy import Anatomy, _rotation, build_anatomy, nucleus, region_masks
from .contrast import bias_field
from .shapes import random_rotation

__all__ = [
    "GAMMA",
    "PRESETS",
    "Acquisition",
    "dipole_field",
    "box_integrate",
    "gre_signal",
    "sphere_field",
    "sphere_phantom",
    "draw_acquisition",
    "generate_swi_subject",
    "generate_swi_cohort",
]

GAMMA = 2.0 * np.pi * 42.577e6  # rad / s / T (protons)
CHI_TISSUE = -9.4  # ppm, tissue relative to air
PHYSICS_MM = 0.5  # pitch of the fine grid on which the small sources and the signal are computed
# venous blood against tissue (ppm) at haematocrit 0.4 and oxygenation 0.6-0.75: every preset but ``train_wide``
# (kept out of ``_BASE`` so that the other presets' definitions, and the cohorts made from them, stay as they were)
CHI_VEIN_PPM = (0.3, 0.55)
# a microbleed's core diameter is 1 + 5 Beta(a, b) mm: every preset but ``train_small`` (kept out of ``_BASE`` too)
CMB_CORE_BETA = (1.2, 2.5)

# Settings: each a distribution of acquisitions. ``train``/``validation`` are the training distribution; every
# other preset moves one factor outside it (held out from training: docs/twostage.md).
_BASE = {
    "b0": (1.5, 3.0),
    "te_ms": {1.5: (20.0, 40.0), 3.0: (10.0, 25.0), 7.0: (8.0, 15.0)},
    "inplane": (0.5, 1.0),
    "slice": (1.0, 2.5),
    "pose_deg": (12.0, 6.0, 6.0),  # head pitch, roll, yaw (uniform +/-)
    "tilt_deg": 15.0,  # slab tilt about the left-right axis
    "vein_density": (0.5, 1.5),
    "n_cmb": (0, 20),
    "p_no_cmb": 0.15,
    "p_near_vein": 0.2,  # share of microbleeds placed beside a vein (the hardest to tell from it)
    "snr": (12.0, 40.0),
    "p_swi": 0.6,
}
PRESETS = {
    "train": {"p_near_vein": 0.4},  # wider than every test setting: twice the microbleeds beside veins
    # and veins of every oxygenation and haematocrit (0.25-1 ppm): the blooming of long TE and 7 T at usual ones
    "train_wide": {"p_near_vein": 0.4, "chi_vein_ppm": (0.25, 1.0)},
    # more of the hardest labelled microbleeds: 70 % magnitude scans (no phase mask darkening them) and smaller cores
    "train_small": {"p_near_vein": 0.4, "p_swi": 0.3, "cmb_core_beta": (1.0, 4.0)},
    "validation": {},
    "long_te": {"te_ms": {1.5: (45.0, 60.0), 3.0: (28.0, 40.0)}},
    "thick_slices": {"slice": (3.0, 3.0)},
    "fine_inplane": {"inplane": (0.35, 0.45), "slice": (1.5, 2.5)},
    "dense_veins": {"vein_density": (2.2, 3.0)},
    "oblique": {"pose_deg": (25.0, 12.0, 12.0), "tilt_deg": 25.0},
    "no_cmb": {"n_cmb": (0, 0), "p_no_cmb": 1.0},
    "high_load": {"n_cmb": (25, 30), "p_no_cmb": 0.0},
    "low_snr": {"snr": (6.0, 11.0)},
    "field_7t": {"b0": (7.0,)},
}
HELD_OUT = ("long_te", "thick_slices", "fine_inplane", "dense_veins", "oblique", "no_cmb", "high_load", "low_snr")


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown SWI preset {name!r}; known: {sorted(PRESETS)}")
    return {**_BASE, **PRESETS[name]}


@dataclass
class Acquisition:
    """One scan's acquisition and subject settings (all drawn by :func:`draw_acquisition`)."""

    preset: str
    b0: float
    te_ms: float
    spacing: tuple[float, float, float]
    contrast: str  # "swi" or "magnitude"
    swi_power: int
    snr: float
    bias: float
    psf_fwhm_vox: float
    pose_deg: tuple[float, float, float]
    tilt_deg: float
    vein_density: float
    n_cmb: int
    p_near_vein: float = 0.2
    chi_cmb_ppm: tuple[float, float] = (0.5, 3.0)
    chi_vein_ppm: tuple[float, float] = CHI_VEIN_PPM
    cmb_core_beta: tuple[float, float] = CMB_CORE_BETA
    tissue_jitter: float = 0.15


def draw_acquisition(name: str, rng: np.random.Generator) -> Acquisition:
    p = preset(name)
    b0 = float(rng.choice(p["b0"]))
    te = float(rng.uniform(*p["te_ms"][b0]))
    inplane = float(rng.uniform(*p["inplane"]))
    slice_mm = float(rng.uniform(*p["slice"]))
    lo, hi = p["n_cmb"]
    n_cmb = 0 if rng.random() < p["p_no_cmb"] else int(rng.integers(max(lo, 1) if hi else 0, hi + 1))
    return Acquisition(
        preset=name,
        b0=b0,
        te_ms=round(te, 2),
        spacing=(round(inplane, 3), round(inplane, 3), round(slice_mm, 3)),
        contrast="swi" if rng.random() < p["p_swi"] else "magnitude",
        swi_power=int(rng.integers(2, 5)),
        snr=round(float(rng.uniform(*p["snr"])), 2),
        bias=float(rng.uniform(0.05, 0.35)),
        psf_fwhm_vox=float(rng.uniform(0.6, 1.2)),
        pose_deg=tuple(float(rng.uniform(-a, a)) for a in p["pose_deg"]),
        tilt_deg=float(rng.uniform(-p["tilt_deg"], p["tilt_deg"])),
        vein_density=float(rng.uniform(*p["vein_density"])),
        n_cmb=n_cmb,
        p_near_vein=float(p["p_near_vein"]),
        chi_vein_ppm=tuple(float(c) for c in p.get("chi_vein_ppm", CHI_VEIN_PPM)),
        cmb_core_beta=tuple(float(c) for c in p.get("cmb_core_beta", CMB_CORE_BETA)),
    )


def vein_susceptibility(acq: Acquisition, rng: np.random.Generator) -> float:
    """The scan's venous susceptibility (ppm against tissue), uniform in ``acq.chi_vein_ppm``: one draw."""
    return float(rng.uniform(*acq.chi_vein_ppm))


# ---- physics ---------------------------------------------------------------------------------------------------
def dipole_field(chi: np.ndarray, b_dir, pad: int = 0, voxel=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Relative field ``dB / B0`` (same unit as ``chi``) of a susceptibility map on an isotropic grid.

    ``b_dir``: B0 direction in the grid's index frame (normalised here). ``pad`` voxels of zeros on each side
    keep the periodic FFT from wrapping fields around; ``voxel``: the grid's voxel sizes. The kernel is ``1/3 - (k.b)^2 / |k|^2`` with 0 at k = 0
    (Lorentz sphere): a uniform sphere has no field inside and the analytic dipole field outside.
    """
    b = np.asarray(b_dir, np.float64)
    b = b / np.linalg.norm(b)
    x = np.pad(chi.astype(np.float32), pad) if pad else chi.astype(np.float32)
    shape = x.shape
    k = np.meshgrid(
        np.fft.fftfreq(shape[0], float(voxel[0])).astype(np.float32),
        np.fft.fftfreq(shape[1], float(voxel[1])).astype(np.float32),
        np.fft.rfftfreq(shape[2], float(voxel[2])).astype(np.float32),
        indexing="ij",
        sparse=True,
    )
    kb = k[0] * np.float32(b[0]) + k[1] * np.float32(b[1]) + k[2] * np.float32(b[2])
    k2 = k[0] ** 2 + k[1] ** 2 + k[2] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = np.float32(1.0 / 3.0) - kb**2 / k2
    kernel[0, 0, 0] = 0.0
    spec = scipy.fft.rfftn(x, workers=-1)
    spec *= kernel
    out = scipy.fft.irfftn(spec, s=shape, workers=-1).astype(np.float32)
    if pad:
        out = out[pad:-pad, pad:-pad, pad:-pad]
    return out


def sphere_field(points: np.ndarray, centre, radius: float, chi: float, b_dir=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Analytic ``dB / B0`` of a uniform sphere (Lorentz corrected): 0 inside, ``chi/3 (a/r)^3 (3 cos^2 - 1)`` out."""
    b = np.asarray(b_dir, float) / np.linalg.norm(b_dir)
    d = np.asarray(points, float) - np.asarray(centre, float)
    r = np.linalg.norm(d, axis=-1)
    cos = np.divide(d @ b, r, out=np.zeros_like(r), where=r > 0)
    out = chi / 3.0 * (radius / np.maximum(r, 1e-9)) ** 3 * (3.0 * cos**2 - 1.0)
    return np.where(r <= radius, 0.0, out)


def box_integrate(f: np.ndarray, pitch, width, n_out) -> np.ndarray:
    """Mean of a piecewise-constant field over boxes: voxel ``j`` of the output covers ``[j w, (j+1) w)`` (per
    axis, in mm from the outer edge of input voxel 0), ``f`` sampled at ``pitch`` mm (one value or one per axis).
    Exact for any ratio."""
    out = f
    pitches = np.broadcast_to(np.asarray(pitch, float), (3,))
    for ax in range(3):
        w, n, pitch = float(width[ax]), int(n_out[ax]), float(pitches[ax])
        x = np.moveaxis(out, ax, 0)
        cum = np.concatenate([np.zeros((1, *x.shape[1:]), x.dtype), np.cumsum(x, axis=0, dtype=x.dtype)], 0)
        edges = np.arange(n + 1) * w / pitch  # in input-voxel units from the first boundary
        i0 = np.clip(np.floor(edges).astype(int), 0, x.shape[0] - 1)
        t = np.clip(edges - i0, 0.0, 1.0).astype(np.float32)
        shp = (-1,) + (1,) * (x.ndim - 1)
        c = cum[i0] * (1 - t).reshape(shp) + cum[np.minimum(i0 + 1, x.shape[0])] * t.reshape(shp)
        out = np.moveaxis((c[1:] - c[:-1]) / np.float32(w / pitch), 0, ax)
    return out


VISIBLE_RATIO = 0.5  # a voxel belongs to a microbleed's label when it lowers the magnitude under this fraction
MIN_VISIBLE_MM, MAX_VISIBLE_MM = 2.0, 10.0  # raters count microbleeds of 2-10 mm visible (equivalent) diameter


def complex_gaussian(z: np.ndarray, sigma_vox) -> np.ndarray:
    """Gaussian filter of a complex image (real and imaginary parts): the PSF, and SWI's homodyne low-pass."""
    return (ndi.gaussian_filter(z.real, sigma_vox) + 1j * ndi.gaussian_filter(z.imag, sigma_vox)).astype(np.complex64)


def gre_signal(pd, r2s, field_ppm, b0: float, te_s: float) -> np.ndarray:
    """Complex gradient-echo signal ``PD exp(-R2* TE) exp(-i gamma B0 field TE)`` (field in ppm of B0)."""
    phase = np.asarray(field_ppm, np.float32) * np.float32(-GAMMA * b0 * 1e-6 * te_s)
    return (np.asarray(pd, np.float32) * np.exp(-np.asarray(r2s, np.float32) * np.float32(te_s))) * np.exp(
        1j * phase
    ).astype(np.complex64)


def local_dephasing(shape, affine, centre, radii, rotation, chi_ppm: float, b_world, b0: float, te_s: float,
                    core_amplitude: float, n_sub: int = 4, near_mm: float = 3.0, max_reach_mm: float = 30.0):
    """Complex factor by which an ellipsoidal susceptibility source multiplies the signal of the fine voxels
    around it: ``exp(-i gamma B0 dB TE)`` outside the source (``dB`` the dipole field of the sphere of equal
    volume, exact outside a sphere) and ``core_amplitude`` (its own signal relative to the tissue's) inside,
    averaged over ``n_sub^3`` sub-samples per voxel within ``near_mm`` of its surface (the intra-voxel dephasing
    that makes a microbleed bloom, which a 0.5 mm field map cannot resolve) and taken at voxel centres farther out,
    up to where its phase falls under 0.05 rad (at most ``max_reach_mm``). Returns ``(box, factor)``."""
    a = float(np.prod(radii) ** (1.0 / 3.0))
    k = GAMMA * b0 * 1e-6 * te_s
    reach = min(a * max((k * abs(chi_ppm) * 2.0 / 3.0 / 0.05) ** (1.0 / 3.0), 1.0) + 1.0, max_reach_mm)
    inv = np.linalg.inv(affine)
    cv = inv[:3, :3] @ np.asarray(centre) + inv[:3, 3]
    pitch = np.linalg.norm(affine[:3, :3], axis=0)

    def box_of(r):
        lo = np.maximum(np.floor(cv - r / pitch).astype(int), 0)
        hi = np.minimum(np.ceil(cv + r / pitch).astype(int) + 1, shape)
        return lo, hi

    def values(lo, hi, n):
        off = (np.arange(n) + 0.5) / n - 0.5
        idx = [np.add.outer(np.arange(x, y), off).ravel() for x, y in zip(lo, hi)]
        pts = np.stack(np.meshgrid(*idx, indexing="ij"), -1) @ affine[:3, :3].T + affine[:3, 3] - np.asarray(centre)
        inside = (((pts @ np.asarray(rotation)) / np.asarray(radii)) ** 2).sum(-1) <= 1.0
        phase = (-k * sphere_field(pts, np.zeros(3), a, chi_ppm, b_world)).astype(np.float32)
        val = np.where(inside, np.complex64(core_amplitude), np.exp(1j * phase).astype(np.complex64))
        size = hi - lo
        return val.reshape(size[0], n, size[1], n, size[2], n).mean(axis=(1, 3, 5)).astype(np.complex64)

    lo, hi = box_of(max(reach, float(np.max(radii)) + near_mm))  # holds the near box below
    box = tuple(slice(int(x), int(y)) for x, y in zip(lo, hi))
    if np.any(hi <= lo):
        return box, np.zeros(0, np.complex64)
    factor = values(lo, hi, 1)
    nlo, nhi = box_of(float(np.max(radii)) + near_mm)
    if np.all(nhi > nlo):
        factor[tuple(slice(x - l0, y - l0) for x, y, l0 in zip(nlo, nhi, lo))] = values(nlo, nhi, n_sub)
    return box, factor


def sphere_phantom(core_diameter_mm: float, chi_ppm: float, b0: float, te_ms: float, spacing=(1.0, 1.0, 1.0),
                   b_dir=(0.0, 0.0, 1.0), fov_mm: float = 32.0) -> dict:
    """One microbleed (or calcification, ``chi_ppm`` < 0) in uniform tissue, through the simulator's physics:
    its dephasing (:func:`local_dephasing`), the signal, integration into voxels of ``spacing`` and the label rule
    (no PSF, no noise).

    Returns ``label_voxels``, ``volume_mm3`` and ``diameter_mm`` (equivalent sphere) of its visible extent, and
    ``field_ppm``, its field on the fine grid by dipole convolution (:func:`dipole_field`)."""
    n = int(np.ceil(fov_mm / PHYSICS_MM / 2)) * 2
    c = (np.arange(n) - (n - 1) / 2.0) * PHYSICS_MM
    g = np.stack(np.meshgrid(c, c, c, indexing="ij"), -1)
    occ = np.zeros((n, n, n), np.float32)
    sub = np.array([-0.375, -0.125, 0.125, 0.375]) * PHYSICS_MM
    for dx in sub:  # partial volume by 4 x 4 x 4 sub-samples
        for dy in sub:
            for dz in sub:
                occ += (np.linalg.norm(g + (dx, dy, dz), axis=-1) <= core_diameter_mm / 2).astype(np.float32)
    occ /= 64.0
    field = dipole_field(occ * chi_ppm, b_dir, pad=n // 2)
    te = te_ms / 1000.0
    r2 = 20.0 * b0 / 3.0
    affine = np.eye(4)
    affine[:3, :3] *= PHYSICS_MM
    affine[:3, 3] = c[0]
    radius = core_diameter_mm / 2.0
    amp = 0.6 * np.exp(-(400.0 - 20.0) * b0 / 3.0 * te)
    box, factor = local_dephasing(occ.shape, affine, np.zeros(3), np.full(3, radius), np.eye(3), chi_ppm, b_dir,
                                  b0, te, amp)
    without = gre_signal(np.full_like(occ, 0.75), np.full_like(occ, r2), 0.0, b0, te)
    with_ = without.copy()
    with_[box] *= factor
    sp = np.asarray(spacing, float)
    n_out = np.floor(n * PHYSICS_MM / sp).astype(int)
    ratio = np.abs(box_integrate(with_, PHYSICS_MM, sp, n_out)) / np.abs(box_integrate(without, PHYSICS_MM, sp, n_out))
    comps, _ = ndi.label(ratio < VISIBLE_RATIO, structure=np.ones((3, 3, 3)))
    lab = comps == comps[np.unravel_index(np.argmin(ratio), ratio.shape)]
    vol = float(lab.sum() * np.prod(sp))
    return {"label_voxels": int(lab.sum()), "volume_mm3": vol, "diameter_mm": float((6 * vol / np.pi) ** (1 / 3)),
            "field_ppm": field}


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


def _frames(anat: Anatomy, acq: Acquisition, rng: np.random.Generator) -> Frames:
    pitch, roll, yaw = np.deg2rad(acq.pose_deg)
    pose = _rotation(np.array([pitch, roll, yaw]))
    centre = np.array([0.0, -18.0, 10.0]) + rng.uniform(-3, 3, 3)
    r_acq = _rotation(np.array([np.deg2rad(acq.tilt_deg), *np.deg2rad(rng.uniform(-3, 3, 2))]))
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


def _sample_head(maps: torch.Tensor, affine: np.ndarray, head_pts: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Trilinear samples of (C, I, J, K) ``maps`` on a head-frame grid of ``affine`` at points (..., 3) in mm."""
    inv = np.linalg.inv(affine)
    v = head_pts.reshape(-1, 3) @ inv[:3, :3].T + inv[:3, 3]
    size = np.array(maps.shape[1:], float)
    norm = torch.from_numpy((2.0 * v / (size - 1.0) - 1.0).astype(np.float32))
    grid = norm.flip(-1).reshape(1, 1, 1, -1, 3)
    src = maps[None] - fill if fill else maps[None]
    out = torch.nn.functional.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return (out.reshape(maps.shape[0], *head_pts.shape[:-1]) + fill).numpy()


def _grid_points(frames: Frames, shape, step, offset) -> np.ndarray:
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


def _ellipsoid_mni(mni: np.ndarray, centre, radii) -> np.ndarray:
    c = np.asarray(centre, np.float32)[:, None, None, None]
    r = np.asarray(radii, np.float32)[:, None, None, None]
    return (((mni - c) / r) ** 2).sum(0) <= 1.0


def _tissue_maps(anat: Anatomy, acq: Acquisition, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
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
        m = _ellipsoid_mni(anat.mni, centre, radii) | _ellipsoid_mni(anat.mni, (-centre[0], *centre[1:]), radii)
        m = ndi.gaussian_filter(m.astype(np.float32), 1.0) * anat.brain
        f = j()
        iron += m * dchi * f
        r2_iron += m * dr2 * f
    chi = 0.02 * j() * anat.gm - 0.03 * j() * anat.wm + iron
    pd = 0.80 * j() * anat.gm + 0.68 * j() * anat.wm + 1.0 * anat.csf
    r2 = (17.0 * j() * anat.gm + 21.0 * j() * anat.wm + 3.0 * anat.csf + r2_iron) * scale_r2
    return chi.astype(np.float32), pd.astype(np.float32), r2.astype(np.float32)


def _background_field(anat: Anatomy, chi_tissue: np.ndarray, frames: Frames, rng: np.random.Generator) -> tuple:
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
        cav = _ellipsoid_mni(mni, np.asarray(centre) + rng.normal(0, 2, 3), np.asarray(radii) * size) & (dist > 3.0)
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


# ---- veins ------------------------------------------------------------------------------------------------------
class _HeadSpace:
    """Lookups on the 1 mm head grid: masks at mm points, MNI <-> head (nearest brain voxel)."""

    def __init__(self, anat: Anatomy):
        self.anat = anat
        self.inv = np.linalg.inv(anat.affine)
        self._stack = np.stack([anat.brain, anat.wm, anat.gm, anat.csf]).astype(np.float32)
        brain_idx = np.argwhere(anat.brain > 0)[::2]
        self._mni_tree = cKDTree(anat.mni[:, brain_idx[:, 0], brain_idx[:, 1], brain_idx[:, 2]].T)
        self._brain_mm = self.to_mm(brain_idx)
        surf = anat.brain > 0
        surf = surf & ~ndi.binary_erosion(surf, iterations=2)
        self.surface_mm = self.to_mm(np.argwhere(surf))
        self._surf_tree = cKDTree(self.surface_mm)

    def to_mm(self, ijk: np.ndarray) -> np.ndarray:
        return ijk @ self.anat.affine[:3, :3].T + self.anat.affine[:3, 3]

    def sample(self, pts: np.ndarray) -> np.ndarray:
        """(4, N) brain, wm, gm, csf at head points (N, 3) (nearest voxel; 0 outside the grid)."""
        v = np.round(np.asarray(pts, float).reshape(-1, 3) @ self.inv[:3, :3].T + self.inv[:3, 3]).astype(int)
        ok = np.all((v >= 0) & (v < np.array(self.anat.shape)), axis=1)
        out = np.zeros((4, len(v)), np.float32)
        vv = v[ok]
        out[:, ok] = self._stack[:, vv[:, 0], vv[:, 1], vv[:, 2]]
        return out

    def from_mni(self, pts: np.ndarray) -> np.ndarray:
        _, i = self._mni_tree.query(np.asarray(pts, float).reshape(-1, 3))
        return self._brain_mm[i]

    def onto_surface(self, p: np.ndarray, inward: float) -> np.ndarray:
        _, i = self._surf_tree.query(p)
        s = self.surface_mm[i]
        to_centre = np.array([0.0, -18.0, 10.0]) - s
        return s + inward * to_centre / max(np.linalg.norm(to_centre), 1e-6)


def _walk(hs: _HeadSpace, start, direction, length, step, wiggle, rng, stop) -> np.ndarray:
    pts = [np.asarray(start, float)]
    d = np.asarray(direction, float) / max(np.linalg.norm(direction), 1e-9)
    for _ in range(max(int(length / step), 1)):
        d = d + rng.normal(0, wiggle, 3)
        d /= np.linalg.norm(d)
        nxt = pts[-1] + step * d
        if stop(nxt):
            break
        pts.append(nxt)
    return np.stack(pts)


def _vein_tree(hs: _HeadSpace, acq: Acquisition, rng: np.random.Generator) -> list[dict]:
    """Venous polylines in the head frame: ``{"points": (M, 3) mm, "radius": mm, "kind": ...}``."""
    anat = hs.anat
    veins: list[dict] = []

    def add(pts, radius, kind):
        if len(pts) >= 2:
            veins.append({"points": np.asarray(pts, float), "radius": float(radius), "kind": kind})

    def outside(p):
        b, wm, gm, csf = hs.sample(p[None])[:, 0]
        return b < 0.5 or (wm + gm) < 0.45

    # medullary veins: from the ventricle walls radially through the white matter, with side branches
    x, y, z = anat.mni
    vent = (anat.csf > 0.6) & (np.abs(x) < 30) & (y > -45) & (y < 35) & (z > -5) & (z < 35) & (anat.brain > 0)
    peri = ndi.binary_dilation(vent, iterations=3) & ~vent & (anat.wm > 0.5)
    starts = np.argwhere(peri)
    n_med = int(acq.vein_density * rng.uniform(120, 200))
    for s in starts[rng.choice(len(starts), size=min(n_med, len(starts)), replace=False)] if len(starts) else []:
        p = hs.to_mm(s[None].astype(float))[0]
        hemi = np.sign(anat.mni[0][tuple(s)]) or 1.0
        axis_pt = hs.from_mni(np.array([[hemi * 10.0, anat.mni[1][tuple(s)], 12.0]]))[0]
        d = p - axis_pt + rng.normal(0, 3.0, 3)
        trunk = _walk(hs, p, d, rng.uniform(15, 45), 2.0, 0.12, rng, outside)
        r = rng.uniform(0.2, 0.45)
        add(trunk, r, "medullary")
        for _ in range(rng.poisson(0.8)):
            if len(trunk) < 3:
                break
            at = trunk[rng.integers(1, len(trunk) - 1)]
            bd = np.cross(trunk[-1] - trunk[0], rng.normal(size=3)) + 0.5 * (trunk[-1] - trunk[0])
            add(_walk(hs, at, bd, rng.uniform(5, 15), 1.5, 0.2, rng, outside), r * rng.uniform(0.5, 0.8), "medullary")

    # deep veins (MNI key points, jittered): internal cerebral, thalamostriate, basal veins of Rosenthal, Galen
    galen = np.array([0.0, -38.0, 6.0])
    for side in (-1.0, 1.0):
        icv = [(side * 2.5, 6.0, 14.0), (side * 3.0, -8.0, 16.0), (side * 2.5, -24.0, 12.0), tuple(galen)]
        tsv = [(side * 17.0, 10.0, 16.0), (side * 13.0, 2.0, 16.0), (side * 7.0, 4.0, 15.0), icv[0]]
        bvr = [(side * 22.0, 2.0, -12.0), (side * 24.0, -14.0, -8.0), (side * 18.0, -28.0, -3.0), tuple(galen)]
        for pts, (r0, r1), kind in ((icv, (0.9, 1.4), "deep"), (tsv, (0.5, 0.9), "deep"), (bvr, (0.7, 1.2), "deep")):
            mni = np.asarray(pts) + rng.normal(0, 1.5, (len(pts), 3))
            dense = np.concatenate([np.linspace(a, b, 4, endpoint=False) for a, b in zip(mni[:-1], mni[1:])] + [mni[-1:]])
            add(hs.from_mni(dense), rng.uniform(r0, r1), kind)
    add(hs.from_mni(np.array([galen, galen + (0.0, -8.0, 4.0), galen + (0.0, -16.0, 6.0)])), rng.uniform(1.5, 2.2), "deep")

    # cortical and cerebellar veins: along the brain surface, upward (cortex) or around the cerebellum
    def surface_walk(start, n_steps, step, inward, up):
        pts = [hs.onto_surface(start, inward)]
        d = rng.normal(size=3) + up
        for _ in range(n_steps):
            d = d / np.linalg.norm(d) + rng.normal(0, 0.25, 3) + 0.3 * up
            d /= np.linalg.norm(d)
            pts.append(hs.onto_surface(pts[-1] + step * d, inward))
            if np.linalg.norm(pts[-1] - pts[-2]) < 0.5 * step:
                break
        return pts

    surf = hs.surface_mm
    sidx = np.round((surf - anat.affine[:3, 3]) @ np.linalg.inv(anat.affine[:3, :3]).T).astype(int)
    smni = anat.mni[:, sidx[:, 0], sidx[:, 1], sidx[:, 2]]
    upper = np.flatnonzero(smni[2] > -5)
    cereb = np.flatnonzero((smni[1] < -50) & (smni[2] < -15))
    for _ in range(int(acq.vein_density * rng.uniform(18, 32))):
        start = surf[rng.choice(upper)]
        add(surface_walk(start, int(rng.integers(6, 20)), 3.0, rng.uniform(0.3, 1.5), np.array([0, 0, 1.0])),
            rng.uniform(0.4, 1.1), "cortical")
    for _ in range(int(acq.vein_density * rng.uniform(4, 10))) if len(cereb) else []:
        start = surf[rng.choice(cereb)]
        add(surface_walk(start, int(rng.integers(4, 10)), 3.0, rng.uniform(0.3, 1.5), rng.normal(size=3) * 0.3),
            rng.uniform(0.4, 0.9), "cerebellar")
    return veins


def _segments(veins: list[dict]) -> list[tuple]:
    return [(a, b, v["radius"]) for v in veins for a, b in zip(v["points"][:-1], v["points"][1:])]


def _render_tubes(out: np.ndarray, segs_vox: list[tuple], value: np.ndarray | float, pitch) -> None:
    """Max-composite partial-volume occupancy x ``value`` of capsule segments ``(a, b, radius_mm)`` (ends in voxel
    coordinates of ``out``, whose voxels are ``pitch`` mm) into ``out``.

    A tube thinner than a voxel is widened to half a voxel and its occupancy scaled by the area ratio, so the
    magnetic moment per unit length (what its field depends on) is kept."""
    shape = np.array(out.shape)
    pitch = np.broadcast_to(np.asarray(pitch, np.float32), (3,))
    width = float(pitch.mean())
    for n, (a, b, r) in enumerate(segs_vox):
        v = value[n] if np.ndim(value) else value
        r_eff = max(r, 0.5 * width)
        scale = (r / r_eff) ** 2
        reach = (r_eff + width) / pitch + 1
        lo = np.maximum(np.floor(np.minimum(a, b) - reach).astype(int), 0)
        hi = np.minimum(np.ceil(np.maximum(a, b) + reach + 1).astype(int), shape)
        if np.any(hi <= lo):
            continue
        g = np.stack(np.meshgrid(*[np.arange(l, h, dtype=np.float32) for l, h in zip(lo, hi)], indexing="ij"), -1)
        g *= pitch
        a_mm, b_mm = (a * pitch).astype(np.float32), (b * pitch).astype(np.float32)
        ab = b_mm - a_mm
        t = np.clip(((g - a_mm) @ ab) / max(float(ab @ ab), 1e-9), 0, 1)
        d = np.linalg.norm(g - (a_mm + t[..., None] * ab), axis=-1)
        occ = np.clip(0.5 + (r_eff - d) / width, 0.0, 1.0) * scale * v
        box = tuple(slice(l, h) for l, h in zip(lo, hi))
        np.maximum(out[box], occ, out=out[box])


# ---- the subject ------------------------------------------------------------------------------------------------
def _cmb_regions(anat: Anatomy, regions: dict) -> dict[str, np.ndarray]:
    x, y, z = anat.mni
    inside = anat.brain > 0
    deep_in = ndi.binary_erosion(inside, iterations=5)
    cerebellum = deep_in & (y < -45) & (z < -15) & (anat.gm + anat.wm > 0.7)
    brainstem = _ellipsoid_mni(anat.mni, (0.0, -28.0, -28.0), (9.0, 11.0, 18.0)) & inside & (anat.wm + anat.gm > 0.7)
    return {
        "lobar": regions["lobar"],
        "deep": (regions["basal_ganglia"] | regions["thalamus"]),
        "infratentorial": cerebellum | brainstem,
    }


def _place_cmbs(anat, hs, cmb_regions, veins, acq, rng) -> list[dict]:
    seg_pts = np.concatenate([np.linspace(a, b, 4) for v in veins for a, b in zip(v["points"][:-1], v["points"][1:])])
    seg_r = np.concatenate([np.full(4, v["radius"]) for v in veins for _ in v["points"][:-1]])
    tree = cKDTree(seg_pts)
    flat = {k: np.flatnonzero(v) for k, v in cmb_regions.items()}
    placed: list[dict] = []
    for _ in range(acq.n_cmb):
        region = rng.choice(["lobar", "deep", "infratentorial"], p=[0.5, 0.3, 0.2])
        if not len(flat[region]):
            region = "lobar"
        d_core = 1.0 + 5.0 * rng.beta(*acq.cmb_core_beta)
        radii = d_core / 2.0 * np.array([1.0, *rng.uniform(0.75, 1.0, 2)])
        chi = float(rng.uniform(*acq.chi_cmb_ppm))
        near_vein = rng.random() < acq.p_near_vein
        for _try in range(80):
            if near_vein and _try < 40:
                k = rng.integers(len(seg_pts))
                off = rng.normal(size=3)
                c = seg_pts[k] + off / np.linalg.norm(off) * (seg_r[k] + radii.max() + rng.uniform(0.8, 2.5))
                if hs.sample(c[None])[0, 0] < 0.5:
                    continue
            else:
                ijk = np.unravel_index(rng.choice(flat[region]), anat.shape)
                c = hs.to_mm(np.array(ijk, float)[None] + rng.uniform(-0.5, 0.5, 3))[0]
            dist, k = tree.query(c)
            if dist < seg_r[k] + radii.max() + 0.5:
                continue
            if any(np.linalg.norm(c - p["centre"]) < 2.6 * (radii.max() + p["radii"].max()) + 2.0 for p in placed):
                continue
            placed.append({"centre": c, "radii": radii, "rotation": random_rotation(rng), "chi": chi,
                           "region": region, "near_vein": bool(near_vein and _try < 40)})
            break
    return placed


def _calcifications(anat, hs, rng) -> list[dict]:
    out = []
    if rng.random() < 0.4:  # bilateral pallidal
        for side in (-1.0, 1.0):
            c = hs.from_mni(np.array([[side * 19.0, -4.0, -1.0]]) + rng.normal(0, 1.5, 3))[0]
            d = rng.uniform(2.0, 6.0)
            out.append({"centre": c, "radii": d / 2 * np.array([1.0, *rng.uniform(0.6, 0.9, 2)]),
                        "rotation": random_rotation(rng), "chi": -float(rng.uniform(0.3, 1.5)), "kind": "pallidal"})
    if rng.random() < 0.5:  # choroid plexus (atria of the lateral ventricles)
        for side in (-1.0, 1.0):
            c = hs.from_mni(np.array([[side * 28.0, -40.0, 12.0]]) + rng.normal(0, 2, 3))[0]
            d = rng.uniform(2.0, 5.0)
            out.append({"centre": c, "radii": d / 2 * np.array([1.0, *rng.uniform(0.6, 0.9, 2)]),
                        "rotation": random_rotation(rng), "chi": -float(rng.uniform(0.3, 1.2)), "kind": "choroid"})
    return out


def _compete(records: list[dict], shape, spacing, hidden: list) -> tuple[np.ndarray, list[dict]]:
    """Label map of the microbleeds ``records`` (each ``id``, ``box``, ``own`` (its visible voxels in the box),
    ``dist`` (their distances to its centre), ``world``): a voxel several darken goes to the nearest. Those visible
    outside the raters' 2-10 mm are left unlabelled, appended to ``hidden``, and the others compete again without
    them, so a neighbour keeps its whole extent. Returns the map and the records kept."""
    label = np.zeros(shape, np.int16)
    best = np.full(shape, np.inf, np.float32)
    while True:
        label[:], best[:] = 0, np.inf
        for rec in records:
            box, own, dist = rec["box"], rec["own"], rec["dist"]
            take = np.zeros_like(own)
            take[own] = dist < best[box][own]
            label[box][take] = rec["id"]
            best[box][take] = dist[take[own]]
        sizes = np.bincount(label.ravel(), minlength=max((r["id"] for r in records), default=0) + 1)
        out = []
        for rec in records:
            d = float((6.0 * sizes[rec["id"]] * np.prod(spacing) / np.pi) ** (1 / 3))
            if not MIN_VISIBLE_MM <= d <= MAX_VISIBLE_MM:
                out.append(rec["id"])
                hidden.append({"kind": "subvisible_cmb" if d < MIN_VISIBLE_MM else "cmb_over_10mm",
                               "centre_mm": np.round(rec["world"], 3).tolist(), "diameter_mm": round(d, 3)})
        if not out:
            return label, records
        records = [r for r in records if r["id"] not in out]


def generate_swi_subject(index: int, out_dir: str | Path, seed: int = 0, preset_name: str = "train",
                         acquisition: Acquisition | None = None) -> dict:
    """Simulate one SWI subject under ``preset_name`` and write its files under ``out_dir/sub-XXXX/``.

    Returns the datalist entry (paths relative to ``out_dir``) with the acquisition's settings under ``swi``.
    """
    start = time.perf_counter()
    rng = np.random.default_rng([seed, index, 7])
    acq = acquisition or draw_acquisition(preset_name, rng)
    te = acq.te_ms / 1000.0
    anat = build_anatomy((1.0, 1.0, 1.0), rng, rotation_deg=6.0, scale=0.08)
    regions = region_masks(anat)
    hs = _HeadSpace(anat)
    frames = _frames(anat, acq, rng)
    chi_t, pd_t, r2_t = _tissue_maps(anat, acq, rng)
    bg, bg_affine = _background_field(anat, chi_t, frames, rng)

    veins = _vein_tree(hs, acq, rng)
    cmbs = _place_cmbs(anat, hs, _cmb_regions(anat, regions), veins, acq, rng)
    calcs = _calcifications(anat, hs, rng)

    # fine grid: smooth maps sampled on a 1 mm grid of the same orientation, upsampled x2
    fine = frames.fine_shape
    mid = tuple(n // 2 for n in fine)
    mid_world = _grid_points(frames, mid, 2 * frames.pitch, frames.pitch / 2)
    mid_head = frames.world_to_head(mid_world.reshape(-1, 3)).reshape(*mid, 3)
    tissue = torch.from_numpy(np.stack([pd_t, r2_t, anat.brain]))
    smooth = _sample_head(tissue, anat.affine, mid_head)
    smooth = np.concatenate([smooth, _sample_head(torch.from_numpy(bg[None]), bg_affine, mid_head)])
    up = torch.nn.functional.interpolate(torch.from_numpy(smooth)[None], size=fine, mode="trilinear")[0].numpy()
    pd, r2, brain_f, field_bg = up
    del up, smooth, mid_world, mid_head

    # small sources on the fine grid (fine voxel units)
    to_fine = np.linalg.inv(frames.fine_affine())
    def vox(head_pts):  # noqa: E306
        w = frames.head_to_world(np.asarray(head_pts))
        return w @ to_fine[:3, :3].T + to_fine[:3, 3]

    chi_v = np.zeros(fine, np.float32)  # veins and calcifications
    occ_v = np.zeros(fine, np.float32)
    segs = _segments(veins)
    segs_vox = [(vox(a), vox(b), r) for a, b, r in segs]
    chi_vein = vein_susceptibility(acq, rng)
    _render_tubes(occ_v, segs_vox, 1.0, frames.pitch)
    chi_v += occ_v * chi_vein
    r2_blood = float(rng.uniform(40, 90)) * acq.b0 / 3.0
    r2 = r2 * (1 - occ_v) + r2_blood * occ_v
    pd = pd * (1 - occ_v) + 0.85 * occ_v
    fine_aff = frames.fine_affine()
    b_world = np.array([0.0, 0.0, 1.0])
    b_grid = frames.r_acq.T @ b_world
    field = field_bg + dipole_field(chi_v, b_grid, 16, frames.pitch)
    del chi_v, field_bg
    r2_tissue = float(np.median(r2[brain_f > 0.5]))
    del brain_f
    s_without = gre_signal(pd, r2, field, acq.b0, te)
    for obj in calcs:  # diamagnetic, little mobile water
        amp = 0.1 / 0.75 * np.exp(-(100.0 - r2_tissue) * te)
        box, factor = local_dephasing(fine, fine_aff, frames.head_to_world(obj["centre"]), obj["radii"],
                                      frames.pose @ obj["rotation"], obj["chi"], b_world, acq.b0, te, amp)
        if factor.size:
            s_without[box] *= factor
    s_with = s_without.copy() if cmbs else s_without
    r2_core = float(rng.uniform(250, 500)) * acq.b0 / 3.0
    for obj in cmbs:
        amp = 0.6 * np.exp(-(r2_core - r2_tissue) * te)
        box, factor = local_dephasing(fine, fine_aff, frames.head_to_world(obj["centre"]), obj["radii"],
                                      frames.pose @ obj["rotation"], obj["chi"], b_world, acq.b0, te, amp)
        if factor.size:
            s_with[box] *= factor
    del field, r2, pd

    # acquisition: integrate over voxels, PSF, receive bias, noise
    acq_shape, sp = frames.acq_shape, frames.spacing
    s_with_a = box_integrate(s_with, frames.pitch, sp, acq_shape)
    s_without_a = box_integrate(s_without, frames.pitch, sp, acq_shape) if cmbs else s_with_a
    del s_with, s_without
    sigma = acq.psf_fwhm_vox / 2.355
    s_with_a = complex_gaussian(s_with_a, sigma)
    s_without_a = complex_gaussian(s_without_a, sigma) if cmbs else None
    acq_aff = frames.acq_affine()
    centres = np.stack(np.meshgrid(*[np.arange(n) for n in acq_shape], indexing="ij"), -1).reshape(-1, 3)
    world = centres @ acq_aff[:3, :3].T + acq_aff[:3, 3]
    head_c = frames.world_to_head(world)
    maps_acq = _sample_head(torch.from_numpy(np.stack([anat.brain, anat.wm])), anat.affine, head_c)
    brain = (maps_acq[0].reshape(acq_shape) >= 0.5)
    wm = maps_acq[1].reshape(acq_shape)
    gain = float(rng.uniform(300, 1500))
    signal = s_with_a * bias_field(acq_shape, rng, acq.bias)
    ref = float(np.median(np.abs(signal[brain & (wm > 0.8)]))) if (brain & (wm > 0.8)).any() else 1.0
    noise_sd = ref / acq.snr
    noise = rng.standard_normal((2, *acq_shape), dtype=np.float32) * np.float32(noise_sd)
    noisy = (signal + noise[0] + 1j * noise[1]).astype(np.complex64)
    mag = np.abs(noisy).astype(np.float32)
    if acq.contrast == "swi":
        lowpass = complex_gaussian(noisy, 4.0 / np.asarray(sp))  # the homodyne reference of the phase high-pass
        ph = np.angle(noisy * np.conj(lowpass))
        mask = np.where(ph < 0, np.clip(1.0 + ph / np.pi, 0.0, 1.0), 1.0)
        mag = mag * mask.astype(np.float32) ** acq.swi_power
    img = np.round(mag / ref * 0.6 * gain * brain).astype(np.int16)

    # labels: voxels a microbleed darkens to under half of the magnitude without it, connected to its minimum
    label = np.zeros(acq_shape, np.int16)
    records, hidden = [], []
    if cmbs:
        ratio = np.abs(s_with_a) / np.maximum(np.abs(s_without_a), 1e-6)
        inv = np.linalg.inv(acq_aff)
        for obj in cmbs:
            cw = frames.head_to_world(obj["centre"])
            cv = inv[:3, :3] @ cw + inv[:3, 3]
            reach = (obj["radii"].max() * 4.0 + 3.0) / sp
            lo = np.maximum(np.floor(cv - reach).astype(int), 0)
            hi = np.minimum(np.ceil(cv + reach).astype(int) + 1, acq_shape)
            box = tuple(slice(a, b) for a, b in zip(lo, hi))
            sub = ratio[box]
            if sub.size == 0 or sub.min() >= VISIBLE_RATIO or not brain[box].any():
                hidden.append({"kind": "subvisible_cmb", "centre_mm": np.round(cw, 3).tolist()})
                continue
            comps, _ = ndi.label(sub < VISIBLE_RATIO, structure=np.ones((3, 3, 3)))
            near = np.linalg.norm((np.indices(sub.shape).T + lo - cv).T * sp[:, None, None, None], axis=0)
            near_sub = np.where(near <= obj["radii"].max() + 1.5, sub, np.inf)
            if not np.isfinite(near_sub).any() or near_sub.min() >= VISIBLE_RATIO:
                hidden.append({"kind": "subvisible_cmb", "centre_mm": np.round(cw, 3).tolist()})
                continue
            ci = comps[np.unravel_index(np.argmin(near_sub), sub.shape)]
            own = (comps == ci) & brain[box]
            if not own.any():
                hidden.append({"kind": "subvisible_cmb", "centre_mm": np.round(cw, 3).tolist()})
                continue
            dist = np.linalg.norm((np.argwhere(own) + lo - cv) * sp, axis=1)
            records.append({"obj": obj, "world": cw, "id": len(records) + 1, "box": box, "own": own, "dist": dist})
        label, records = _compete(records, acq_shape, sp, hidden)
    lesions = []
    for rec in records:
        vox_idx = np.argwhere(label == rec["id"])
        com = vox_idx.mean(0)
        vol = float(len(vox_idx) * np.prod(sp))
        obj = rec["obj"]
        lesions.append({
            "id": len(lesions) + 1, "old": rec["id"], "class": "cmb",
            "centre_mm": np.round(acq_aff[:3, :3] @ com + acq_aff[:3, 3], 3).tolist(),
            "centre_voxel": np.round(com, 3).tolist(), "region": obj["region"], "n_voxels": int(len(vox_idx)),
            "volume_mm3": round(vol, 3), "diameter_mm": round(float((6.0 * vol / np.pi) ** (1 / 3)), 3),
            "core_diameter_mm": round(float(2 * obj["radii"].max()), 3), "chi_ppm": round(obj["chi"], 3),
            "near_vein": obj["near_vein"], "raters": ["cmb"] * 6,
        })  # fmt: skip
    relabel = np.zeros(max((r["id"] for r in records), default=0) + 1, np.int16)
    for les in lesions:
        relabel[les.pop("old")] = les["id"]
    label = relabel[label]

    sid = f"sub-{index:04d}"
    folder = Path(out_dir) / sid

    def nii(array, name, dtype):
        return str(write_nifti(array, acq_aff, folder / f"{sid}_{name}.nii.gz", dtype).relative_to(out_dir))

    mimics = [{"kind": "vein", "vein_type": v["kind"], "radius_mm": round(v["radius"], 3),
               "points_mm": np.round(frames.head_to_world(v["points"]), 2).tolist(),
               "centre_mm": np.round(frames.head_to_world(v["points"].mean(0)), 2).tolist()} for v in veins]
    mimics += [{"kind": "calcification", "site": c["kind"], "chi_ppm": round(c["chi"], 3),
                "centre_mm": np.round(frames.head_to_world(c["centre"]), 2).tolist(),
                "extent_mm": np.round(2 * c["radii"], 2).tolist()} for c in calcs]
    mimics += hidden
    entry = {
        "subject": sid,
        "image": [nii(img, "swi", np.int16)],
        "label": nii(label, "label", np.int16),
        "lesions": str(write_json(lesions, folder / f"{sid}_lesions.json").relative_to(out_dir)),
        "mask": nii(brain.astype(np.uint8), "brainmask", np.uint8),
        "mimics": str(write_json(mimics, folder / f"{sid}_mimics.json").relative_to(out_dir)),
        "count": len(lesions),
        "counts": {"cmb": len(lesions)},
        "spacing": [float(s) for s in sp],
        "snr": acq.snr,
        "swi": {**asdict(acq), "n_vein_segments": len(segs), "vein_chi": round(chi_vein, 4),
                "n_calcifications": len(calcs)},
        "seconds": round(time.perf_counter() - start, 2),
    }
    return entry


def generate_swi_cohort(out_dir: str | Path, splits: dict[str, tuple[str, int]], seed: int = 0,
                        progress: bool = True) -> Path:
    """Simulate SWI subjects into ``out_dir`` and write ``out_dir/datalist.json``.

    ``splits``: datalist split -> (preset, number of subjects), e.g. ``{"training": ("train", 40),
    "validation": ("validation", 8)}``. Subjects are numbered across splits in that order (seed ``seed``).
    A folder holding a cohort made with the same settings (seed, splits, the presets' definitions, the labelling
    rule) is reused as it is; other settings raise.
    """
    import json

    from .cohort import _progress

    out_dir = Path(out_dir)
    settings = {"task": "swi", "seed": int(seed), "splits": {k: [v[0], int(v[1])] for k, v in splits.items()},
                "min_visible_mm": MIN_VISIBLE_MM, "max_visible_mm": MAX_VISIBLE_MM,
                "presets": {v[0]: preset(v[0]) for v in splits.values()}}
    settings = json.loads(json.dumps(settings))  # as read back (string keys): a cohort made otherwise is not reused
    existing = out_dir / "datalist.json"
    if existing.is_file():
        previous = json.loads(existing.read_text()).get("simulator")
        if previous == settings:
            return existing
        differ = sorted(k for k in {*settings, *(previous or {})} if (previous or {}).get(k) != settings.get(k))
        raise FileExistsError(f"{out_dir} already holds a datalist.json made with other simulator settings "
                              f"(differing: {', '.join(differ)}); use another folder")
    datalist = {"name": "synthetic_swi_physics", "description": f"physics SWI simulator, seed {seed}",
                "modalities": ["swi"], "classes": ["cmb"], "simulator": settings,
                "training": [], "validation": [], "testing": []}
    jobs = [(split, name, i) for split, (name, n) in splits.items() for i in range(int(n))]
    for index, (split, name, _) in enumerate(_progress(jobs, progress, desc="simulating swi")):
        datalist[split].append(generate_swi_subject(index, out_dir, seed=seed, preset_name=name))
    return write_json(datalist, out_dir / "datalist.json")
