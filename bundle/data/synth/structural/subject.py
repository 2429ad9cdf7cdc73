# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""One simulated T1/T2/FLAIR subject from anatomy to files, and cohorts of them."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ...io import write_json, write_nifti
from ..anatomy import build_anatomy
from ..cohort import _label_map, _record, progress_bar, reuse_cohort
from ..contrast import acquire, layers, texture_field
from ..head import HEAD_RELAXATION, HEAD_TISSUES, head_fractions, head_image
from ..shapes import render
from .anatomy import atrophy, deep_grey, regions, wmh_fraction
from .objects import EPVS_REGIONS, LACUNE_REGIONS, StructuralSampler, place_objects
from .physics import MODALITIES, RELAXATION, TISSUES, Acquisition, draw_acquisition, preset, signal, tissue_signals

CLASSES = ("epvs", "lacune")
#: values of the ``regions`` map the simulator writes (the regions raters count EPVS and lacunes in)
REGION_CODES = {"basal_ganglia": 1, "centrum_semiovale": 2, "hippocampus": 3, "midbrain": 4, "thalamus": 5}
# the tissue each object layer is made of
HEAD_MARGIN_MM = 20.0  # field of view added on every side for a head (simulate(head=True))
_LAYER_TISSUE = {"epvs": "fluid", "lacune": "fluid", "lacune_rim": "gliosis", "flow_void": "flow_void"}


def simulate(index: int, seed: int = 0, preset_name: str = "train", acquisition: Acquisition | None = None,
             head: bool = False) -> dict:
    """Everything of one subject in memory: ``acq``, ``anat``, ``regions`` (the region masks), ``fractions``
    (tissue -> partial-volume map), ``objects``, ``label``, ``kept`` (labelled objects with their voxel counts),
    ``signals``, ``images`` (modality -> float32 image after acquisition) and ``records``. Subject ``index`` of
    ``seed`` uses ``numpy.random.default_rng([seed, index, 11])``, whatever the cohort. ``head``: the scan is not
    skull-stripped: 20 mm more field of view on every side, and the CSF, skull, scalp and neck of
    :mod:`bundle.data.synth.head` around the brain (their own random stream, ``[seed, index, 12]``)."""
    rng = np.random.default_rng([seed, index, 11])
    acq = acquisition or draw_acquisition(preset_name, rng)
    angles = rng.uniform(-1.0, 1.0, 3)
    angles *= acq.pose_deg / max(float(np.abs(angles).max()), 1e-9)
    anat = build_anatomy(acq.spacing, rng, warp_mm=acq.warp_mm, scale=0.1, angles_deg=tuple(angles),
                         margin_mm=HEAD_MARGIN_MM if head else 0.0)
    anat = atrophy(anat, acq.atrophy)
    wmh = wmh_fraction(anat, acq.wmh_load, rng)
    dgm = deep_grey(anat)
    fractions = {t: np.zeros(anat.shape, np.float32) for t in TISSUES}
    fractions.update(gm=anat.gm * (1 - dgm), deep_gm=anat.gm * dgm, wm=anat.wm * (1 - wmh), wmh=anat.wm * wmh,
                     csf=anat.csf.copy())
    masks = regions(anat)  # whole-volume erosions: once per subject
    sampler = StructuralSampler(anat.affine, masks, rng, margin_mm=1.5, to_mni=anat.to_mni)
    objects = place_objects(acq, sampler)
    _paint(fractions, objects, anat.affine)
    label, kept = _label_map(objects, anat.affine, anat.shape)
    signals = tissue_signals(acq, rng)
    texture = texture_field(anat.shape, rng)
    sigma = acq.psf_fwhm_vox / 2.355
    around = _head(anat, acq, signals, np.random.default_rng([seed, index, 12])) if head else None
    images = {}
    for m in MODALITIES:  # every modality is simulated, so the random stream does not depend on which are written
        img = sum(fractions[t] * np.float32(signals[m][t]) for t in TISSUES) * texture
        img = img + around[m] * texture if head else img
        img = ndi.gaussian_filter(img, sigma) if sigma > 0 else img
        keep = np.ones_like(anat.brain) if head else anat.brain  # a head is not skull-stripped
        images[m] = acquire(img, keep, rng, acq.snr[m], acq.bias[m], float(rng.uniform(300, 1500)))
    records = []
    for i, (obj, n) in enumerate(kept):
        rec = _record(i + 1, obj, n, anat.affine, rng)
        rec["site"] = getattr(obj, "site", obj.region)
        if obj.kind == "epvs":
            rec["branches"] = int(getattr(obj.shape, "n_branches", 0))
        records.append(rec)
    return {"acq": acq, "anat": anat, "regions": masks, "fractions": fractions, "objects": objects, "label": label,
            "kept": kept, "signals": signals, "images": images, "records": records, "wmh": wmh}


def _head(anat, acq: Acquisition, signals: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per modality, the noise-free head around the brain (:mod:`bundle.data.synth.head`): its tissues' signals
    from their relaxation times through the modality's sequence (white matter 1), or drawn in [0.05, 1.6] for a
    wide scan; CSF as the brain's."""
    frac = head_fractions(anat, rng)
    out = {}
    for m, seq in acq.sequences.items():
        wm = signal(seq, *RELAXATION[acq.b0]["wm"])
        levels = {t: float(rng.uniform(0.05, 1.6)) if acq.wide else signal(seq, *HEAD_RELAXATION[acq.b0][t]) / wm
                  for t in HEAD_TISSUES}  # fmt: skip
        levels["bone"] = min(levels["bone"], 0.05)
        out[m] = head_image(frac, {**levels, "csf": signals[m]["csf"]})
    return out


def _paint(fractions: dict[str, np.ndarray], objects: list, affine: np.ndarray) -> None:
    """Each object replaces the tissue of the voxels it covers by its own, in proportion to the covered share."""
    shape = fractions["gm"].shape
    for obj in objects:
        for name, geom in layers(obj):
            box, f = render(geom, affine, shape)
            if f.size == 0 or f.max() == 0:
                continue
            for t in TISSUES:
                fractions[t][box] *= 1.0 - f
            fractions[_LAYER_TISSUE[name]][box] += f


def counts_by_region(records: list[dict]) -> dict[str, dict[str, int]]:
    regions_of = {"epvs": EPVS_REGIONS, "lacune": LACUNE_REGIONS}
    return {c: {r: sum(x["class"] == c and x["region"] == r for x in records) for r in regions_of[c]}
            for c in CLASSES}


def generate_structural_subject(index: int, out_dir: str | Path, seed: int = 0, preset_name: str = "train",
                                modalities: tuple[str, ...] = MODALITIES,
                                acquisition: Acquisition | None = None, head: bool = False) -> dict:
    """Simulate one subject under ``preset_name`` and write ``modalities`` (any subset of t1, t2, flair, in that
    order; the subject is the same whichever) under ``out_dir/sub-XXXX/``; ``head``: not skull-stripped
    (:func:`simulate`). Returns its datalist entry (paths relative to ``out_dir``) with the acquisition under
    ``structural``."""
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of {list(MODALITIES)}, got {list(modalities)}")
    start = time.perf_counter()
    s = simulate(index, seed, preset_name, acquisition, head)
    anat, records = s["anat"], s["records"]
    sid = f"sub-{index:04d}"
    folder = Path(out_dir) / sid

    def nii(array, name, dtype):
        return str(write_nifti(array, anat.affine, folder / f"{sid}_{name}.nii.gz", dtype).relative_to(out_dir))

    mimics = [{"kind": o.kind, "region": o.region, "radius_mm": round(float(o.shape.radius), 3),
               "points_mm": np.round(o.shape.points, 2).tolist(), "centre_mm": np.round(o.shape.centre, 2).tolist()}
              for o in s["objects"] if not o.labelled]
    vox_ml = float(np.prod(anat.spacing)) / 1000.0
    masks = s["regions"]
    region_map = np.zeros(anat.shape, np.uint8)
    for name, code in sorted(REGION_CODES.items(), key=lambda kv: -kv[1]):  # lower codes win where masks overlap
        region_map[masks[name] & (anat.brain > 0)] = code
    entry = {
        "subject": sid,
        "image": [nii(np.clip(np.round(s["images"][m]), 0, 32767), m, np.int16) for m in modalities],
        "label": nii(s["label"], "label", np.int16),
        "lesions": str(write_json(records, folder / f"{sid}_lesions.json").relative_to(out_dir)),
        "mask": nii(anat.brain, "brainmask", np.uint8),
        "roi": nii(region_map == REGION_CODES["basal_ganglia"], "roi-basalganglia", np.uint8),  # code 1 wins overlaps
        "regions": nii(region_map, "regions", np.uint8),
        "mimics": str(write_json(mimics, folder / f"{sid}_mimics.json").relative_to(out_dir)),
        "count": len(records),
        "counts": {c: sum(r["class"] == c for r in records) for c in CLASSES},
        "counts_by_region": counts_by_region(records),
        "spacing": [float(x) for x in anat.spacing],
        "snr": round(float(np.mean(list(s["acq"].snr.values()))), 2),
        "structural": {**asdict(s["acq"]), "signals": s["signals"],
                       "csf_ml": round(float(s["fractions"]["csf"].sum()) * vox_ml, 1),
                       "wmh_ml": round(float(s["fractions"]["wmh"].sum()) * vox_ml, 2)},
    }
    entry["seconds"] = round(time.perf_counter() - start, 2)
    return entry


def generate_structural_cohort(out_dir: str | Path, splits: dict[str, tuple[str, int]], seed: int = 0,
                               modalities: tuple[str, ...] = MODALITIES, progress: bool = True,
                               head: bool = False) -> Path:
    """Simulate subjects into ``out_dir`` and write ``out_dir/datalist.json`` (``head``: not skull-stripped).

    ``splits``: datalist split -> (preset, number of subjects), e.g. ``{"training": ("train", 40), "testing":
    ("thick_slices", 8)}``; subjects are numbered across splits in that order. A folder holding a cohort made with
    the same settings is reused as it is; other settings raise.
    """
    out_dir = Path(out_dir)
    settings = {"task": "structural", "seed": int(seed), "modalities": list(modalities),
                "splits": {k: [v[0], int(v[1])] for k, v in splits.items()},
                "presets": {v[0]: preset(v[0]) for v in splits.values()}, **({"head": True} if head else {})}
    existing = reuse_cohort(out_dir, settings)
    if existing is not None:
        return existing
    datalist = {"name": "synthetic_structural", "description": f"structural T1/T2/FLAIR simulator, seed {seed}",
                "modalities": list(modalities), "classes": list(CLASSES), "simulator": settings,
                "training": [], "validation": [], "testing": []}
    jobs = [(split, name) for split, (name, n) in splits.items() for _ in range(int(n))]
    for index, (split, name) in enumerate(progress_bar(jobs, progress, desc="simulating structural")):
        datalist[split].append(generate_structural_subject(index, out_dir, seed, name, tuple(modalities), head=head))
    return write_json(datalist, out_dir / "datalist.json")
