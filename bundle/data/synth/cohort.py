# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Generate synthetic subjects and cohorts: NIfTI volumes, instance label maps, per-object JSON and a datalist."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..io import write_json, write_nifti
from .anatomy import build_anatomy, region_masks
from .contrast import MODALITIES, TISSUE, acquire, paint_objects, texture_field, tissue_image
from .head import HEAD_LEVELS, head_fractions, head_image
from .objects import ObjectSampler, SimObject
from .raters import CHOICES, rate
from .shapes import Tube, render
from .tasks import TASKS

__all__ = ["TASKS", "generate_subject", "generate_cohort"]


def _draw_objects(task: str, sampler: ObjectSampler, rng: np.random.Generator) -> list[SimObject]:
    """Labelled objects first (so mimics keep clear of them), then mimics."""
    if task == "all":  # a few of each: microbleeds (and their mimics), then lacunes and EPVS
        for _ in range(rng.integers(3, 7)):
            sampler.cmb("lobar" if rng.random() < 0.6 else ("basal_ganglia" if rng.random() < 0.6 else "thalamus"))
        for _ in range(rng.integers(1, 3)):
            sampler.lacune(rng.choice(["basal_ganglia", "thalamus", "centrum_semiovale"], p=[0.4, 0.2, 0.4]))
        for _ in range(rng.integers(4, 11)):
            sampler.epvs("basal_ganglia")
        for _ in range(rng.integers(5, 16)):
            sampler.epvs("centrum_semiovale")
        for _ in range(rng.integers(4, 11)):
            sampler.vein("lobar")
        return sampler.placed
    if task == "cmb":
        weights = 1.0 / (np.arange(16) + 1.5)
        for _ in range(rng.choice(16, p=weights / weights.sum())):
            sampler.cmb("lobar" if rng.random() < 0.6 else ("basal_ganglia" if rng.random() < 0.6 else "thalamus"))
        for _ in range(rng.integers(4, 11)):
            sampler.vein("lobar")
        if rng.random() < 0.35:
            sampler.calcification()
            sampler.calcification()
        for _ in range(rng.integers(1, 4)):
            sampler.artefact()
    elif task == "epvs":
        for _ in range(rng.integers(0, 26)):
            sampler.epvs("basal_ganglia")
    else:
        for _ in range(rng.choice(5, p=[0.35, 0.3, 0.2, 0.1, 0.05])):
            sampler.lacune(rng.choice(["basal_ganglia", "thalamus", "centrum_semiovale"], p=[0.4, 0.2, 0.4]))
        for _ in range(rng.integers(4, 21)):
            sampler.epvs("basal_ganglia")
        for _ in range(rng.integers(5, 31)):
            sampler.epvs("centrum_semiovale")
    return sampler.placed


def _label_map(objects: list[SimObject], affine: np.ndarray, shape: tuple[int, ...]):
    """Instance map (voxels covered >= 50 %; the best-covered voxel at least) and the objects that got voxels."""
    label = np.zeros(shape, np.int16)
    best = np.zeros(shape, np.float32)
    kept = []
    for obj in (o for o in objects if o.labelled):
        box, frac = render(obj.shape, affine, shape)
        if frac.size == 0 or frac.max() <= 0:
            continue
        take = (frac >= 0.5) & (frac > best[box])
        if not take.any():
            take = frac == frac.max()
        kept.append(obj)
        label[box][take] = len(kept)
        best[box][take] = frac[take]
    counts = np.bincount(label.ravel(), minlength=len(kept) + 1)
    return label, [(o, int(counts[i + 1])) for i, o in enumerate(kept)]


def _record(idx: int, obj: SimObject, n_vox: int, affine: np.ndarray, rng: np.random.Generator) -> dict:
    inv = np.linalg.inv(affine)
    centre = obj.shape.centre
    rec = {
        "id": idx,
        "class": obj.kind,
        "centre_mm": np.round(centre, 3).tolist(),
        "centre_voxel": np.round(inv[:3, :3] @ centre + inv[:3, 3], 3).tolist(),
        "region": obj.region,
        "n_voxels": n_vox,
        "volume_mm3": round(obj.shape.volume_mm3, 3),
    }
    if isinstance(obj.shape, Tube):
        rec["diameter_mm"] = round(2.0 * obj.shape.radius, 3)
        rec["length_mm"] = round(obj.shape.length_mm + 2.0 * obj.shape.radius, 3)
    else:
        rec["diameter_mm"] = round(2.0 * float(obj.shape.radii.max()), 3)
    if obj.kind == "lacune":
        rec["rim_mm"] = round(float((obj.rim.radii - obj.shape.radii).max()), 3) if obj.rim is not None else 0.0
    if obj.kind in ("epvs", "lacune"):
        raters = rate(obj, n_vox, rng)
        rec["raters"] = raters
        rec["soft_label"] = {c: round(raters.count(c) / len(raters), 4) for c in CHOICES}
    else:
        rec["raters"] = [obj.kind] * 6
    return rec


def _mimic_record(obj: SimObject) -> dict:
    lo, hi = obj.shape.bounds()
    return {
        "kind": obj.kind,
        "centre_mm": np.round(obj.shape.centre, 3).tolist(),
        "extent_mm": np.round(hi - lo, 2).tolist(),
    }


def generate_subject(
    task: str,
    index: int,
    out_dir: str | Path,
    seed: int = 0,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    modalities: tuple[str, ...] | None = None,
    snr: tuple[float, float] = (10.0, 40.0),
    bias: tuple[float, float] = (0.05, 0.3),
    head: bool = False,
) -> dict:
    """Simulate one subject and write its files under ``out_dir/sub-XXXX/``.

    Args:
        task: ``cmb`` (microbleeds + mimics, SWI) or ``epvs_lacune`` (EPVS + lacunes, T1/T2/FLAIR).
        index: subject number; subject ``index`` of a given ``seed`` is the same whatever the cohort size.
        out_dir: cohort folder; the entry's paths are relative to it.
        seed: cohort seed.
        spacing: voxel size in mm (i, j, k), e.g. ``(1, 1, 1)`` or ``(0.5, 0.5, 2)``.
        modalities: images to write, in channel order (defaults to the task's).
        snr: range of the signal-to-noise ratio (white matter / Rician sigma), drawn per subject.
        bias: range of the bias field's half-amplitude (log scale), drawn per subject and modality.
        head: not skull-stripped: 20 mm more field of view on every side and the CSF, skull, scalp and neck of
            :mod:`bundle.data.synth.head` (their own random stream, ``[seed, index, 12]``).

    Returns:
        The datalist entry (paths relative to ``out_dir``).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
    modalities = tuple(modalities or TASKS[task]["modalities"])
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise ValueError(f"unknown modality {unknown}; expected some of {list(MODALITIES)}")
    rng = np.random.default_rng([seed, index])
    anat = build_anatomy(spacing, rng, margin_mm=20.0 if head else 0.0)
    regions = region_masks(anat)
    sampler = ObjectSampler(anat.affine, regions, rng)
    objects = _draw_objects(task, sampler, rng)
    texture = texture_field(anat.shape, rng)
    images = {m: tissue_image(anat, m, texture) for m in modalities}
    if head:
        frac = head_fractions(anat, np.random.default_rng([seed, index, 12]))
        for m in modalities:
            images[m] += head_image(frac, {**HEAD_LEVELS[m], "csf": TISSUE[m][2]})
    paint_objects(images, objects, anat.affine)
    label, kept = _label_map(objects, anat.affine, anat.shape)
    return _write_subject(task, index, out_dir, anat, regions, objects, images, label, kept, rng, snr, bias, head)


def _write_subject(task, index, out_dir, anat, regions, objects, images, label, kept, rng, snr, bias,
                   head=False) -> dict:  # fmt: skip
    """Acquire each modality (noise, bias, gain) and write the subject's files; its datalist entry."""
    modalities = tuple(images)
    subj_snr = float(rng.uniform(*snr))
    sid = f"sub-{index:04d}"
    folder = Path(out_dir) / sid

    def nii(array: np.ndarray, name: str, dtype) -> str:
        return str(write_nifti(array, anat.affine, folder / f"{sid}_{name}.nii.gz", dtype).relative_to(out_dir))

    def js(obj: list, name: str) -> str:
        return str(write_json(obj, folder / f"{sid}_{name}.json").relative_to(out_dir))

    entry = {"subject": sid, "image": []}
    for m in modalities:
        keep = np.ones_like(anat.brain) if head else anat.brain  # a head is not skull-stripped
        img = acquire(images[m], keep, rng, subj_snr, float(rng.uniform(*bias)), float(rng.uniform(300, 1500)))
        entry["image"].append(nii(np.round(img), m, np.int16))  # scanners write int16
    records = [_record(i + 1, o, n, anat.affine, rng) for i, (o, n) in enumerate(kept)]
    entry["label"] = nii(label, "label", np.int16)
    entry["lesions"] = js(records, "lesions")
    entry["mask"] = nii(anat.brain, "brainmask", np.uint8)
    entry["roi"] = nii(regions["basal_ganglia"] & (anat.brain > 0), "roi-basalganglia", np.uint8)
    entry["mimics"] = js([_mimic_record(o) for o in objects if not o.labelled], "mimics")
    entry["count"] = len(records)
    entry["counts"] = {c: sum(r["class"] == c for r in records) for c in TASKS[task]["classes"]}
    entry["spacing"] = [float(s) for s in anat.spacing]
    entry["snr"] = round(subj_snr, 2)
    return entry


def split_names(n: int, fractions=(0.6, 0.2, 0.2)) -> list[str]:
    n_val = int(round(fractions[1] * n)) if n >= 3 else 0
    n_test = int(round(fractions[2] * n)) if n >= 3 else 0
    return ["training"] * (n - n_val - n_test) + ["validation"] * n_val + ["testing"] * n_test


def generate_cohort(
    task: str,
    n: int,
    out_dir: str | Path,
    seed: int = 0,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    modalities: tuple[str, ...] | None = None,
    progress: bool = True,
    overwrite: bool = False,
    head: bool = False,
) -> Path:
    """Simulate ``n`` subjects and write ``out_dir/datalist.json`` (60/20/20 training/validation/testing split;
    ``head``: not skull-stripped, :func:`generate_subject`).

    A folder that already holds a cohort made with the same settings is reused as it is; one made with other
    settings is left untouched unless ``overwrite``.

    Returns:
        Path of the datalist.

    Raises:
        FileExistsError: ``out_dir`` holds a cohort made with other settings and ``overwrite`` is false.
    """
    out_dir = Path(out_dir)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
    settings = {
        "task": task,
        "n": int(n),
        "seed": int(seed),
        "spacing": [float(s) for s in spacing],
        "modalities": list(modalities or TASKS[task]["modalities"]),
        **({"head": True} if head else {}),
    }
    existing = _made_with(out_dir, settings, overwrite)
    if existing is not None:
        return existing
    splits = split_names(n)
    datalist = {
        "name": f"synthetic_{task}",
        "description": f"brain_mri_eso_detection simulator, task {task}, seed {seed}",
        "modalities": settings["modalities"],
        "classes": list(TASKS[task]["classes"]),
        "simulator": settings,
        "training": [],
        "validation": [],
        "testing": [],
    }
    for i in progress_bar(range(n), progress, desc=f"simulating {task}"):
        start = time.perf_counter()
        entry = generate_subject(task, i, out_dir, seed=seed, spacing=spacing, modalities=modalities, head=head)
        entry["seconds"] = round(time.perf_counter() - start, 2)
        datalist[splits[i]].append(entry)
    return write_json(datalist, out_dir / "datalist.json")


def _made_with(out_dir: Path, settings: dict, overwrite: bool) -> Path | None:
    """``out_dir/datalist.json`` when it was made with ``settings`` (and not ``overwrite``), None when there is none
    or it is to be overwritten.

    Raises:
        FileExistsError: the folder holds a cohort made with other settings and ``overwrite`` is false.
    """
    existing = out_dir / "datalist.json"
    if not existing.is_file() or overwrite:
        return None
    try:
        previous = json.loads(existing.read_text()).get("simulator")
    except json.JSONDecodeError:
        previous = None
    if previous == settings:
        return existing
    raise FileExistsError(
        f"{out_dir} already holds a datalist.json made with other settings ({previous}); choose another output "
        "folder or pass overwrite=True (CLI: --overwrite)"
    )


def reuse_cohort(out_dir: Path, settings: dict) -> Path | None:
    """``out_dir/datalist.json`` when it was made with ``settings`` (compared as read back from JSON), None when
    there is none.

    Raises:
        FileExistsError: the folder holds a cohort made with other settings (the message names the differing keys).
    """
    existing = Path(out_dir) / "datalist.json"
    if not existing.is_file():
        return None
    settings = json.loads(json.dumps(settings))  # as read back (lists, string keys)
    previous = json.loads(existing.read_text()).get("simulator")
    if previous == settings:
        return existing
    differ = sorted(k for k in {*settings, *(previous or {})} if (previous or {}).get(k) != settings.get(k))
    raise FileExistsError(f"{out_dir} already holds a datalist.json made with other simulator settings "
                          f"(differing: {', '.join(differ)}); use another folder")


def progress_bar(it, enabled: bool, desc: str):
    if not enabled:
        return it
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency, but keep the simulator usable without it
        return it
    return tqdm(it, desc=desc, unit="subject")
