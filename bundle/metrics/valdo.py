# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The VALDO 2021 challenge's per-scan figures, reimplemented from a reading of its official evaluation code
(``WhereIsValdo/valdo-eval-2021``, ``evaluation_comparison/pairwise_measures.py`` at ``ee87c04``; no code copied:
that repository has no licence). ``docs/evaluation.md`` maps each step to the official code and lists where this
deliberately differs (ties, and the official code's crash when no EPVS prediction overlaps any reference).

* Reference: rounded to 0.1, lesion = non-zero; prediction: lesion = ``>= threshold`` (0.5), its values kept for
  the volume. Components at ``connectivity`` (26), labelled in scan order.
* ``microbleeds`` and ``lacunes`` (Tasks 2 and 3): centres of mass in voxels times the **prediction's** voxel size;
  each prediction picks, on its own, the nearest reference closer than ``thresh_assign`` mm (strict ``<``; equal
  distances: the lower reference label), or none (FP). Of several predictions on one reference, the closest is TP
  and the others FP; they are never moved to another reference.
* ``epvs`` (Task 1): each prediction picks the reference it overlaps most (equal overlaps: the lower label) and is
  TP when its IoU with it is above ``thresh_assign`` (strict ``>``) and the highest of that reference's predictions.
* Ties: the official code counts every prediction at the minimum distance (or maximum IoU) as TP, so one reference
  can have two TPs; here only the first in scan order is, unless ``official_ties`` (then TP may exceed the number of
  references, as there).
* F1 = 2 TP / (2 TP + FP + FN), FN = references no prediction was assigned to (whatever its category: an EPVS
  reference overlapped only by a low-IoU prediction is not an FN, as in the official code); NaN when the reference
  is empty, 0 when only the prediction is. Weights of soft (0.5) references: each TP counts the reference's
  highest value, each FN too.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial.distance import cdist

from .objects import connected_components

__all__ = ["VALDO_TASKS", "valdo_scan"]

VALDO_TASKS = ("epvs", "microbleeds", "lacunes")


def _centres(cc: np.ndarray, n: int, zooms) -> np.ndarray:
    if not n:
        return np.zeros((0, 3))
    return np.asarray(ndi.center_of_mass(np.ones(cc.shape), cc, np.arange(1, n + 1)), float).reshape(n, 3) * zooms


def _by_distance(seg_cc, n_seg, ref_cc, n_ref, zooms, limit) -> list[list]:
    d = cdist(_centres(seg_cc, n_seg, zooms), _centres(ref_cc, n_ref, zooms))
    rows = []
    for s in range(n_seg):
        ok = np.flatnonzero(d[s] < limit)
        if len(ok):
            r = int(ok[np.argmin(d[s, ok])])  # argmin: the first (lowest label) of equal distances
            rows.append([s + 1, r + 1, float(d[s, r])])
        else:
            rows.append([s + 1, -1, float("inf")])
    return rows


def _by_overlap(seg_cc, n_seg, ref_cc, n_ref) -> list[list]:
    both = (seg_cc > 0) & (ref_cc > 0)
    pairs, counts = np.unique(np.stack([seg_cc[both], ref_cc[both]]), axis=1, return_counts=True)
    seg_size = np.bincount(seg_cc.ravel(), minlength=n_seg + 1)
    ref_size = np.bincount(ref_cc.ravel(), minlength=n_ref + 1)
    rows = []
    for s in range(1, n_seg + 1):
        mine = pairs[0] == s
        if not mine.any():
            rows.append([s, 0, -np.inf])  # overlaps no reference: FP
            continue
        k = np.flatnonzero(mine)[np.argmax(counts[mine])]  # most overlap; equal: the lower reference label
        r, inter = int(pairs[1][k]), int(counts[k])
        rows.append([s, r, inter / (seg_size[s] + ref_size[r] - inter)])
    return rows


def valdo_scan(
    ref: np.ndarray,
    pred: np.ndarray,
    zooms,
    task: str = "microbleeds",
    thresh_assign: float = 0.1,
    connectivity: int = 26,
    threshold: float = 0.5,
    official_ties: bool = False,
) -> dict:
    """One scan's VALDO figures (module docstring).

    Args:
        ref: reference mask (binary, or 0/0.5/1 for rater disagreement), 3D.
        pred: prediction (binary or probabilities), same shape.
        zooms: the prediction's voxel size (mm), as the official code reads it from the prediction's header.
        task: ``epvs``, ``microbleeds`` or ``lacunes``.
        thresh_assign: distance limit in mm (microbleeds, lacunes) or IoU limit (epvs); the official default is 0.1.

    Returns:
        ``tp, fp, fn, n_ref, n_pred, f1, mean_dice, count_abs_diff`` (``None`` for lacunes, which the official code does not
        report), ``abs_volume_diff`` (mm^3), and ``table``: one ``[prediction label, reference label (-1/0: none),
        distance or IoU, "TP"/"FP"]`` per predicted component.
    """
    if task not in VALDO_TASKS:
        raise ValueError(f"task must be one of {VALDO_TASKS}, got {task!r}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    ref = np.round(np.asarray(ref, float), 1)
    pred = np.asarray(pred, float)
    if ref.shape != pred.shape or ref.ndim != 3:
        raise ValueError(f"reference {ref.shape} and prediction {pred.shape} must be 3D of one shape")
    zooms = np.asarray(zooms, float).reshape(3)
    clipped = np.where(pred >= threshold, pred, 0.0)
    ref_cc, seg_cc = connected_components(ref != 0, connectivity), connected_components(pred >= threshold, connectivity)
    n_ref, n_seg = int(ref_cc.max()), int(seg_cc.max())
    ref_empty, seg_empty = ref.sum() == 0, clipped.sum() == 0
    if seg_empty:
        rows = []
    elif ref_empty:
        rows = [[s, -1, float("inf")] for s in range(1, n_seg + 1)]
    elif task == "epvs":
        rows = _by_overlap(seg_cc, n_seg, ref_cc, n_ref)
    else:
        rows = _by_distance(seg_cc, n_seg, ref_cc, n_ref, zooms, thresh_assign)
    _categorise(rows, task, thresh_assign, official_ties)
    peak = ndi.maximum(ref, ref_cc, np.arange(1, n_ref + 1)) if n_ref else np.zeros(0)  # each reference's weight
    assigned = {row[1] for row in rows}
    w_tp = sum(float(peak[row[1] - 1]) for row in rows if row[3] == "TP")
    w_fn = sum(float(peak[r]) for r in range(n_ref) if r + 1 not in assigned)
    tp, fp = sum(row[3] == "TP" for row in rows), sum(row[3] == "FP" for row in rows)
    f1 = float("nan") if ref_empty else 0.0 if seg_empty else 2 * w_tp / (w_fn + fp + 2 * w_tp)
    return {
        "mean_dice": _mean_dice(rows, ref, ref_cc, seg_cc, ref_empty, seg_empty),
        "tp": int(tp), "fp": int(fp), "fn": int(sum(r + 1 not in assigned for r in range(n_ref))),
        "n_ref": n_ref, "n_pred": n_seg, "f1": f1,
        "count_abs_diff": None if task == "lacunes" else abs(n_ref - n_seg),
        "abs_volume_diff": float(abs(clipped.sum() - ref.sum()) * np.prod(zooms)),
        "table": [[int(a), int(b), float(c), d] for a, b, c, d in rows],
    }  # fmt: skip


def _categorise(rows: list[list], task: str, thresh_assign: float, official_ties: bool) -> None:
    """Append "TP" or "FP" to each ``[prediction, reference, distance or IoU]`` row: per reference, the best of its
    predictions is TP (ties: all of them with ``official_ties``, as the official code; else the first)."""
    for row in rows:
        row.append("FP")
    groups: dict[int, list] = {}
    for row in rows:
        if row[1] > 0:
            groups.setdefault(row[1], []).append(row)
    for group in groups.values():
        if task == "epvs":
            best = max(row[2] for row in group)
            winners = [row for row in group if row[2] == best and row[2] > thresh_assign]
        else:
            best = min(row[2] for row in group)
            winners = [row for row in group if row[2] == best]
        for row in winners if official_ties else winners[:1]:
            row[3] = "TP"


def _mean_dice(rows, ref, ref_cc, seg_cc, ref_empty, seg_empty) -> float:
    """Mean over references with a TP of the Dice between the union of every prediction assigned to the reference
    (TP or not) and the reference's values; NaN for an empty reference, 0 for an empty prediction or no TP.
    One pass over the volume, whatever the number of lesions."""
    if ref_empty:
        return float("nan")
    if seg_empty:
        return 0.0
    tp_refs = sorted({row[1] for row in rows if row[3] == "TP"})
    if not tp_refs:
        return 0.0
    n_ref, n_seg = int(ref_cc.max()), int(seg_cc.max())
    lut = np.zeros(n_seg + 1, np.int64)  # prediction label -> the reference it was assigned to (0: none)
    for row in rows:
        lut[row[0]] = max(row[1], 0)
    owner = lut[seg_cc]
    inside = (ref_cc > 0) & (owner == ref_cc)
    overlap = np.bincount(ref_cc[inside], weights=ref[inside], minlength=n_ref + 1)  # sum of T x R per reference
    ref_sum = np.bincount(ref_cc.ravel(), weights=ref.ravel(), minlength=n_ref + 1)
    seg_sum = np.bincount(lut, weights=np.bincount(seg_cc.ravel(), minlength=n_seg + 1), minlength=n_ref + 1)
    return float(np.mean([2 * overlap[r] / (seg_sum[r] + ref_sum[r]) for r in tp_refs]))
