# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Figures of the multirater RCNN paper (Sudre et al., MIDL 2019) from a detections table; ``docs/rcnn.md``.

* **Inclusion**: reference objects of at least ``min_voxels`` voxels (the paper's 5). A detection matched to a
  smaller object is neither a hit nor a false positive (it is removed before counting).
* **Matching**: the project's centre-distance rule (one-to-one, best score first, ``max_distance_mm``).
* **Operating point**: the lowest score threshold whose FP per scan stays at or below ``max_fp`` (10); the
  sensitivity there, overall and by object size (voxels).
* **Lacune vs EPVS accuracy** on found objects whose raters agree: at least ``agreement`` of the raters (4 of 6)
  give the same answer and it is lacune or EPVS; the prediction's class is the likelier of ``p_lacune`` and
  ``p_epvs``.
* **Rater agreement vs box overlap**: for each found object, the intersection over union of its voxel bounding box
  and the predicted box (the cube of side ``diameter_mm`` around the detected centre), grouped by agreement (all
  raters agree / at least one says "nothing"), with the medians and a Mann-Whitney U test, as in the paper.
* **Rater heads**: per rater, the fraction of found objects whose ``rater<k>`` column equals that rater's answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy import stats

from ...data import load_datalist, load_volume
from ...data.io import write_json
from ...inference.detections import read_detections
from ...metrics import objects_from_instances, objects_from_table
from ...metrics.froc import froc_curve
from ...metrics.lesion_matching import match_by_distance

__all__ = ["SIZE_BINS_VOXELS", "box_iou", "multirater_figures"]

SIZE_BINS_VOXELS = (5, 10, 20, 50, np.inf)


def box_iou(lo_a, hi_a, lo_b, hi_b) -> float:
    """Intersection over union of two axis-aligned boxes given by inclusive-exclusive corners (voxels)."""
    lo_a, hi_a, lo_b, hi_b = (np.asarray(v, float) for v in (lo_a, hi_a, lo_b, hi_b))
    inter = np.prod(np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0, None))
    union = np.prod(hi_a - lo_a) + np.prod(hi_b - lo_b) - inter
    return float(inter / union) if union > 0 else 0.0


def _median(values) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def _majority(answers: list[str]) -> tuple[str, int]:
    values, counts = np.unique(answers, return_counts=True)
    return str(values[np.argmax(counts)]), int(counts.max())


def _scan(entry: dict, rows: list[dict], min_voxels: int, max_distance_mm: float) -> dict:
    label = load_volume(entry["label"], entry["subject"], "label")
    lab = label[0].numpy().astype(np.int64)
    spacing = np.asarray(label.pixdim, float)
    records = {int(r["id"]): r for r in json.loads(Path(entry["lesions"]).read_text())} if entry.get("lesions") else {}
    ref = objects_from_instances(lab, spacing)
    ids = np.unique(lab[lab > 0])
    slices = ndi.find_objects(lab)
    pred = objects_from_table(rows, spacing)
    match = match_by_distance(ref, pred, max_distance_mm)
    keep_ref = ref.sizes >= min_voxels
    drop = (match >= 0) & ~keep_ref[np.maximum(match, 0)] if len(ref) else np.zeros(len(pred), bool)
    found = []
    for p in np.flatnonzero((match >= 0) & ~drop):
        oid = int(ids[match[p]])
        rec, sl = records.get(oid, {}), slices[oid - 1]
        half = float(rows[p]["diameter_mm"]) / spacing / 2.0
        c = np.array([rows[p]["i"], rows[p]["j"], rows[p]["k"]], float)
        iou = box_iou([s.start for s in sl], [s.stop for s in sl], c - half + 0.5, c + half + 0.5)
        found.append(
            {"score": float(pred.scores[p]), "n_voxels": int(ref.sizes[match[p]]), "raters": rec.get("raters", []),
             "label": str(rows[p].get("label", "")), "iou": iou,
             "rater_heads": [rows[p].get(f"rater{k + 1}") for k in range(len(rec.get("raters", [])))]}
        )  # fmt: skip
    return {
        "scores": pred.scores[~drop],
        "hits": (match >= 0)[~drop],
        "ref_sizes": ref.sizes[keep_ref],
        "found": found,
    }


def _by_size(sizes_ref: np.ndarray, sizes_found: np.ndarray) -> list[dict]:
    """Sensitivity per bin of :data:`SIZE_BINS_VOXELS` (reference sizes, sizes of the found references)."""
    by_size = []
    for lo, hi in zip(SIZE_BINS_VOXELS[:-1], SIZE_BINS_VOXELS[1:]):
        n = int(((sizes_ref >= lo) & (sizes_ref < hi)).sum())
        tp = int(((sizes_found >= lo) & (sizes_found < hi)).sum())
        by_size.append({"voxels": f"{lo}-{hi}" if np.isfinite(hi) else f">={lo}", "n": n, "found": tp,
                        "sensitivity": tp / n if n else float("nan")})  # fmt: skip
    return by_size


def _class_accuracy(found: list[dict], agreement: int) -> tuple[list[bool], dict]:
    """Whether the predicted class matches the raters' answer, for the found objects where at least
    ``agreement`` raters agree on lacune or EPVS; and the counts per class."""
    agreed = []
    for f in found:
        if not f["raters"]:
            continue
        answer, count = _majority(f["raters"])
        if count >= agreement and answer in ("lacune", "epvs"):
            agreed.append((answer, f["label"]))
    per_class = {
        c: {"n": sum(a == c for a, _ in agreed), "correct": sum(a == c and p == c for a, p in agreed)}
        for c in ("lacune", "epvs")
    }
    return [a == p for a, p in agreed], per_class


def _head_accuracy(found: list[dict]) -> list[float]:
    """Per rater head, the fraction of found objects where the head gives that rater's answer."""
    heads = []
    for k in range(max((len(f["raters"]) for f in found), default=0)):
        pairs = [(f["raters"][k], f["rater_heads"][k]) for f in found if len(f["raters"]) > k]
        heads.append(sum(a == b for a, b in pairs) / len(pairs) if pairs else float("nan"))
    return heads


def multirater_figures(
    datalist: str,
    detections: str,
    split: str = "testing",
    output_dir: str | None = None,
    min_voxels: int = 5,
    max_fp: float = 10.0,
    max_distance_mm: float = 5.0,
    agreement: int = 4,
) -> dict:
    """Compute the paper's figures (module docstring); write ``output_dir/multirater.json`` if given."""
    entries = load_datalist(datalist, split)
    table = read_detections(detections)
    scans = [_scan(e, table.get(e["subject"], []), min_voxels, max_distance_mm) for e in entries]
    scores = np.concatenate([s["scores"] for s in scans]) if scans else np.zeros(0)
    hits = np.concatenate([s["hits"] for s in scans]) if scans else np.zeros(0, bool)
    n_ref = int(sum(len(s["ref_sizes"]) for s in scans))
    fps, sens, thr = froc_curve(scores, hits, n_ref, len(scans))
    ok = np.flatnonzero(fps <= max_fp)
    at = int(ok[-1]) if len(ok) else 0
    threshold = float(thr[at])
    found = [f for s in scans for f in s["found"] if f["score"] >= threshold]
    sizes_ref = np.concatenate([s["ref_sizes"] for s in scans]) if scans else np.zeros(0)
    correct, per_class = _class_accuracy(found, agreement)
    all_agree = [f["iou"] for f in found if f["raters"] and len(set(f["raters"])) == 1]
    uncertain = [f["iou"] for f in found if "nothing" in f["raters"]]
    test = stats.mannwhitneyu(all_agree, uncertain) if len(all_agree) and len(uncertain) else None
    out = {
        "settings": {"datalist": str(datalist), "detections": str(detections), "split": split,
                     "min_voxels": min_voxels, "max_fp": max_fp, "max_distance_mm": max_distance_mm,
                     "agreement": agreement},
        "scans": len(scans),
        "references": n_ref,
        "threshold": threshold,
        "sensitivity": float(sens[at]) if n_ref else float("nan"),
        "fp_per_scan": float(fps[at]),
        "sensitivity_by_size": _by_size(sizes_ref, np.array([f["n_voxels"] for f in found], float)),
        "class_accuracy": {"n": len(correct), "accuracy": float(np.mean(correct)) if correct else float("nan"),
                           "per_class": per_class},
        "overlap_vs_agreement": {
            "all_agree": {"n": len(all_agree), "median_iou": _median(all_agree)},
            "some_nothing": {"n": len(uncertain), "median_iou": _median(uncertain)},
            "mannwhitney_p": float(test.pvalue) if test is not None else float("nan"),
        },
        "rater_head_accuracy": _head_accuracy(found),
        "froc": {"fp_per_scan": fps.tolist(), "sensitivity": sens.tolist()},
    }  # fmt: skip
    if output_dir is not None:
        write_json(out, Path(output_dir) / "multirater.json")
    return out
