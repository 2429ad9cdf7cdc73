# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The small sources of one simulated SWI subject: the venous tree, microbleeds and calcifications, and the
labelling of overlapping microbleeds."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from ..anatomy import Anatomy
from ..shapes import random_rotation
from .physics import MAX_VISIBLE_MM, MIN_VISIBLE_MM, Acquisition
from .scene import ellipsoid_mni


# ---- veins ------------------------------------------------------------------------------------------------------
class HeadSpace:
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


def _walk(hs: HeadSpace, start, direction, length, step, wiggle, rng, stop) -> np.ndarray:
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


def vein_tree(hs: HeadSpace, acq: Acquisition, rng: np.random.Generator) -> list[dict]:
    """Venous polylines in the head frame: ``{"points": (M, 3) mm, "radius": mm, "kind": ...}``."""
    veins: list[dict] = []

    def add(pts, radius, kind):
        if len(pts) >= 2:
            veins.append({"points": np.asarray(pts, float), "radius": float(radius), "kind": kind})

    _medullary_veins(hs, acq, rng, add)
    _deep_veins(hs, rng, add)
    _surface_veins(hs, acq, rng, add)
    return veins


def _medullary_veins(hs: HeadSpace, acq: Acquisition, rng: np.random.Generator, add) -> None:
    """Medullary veins: from the ventricle walls radially through the white matter, with side branches."""
    anat = hs.anat

    def outside(p):
        b, wm, gm, csf = hs.sample(p[None])[:, 0]
        return b < 0.5 or (wm + gm) < 0.45

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


def _deep_veins(hs: HeadSpace, rng: np.random.Generator, add) -> None:
    """Deep veins (MNI key points, jittered): internal cerebral, thalamostriate, basal veins of Rosenthal, Galen."""
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


def _surface_veins(hs: HeadSpace, acq: Acquisition, rng: np.random.Generator, add) -> None:
    """Cortical and cerebellar veins: along the brain surface, upward (cortex) or around the cerebellum."""
    anat = hs.anat

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


def vein_segments(veins: list[dict]) -> list[tuple]:
    return [(a, b, v["radius"]) for v in veins for a, b in zip(v["points"][:-1], v["points"][1:])]


def render_tubes(out: np.ndarray, segs_vox: list[tuple], value: np.ndarray | float, pitch) -> None:
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
def microbleed_regions(anat: Anatomy, regions: dict) -> dict[str, np.ndarray]:
    x, y, z = anat.mni
    inside = anat.brain > 0
    deep_in = ndi.binary_erosion(inside, iterations=5)
    cerebellum = deep_in & (y < -45) & (z < -15) & (anat.gm + anat.wm > 0.7)
    brainstem = ellipsoid_mni(anat.mni, (0.0, -28.0, -28.0), (9.0, 11.0, 18.0)) & inside & (anat.wm + anat.gm > 0.7)
    return {
        "lobar": regions["lobar"],
        "deep": (regions["basal_ganglia"] | regions["thalamus"]),
        "infratentorial": cerebellum | brainstem,
    }


def place_cmbs(anat, hs, cmb_regions, veins, acq, rng) -> list[dict]:
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


def calcifications(anat, hs, rng) -> list[dict]:
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


def compete(records: list[dict], shape, spacing, hidden: list) -> tuple[np.ndarray, list[dict]]:
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
