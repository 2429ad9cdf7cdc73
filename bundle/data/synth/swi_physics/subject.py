# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""One simulated SWI subject from scene to files, and cohorts of them."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from ...io import write_json, write_nifti
from ..anatomy import build_anatomy, region_masks
from ..cohort import progress_bar, reuse_cohort
from ..contrast import bias_field
from .physics import (
    MAX_VISIBLE_MM,
    MIN_VISIBLE_MM,
    VISIBLE_RATIO,
    Acquisition,
    box_integrate,
    complex_gaussian,
    dipole_field,
    draw_acquisition,
    gre_signal,
    local_dephasing,
    preset,
    vein_susceptibility,
)
from .scene import Frames, background_field, frames_of, grid_points, sample_head, tissue_maps
from .sources import (
    HeadSpace,
    calcifications,
    compete,
    microbleed_regions,
    place_cmbs,
    render_tubes,
    vein_segments,
    vein_tree,
)


def generate_swi_subject(index: int, out_dir: str | Path, seed: int = 0, preset_name: str = "train",
                         acquisition: Acquisition | None = None) -> dict:
    """Simulate one SWI subject under ``preset_name`` and write its files under ``out_dir/sub-XXXX/``.

    Returns the datalist entry (paths relative to ``out_dir``) with the acquisition's settings under ``swi``.
    """
    start = time.perf_counter()
    rng = np.random.default_rng([seed, index, 7])
    scene = _scene(acquisition or draw_acquisition(preset_name, rng), rng)
    s_with, s_without = _fine_signal(scene, rng)
    img, brain, ratio = _acquire(scene, s_with, s_without, rng)
    label, lesions, hidden = _microbleed_labels(scene, ratio, brain)
    entry = _write_subject(index, out_dir, scene, img, label, brain, lesions, hidden)
    entry["seconds"] = round(time.perf_counter() - start, 2)
    return entry


def _scene(acq: Acquisition, rng: np.random.Generator) -> dict:
    """Anatomy, pose, tissue maps, background field and the small sources (veins, microbleeds, calcifications)."""
    anat = build_anatomy((1.0, 1.0, 1.0), rng, rotation_deg=6.0, scale=0.08)
    regions = region_masks(anat)
    hs = HeadSpace(anat)
    frames = frames_of(anat, acq, rng)
    chi_t, pd_t, r2_t = tissue_maps(anat, acq, rng)
    bg, bg_affine = background_field(anat, chi_t, frames, rng)
    veins = vein_tree(hs, acq, rng)
    cmbs = place_cmbs(anat, hs, microbleed_regions(anat, regions), veins, acq, rng)
    calcs = calcifications(anat, hs, rng)
    return {"acq": acq, "anat": anat, "frames": frames, "tissue": (pd_t, r2_t), "bg": (bg, bg_affine),
            "veins": veins, "cmbs": cmbs, "calcs": calcs}


def _fine_maps(scene: dict) -> tuple[np.ndarray, ...]:
    """PD, R2*, brain and background field on the fine grid: sampled on a 1 mm grid of its orientation, upsampled."""
    frames, anat = scene["frames"], scene["anat"]
    fine = frames.fine_shape
    mid = tuple(n // 2 for n in fine)
    mid_world = grid_points(frames, mid, 2 * frames.pitch, frames.pitch / 2)
    mid_head = frames.world_to_head(mid_world.reshape(-1, 3)).reshape(*mid, 3)
    tissue = torch.from_numpy(np.stack([*scene["tissue"], anat.brain]))
    smooth = sample_head(tissue, anat.affine, mid_head)
    bg, bg_affine = scene["bg"]
    smooth = np.concatenate([smooth, sample_head(torch.from_numpy(bg[None]), bg_affine, mid_head)])
    up = torch.nn.functional.interpolate(torch.from_numpy(smooth)[None], size=fine, mode="trilinear")[0]
    return tuple(up.numpy())


def _fine_signal(scene: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Complex GRE signal on the fine grid with the microbleeds and without them (the same array when none)."""
    acq, frames = scene["acq"], scene["frames"]
    te = acq.te_ms / 1000.0
    pd, r2, brain_f, field_bg = _fine_maps(scene)
    fine, fine_aff = frames.fine_shape, frames.fine_affine()
    to_fine = np.linalg.inv(fine_aff)

    def vox(head_pts):
        w = frames.head_to_world(np.asarray(head_pts))
        return w @ to_fine[:3, :3].T + to_fine[:3, 3]

    occ_v = np.zeros(fine, np.float32)  # veins (calcifications are added as local dephasing below)
    scene["segments"] = vein_segments(scene["veins"])
    scene["chi_vein"] = vein_susceptibility(acq, rng)
    render_tubes(occ_v, [(vox(a), vox(b), r) for a, b, r in scene["segments"]], 1.0, frames.pitch)
    r2_blood = float(rng.uniform(40, 90)) * acq.b0 / 3.0
    r2 = r2 * (1 - occ_v) + r2_blood * occ_v
    pd = pd * (1 - occ_v) + 0.85 * occ_v
    b_world = np.array([0.0, 0.0, 1.0])
    field = field_bg + dipole_field(occ_v * scene["chi_vein"], frames.r_acq.T @ b_world, 16, frames.pitch)
    del field_bg
    r2_tissue = float(np.median(r2[brain_f > 0.5]))
    del brain_f
    s_without = gre_signal(pd, r2, field, acq.b0, te)
    del field, r2, pd
    dephase = {"fine": fine, "fine_aff": fine_aff, "frames": frames, "b_world": b_world, "acq": acq}
    _dephase(s_without, scene["calcs"], 0.1 / 0.75 * np.exp(-(100.0 - r2_tissue) * te), dephase)  # little water
    s_with = s_without.copy() if scene["cmbs"] else s_without
    r2_core = float(rng.uniform(250, 500)) * acq.b0 / 3.0
    _dephase(s_with, scene["cmbs"], 0.6 * np.exp(-(r2_core - r2_tissue) * te), dephase)
    return s_with, s_without


def _dephase(signal: np.ndarray, objects: list[dict], amp: float, d: dict) -> None:
    """Multiply ``signal`` in place by each object's local dephasing (amplitude ``amp`` of its core)."""
    frames, acq = d["frames"], d["acq"]
    for obj in objects:
        box, factor = local_dephasing(d["fine"], d["fine_aff"], frames.head_to_world(obj["centre"]), obj["radii"],
                                      frames.pose @ obj["rotation"], obj["chi"], d["b_world"], acq.b0,
                                      acq.te_ms / 1000.0, amp)
        if factor.size:
            signal[box] *= factor


def _acquire(scene: dict, s_with: np.ndarray, s_without: np.ndarray, rng: np.random.Generator) -> tuple:
    """Integrate over voxels, PSF, receive bias, noise: the int16 image, the brain mask and the noise-free
    magnitude ratio with / without microbleeds (None without microbleeds)."""
    acq, frames, anat = scene["acq"], scene["frames"], scene["anat"]
    acq_shape, sp = frames.acq_shape, frames.spacing
    s_with_a = box_integrate(s_with, frames.pitch, sp, acq_shape)
    s_without_a = box_integrate(s_without, frames.pitch, sp, acq_shape) if scene["cmbs"] else s_with_a
    sigma = acq.psf_fwhm_vox / 2.355
    s_with_a = complex_gaussian(s_with_a, sigma)
    s_without_a = complex_gaussian(s_without_a, sigma) if scene["cmbs"] else None
    acq_aff = frames.acq_affine()
    centres = np.stack(np.meshgrid(*[np.arange(n) for n in acq_shape], indexing="ij"), -1).reshape(-1, 3)
    head_c = frames.world_to_head(centres @ acq_aff[:3, :3].T + acq_aff[:3, 3])
    maps_acq = sample_head(torch.from_numpy(np.stack([anat.brain, anat.wm])), anat.affine, head_c)
    brain = (maps_acq[0].reshape(acq_shape) >= 0.5)
    wm = maps_acq[1].reshape(acq_shape)
    gain = float(rng.uniform(300, 1500))
    signal = s_with_a * bias_field(acq_shape, rng, acq.bias)
    ref = float(np.median(np.abs(signal[brain & (wm > 0.8)]))) if (brain & (wm > 0.8)).any() else 1.0
    noise = rng.standard_normal((2, *acq_shape), dtype=np.float32) * np.float32(ref / acq.snr)
    noisy = (signal + noise[0] + 1j * noise[1]).astype(np.complex64)
    mag = np.abs(noisy).astype(np.float32)
    if acq.contrast == "swi":
        lowpass = complex_gaussian(noisy, 4.0 / np.asarray(sp))  # the homodyne reference of the phase high-pass
        ph = np.angle(noisy * np.conj(lowpass))
        mask = np.where(ph < 0, np.clip(1.0 + ph / np.pi, 0.0, 1.0), 1.0)
        mag = mag * mask.astype(np.float32) ** acq.swi_power
    img = np.round(mag / ref * 0.6 * gain * brain).astype(np.int16)
    ratio = np.abs(s_with_a) / np.maximum(np.abs(s_without_a), 1e-6) if scene["cmbs"] else None
    return img, brain, ratio


def _visible_part(obj: dict, ratio: np.ndarray, brain: np.ndarray, frames: Frames) -> dict | None:
    """The voxels a microbleed darkens to under :data:`VISIBLE_RATIO`, connected to its darkest voxel near its
    centre, in a box around it (None when it darkens none inside the brain)."""
    sp, acq_shape = frames.spacing, frames.acq_shape
    inv = np.linalg.inv(frames.acq_affine())
    cw = frames.head_to_world(obj["centre"])
    cv = inv[:3, :3] @ cw + inv[:3, 3]
    reach = (obj["radii"].max() * 4.0 + 3.0) / sp
    lo = np.maximum(np.floor(cv - reach).astype(int), 0)
    hi = np.minimum(np.ceil(cv + reach).astype(int) + 1, acq_shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = ratio[box]
    if sub.size == 0 or sub.min() >= VISIBLE_RATIO or not brain[box].any():
        return None
    comps, _ = ndi.label(sub < VISIBLE_RATIO, structure=np.ones((3, 3, 3)))
    near = np.linalg.norm((np.indices(sub.shape).T + lo - cv).T * sp[:, None, None, None], axis=0)
    near_sub = np.where(near <= obj["radii"].max() + 1.5, sub, np.inf)
    if not np.isfinite(near_sub).any() or near_sub.min() >= VISIBLE_RATIO:
        return None
    ci = comps[np.unravel_index(np.argmin(near_sub), sub.shape)]
    own = (comps == ci) & brain[box]
    if not own.any():
        return None
    dist = np.linalg.norm((np.argwhere(own) + lo - cv) * sp, axis=1)
    return {"obj": obj, "world": cw, "box": box, "own": own, "dist": dist}


def _microbleed_labels(scene: dict, ratio: np.ndarray | None, brain: np.ndarray) -> tuple:
    """Label map (ids 1..n), lesion records and the microbleeds too faint (or too large) to count."""
    frames = scene["frames"]
    acq_shape, sp, acq_aff = frames.acq_shape, frames.spacing, frames.acq_affine()
    label = np.zeros(acq_shape, np.int16)
    records, hidden = [], []
    for obj in scene["cmbs"]:
        rec = _visible_part(obj, ratio, brain, frames)
        if rec is None:
            cw = frames.head_to_world(obj["centre"])
            hidden.append({"kind": "subvisible_cmb", "centre_mm": np.round(cw, 3).tolist()})
            continue
        records.append({**rec, "id": len(records) + 1})
    if scene["cmbs"]:
        label, records = compete(records, acq_shape, sp, hidden)
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
    return relabel[label], lesions, hidden


def _write_subject(index: int, out_dir, scene: dict, img, label, brain, lesions: list, hidden: list) -> dict:
    """Write the subject's image, label, mask, lesions and mimics; its datalist entry (paths relative to
    ``out_dir``)."""
    frames, acq, veins, calcs = scene["frames"], scene["acq"], scene["veins"], scene["calcs"]
    acq_aff = frames.acq_affine()
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
    return {
        "subject": sid,
        "image": [nii(img, "swi", np.int16)],
        "label": nii(label, "label", np.int16),
        "lesions": str(write_json(lesions, folder / f"{sid}_lesions.json").relative_to(out_dir)),
        "mask": nii(brain.astype(np.uint8), "brainmask", np.uint8),
        "mimics": str(write_json(mimics, folder / f"{sid}_mimics.json").relative_to(out_dir)),
        "count": len(lesions),
        "counts": {"cmb": len(lesions)},
        "spacing": [float(s) for s in frames.spacing],
        "snr": acq.snr,
        "swi": {**asdict(acq), "n_vein_segments": len(scene["segments"]), "vein_chi": round(scene["chi_vein"], 4),
                "n_calcifications": len(calcs)},
    }


def generate_swi_cohort(out_dir: str | Path, splits: dict[str, tuple[str, int]], seed: int = 0,
                        progress: bool = True) -> Path:
    """Simulate SWI subjects into ``out_dir`` and write ``out_dir/datalist.json``.

    ``splits``: datalist split -> (preset, number of subjects), e.g. ``{"training": ("train", 40),
    "validation": ("validation", 8)}``. Subjects are numbered across splits in that order (seed ``seed``).
    A folder holding a cohort made with the same settings (seed, splits, the presets' definitions, the labelling
    rule) is reused as it is; other settings raise.
    """
    out_dir = Path(out_dir)
    settings = {"task": "swi", "seed": int(seed), "splits": {k: [v[0], int(v[1])] for k, v in splits.items()},
                "min_visible_mm": MIN_VISIBLE_MM, "max_visible_mm": MAX_VISIBLE_MM,
                "presets": {v[0]: preset(v[0]) for v in splits.values()}}
    existing = reuse_cohort(out_dir, settings)
    if existing is not None:
        return existing
    datalist = {"name": "synthetic_swi_physics", "description": f"physics SWI simulator, seed {seed}",
                "modalities": ["swi"], "classes": ["cmb"], "simulator": settings,
                "training": [], "validation": [], "testing": []}
    jobs = [(split, name, i) for split, (name, n) in splits.items() for i in range(int(n))]
    for index, (split, name, _) in enumerate(progress_bar(jobs, progress, desc="simulating swi")):
        datalist[split].append(generate_swi_subject(index, out_dir, seed=seed, preset_name=name))
    return write_json(datalist, out_dir / "datalist.json")
