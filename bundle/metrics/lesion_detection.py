# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Lesion-wise detection figures: per scan (:func:`evaluate_scan`) and pooled over scans (:func:`summarise_scans`).

Definitions (``docs/evaluation.md``):

* TP: matched predictions; FP: unmatched predictions; FN: unmatched references (see :mod:`.lesion_matching`).
* sensitivity = TP / (TP + FN); FP per scan = FP / number of scans (scans without objects included);
  precision = TP / (TP + FP); false discovery rate = 1 - precision; F1 = 2 TP / (2 TP + FP + FN) pooled, and the
  median over scans of the per-scan F1 (a scan with no reference and no prediction has F1 = 1).
* count agreement between reference and predicted counts per scan: mean absolute difference, ICC(2,1) and
  ICC(3,1) (Shrout and Fleiss 1979, two "raters": reference and prediction).
* sensitivity by size: references binned by equivalent-sphere diameter (mm).
* per-class sensitivity: a reference of class c counts as found when its match carries class c (or carries no
  class, for class-agnostic detectors).
* undefined ratios (0 / 0) are NaN.
"""

from __future__ import annotations

import numpy as np

from .froc import cpm_score, froc_curve
from .lesion_matching import match_objects
from .objects import Objects

__all__ = ["DEFAULT_SIZE_BINS_MM", "evaluate_scan", "icc", "summarise_scans"]

DEFAULT_SIZE_BINS_MM = (0.0, 3.0, 5.0, 10.0, float("inf"))


def evaluate_scan(
    ref: Objects, pred: Objects, rule: str = "overlap", size_bins_mm=DEFAULT_SIZE_BINS_MM, **match_kwargs
) -> dict:
    """Lesion-wise result of one scan.

    Returns:
        dict with ``tp, fp, fn, n_ref, n_pred`` (ints), ``match`` (reference index per prediction or -1),
        ``scores`` and ``hits`` of the predictions (for FROC), ``size_tp``/``size_n`` per size bin, and
        ``class_tp``/``class_n`` per reference class.
    """
    match = match_objects(ref, pred, rule, **match_kwargs)
    hit = match >= 0
    found = np.zeros(len(ref), bool)
    found[match[hit]] = True
    edges = np.asarray(size_bins_mm, float)
    bins = np.clip(np.digitize(ref.diameters_mm, edges) - 1, 0, len(edges) - 2)
    class_ok = np.zeros(len(ref), bool)
    for pi in np.flatnonzero(hit):
        label = pred.labels[pi]
        class_ok[match[pi]] = label in ("", None) or label == ref.labels[match[pi]]
    classes = sorted({str(c) for c in ref.labels if c})
    return {
        "tp": int(hit.sum()),
        "fp": int(len(pred) - hit.sum()),
        "fn": int(len(ref) - hit.sum()),
        "n_ref": len(ref),
        "n_pred": len(pred),
        "match": match,
        "scores": np.asarray(pred.scores, float),
        "hits": hit,
        "size_tp": np.bincount(bins[found], minlength=len(edges) - 1),
        "size_n": np.bincount(bins, minlength=len(edges) - 1),
        "class_tp": {c: int((class_ok & (ref.labels == c)).sum()) for c in classes},
        "class_n": {c: int((ref.labels == c).sum()) for c in classes},
    }


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def icc(ratings: np.ndarray) -> tuple[float, float]:
    """ICC(2,1) (two-way random, absolute agreement) and ICC(3,1) (two-way mixed, consistency).

    Args:
        ratings: (n subjects, k raters), e.g. a column of reference counts and one of predicted counts.

    Returns:
        (ICC(2,1), ICC(3,1)) after Shrout and Fleiss (1979); NaN with fewer than 2 subjects or no variance.
    """
    x = np.asarray(ratings, float)
    n, k = x.shape
    if n < 2 or k < 2:
        return float("nan"), float("nan")
    grand = x.mean()
    ss_rows = k * ((x.mean(1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc, mse = ss_rows / (n - 1), ss_cols / (k - 1), ss_err / ((n - 1) * (k - 1))
    icc2 = _ratio(msr - mse, msr + (k - 1) * mse + k * (msc - mse) / n)
    icc3 = _ratio(msr - mse, msr + (k - 1) * mse)
    return icc2, icc3


def summarise_scans(results: list[dict], size_bins_mm=DEFAULT_SIZE_BINS_MM, froc_fps=None) -> dict:
    """Pooled figures over scans from :func:`evaluate_scan` results (see the module docstring)."""
    tp, fp, fn = (sum(r[k] for r in results) for k in ("tp", "fp", "fn"))
    n = len(results)
    n_ref = np.array([r["n_ref"] for r in results], float)
    n_pred = np.array([r["n_pred"] for r in results], float)
    f1_scan = [
        _ratio(2 * r["tp"], 2 * r["tp"] + r["fp"] + r["fn"]) if r["n_ref"] + r["n_pred"] else 1.0 for r in results
    ]
    precision = _ratio(tp, tp + fp)
    icc2, icc3 = icc(np.stack([n_ref, n_pred], 1)) if n else (float("nan"), float("nan"))
    size_tp = np.sum([r["size_tp"] for r in results], 0) if results else np.zeros(len(size_bins_mm) - 1)
    size_n = np.sum([r["size_n"] for r in results], 0) if results else np.zeros(len(size_bins_mm) - 1)
    classes = sorted({c for r in results for c in r["class_n"]})
    scores = np.concatenate([r["scores"] for r in results]) if results else np.zeros(0)
    hits = np.concatenate([r["hits"] for r in results]) if results else np.zeros(0, bool)
    fps, sens, _ = froc_curve(scores, hits, int(tp + fn), n)
    edges = list(size_bins_mm)
    return {
        "scans": n,
        "tp": int(tp),
        "fp": int(fp),
        "fn": int(fn),
        "sensitivity": _ratio(tp, tp + fn),
        "fp_per_scan": _ratio(fp, n),
        "precision": precision,
        "false_discovery_rate": 1.0 - precision if precision == precision else float("nan"),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "f1_median_per_scan": float(np.median(f1_scan)) if n else float("nan"),
        "count_abs_diff_mean": float(np.abs(n_ref - n_pred).mean()) if n else float("nan"),
        "icc_2_1": icc2,
        "icc_3_1": icc3,
        "sensitivity_by_size_mm": {
            f"{edges[i]:g}-{edges[i + 1]:g}": _ratio(size_tp[i], size_n[i]) for i in range(len(edges) - 1)
        },
        "references_by_size_mm": {f"{edges[i]:g}-{edges[i + 1]:g}": int(size_n[i]) for i in range(len(edges) - 1)},
        "sensitivity_by_class": {
            c: _ratio(sum(r["class_tp"].get(c, 0) for r in results), sum(r["class_n"].get(c, 0) for r in results))
            for c in classes
        },
        "cpm": cpm_score(fps, sens, froc_fps) if froc_fps is not None else cpm_score(fps, sens),
        "froc": {"fp_per_scan": fps.tolist(), "sensitivity": sens.tolist()},
    }
