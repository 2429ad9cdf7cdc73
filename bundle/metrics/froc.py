# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""FROC curve and the CPM score (mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4, 8 false positives per scan, LUNA16).

The curve is computed here rather than with ``monai.metrics.compute_froc_curve_data``, which skips the lowest
threshold (CAMELYON's convention) and so never reports the operating point that keeps every detection. The CPM
reuses ``monai.metrics.compute_froc_score`` (linear interpolation; beyond the curve's last point the last
sensitivity holds) with the LUNA16 operating points.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LUNA16_FPS", "froc_curve", "cpm_score"]

LUNA16_FPS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def froc_curve(scores, hits, num_references: int, num_scans: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Operating points of a detector over all thresholds.

    Args:
        scores: (M,) scores of all predictions of all scans.
        hits: (M,) whether each prediction is a true positive (matched one-to-one).
        num_references: reference objects in all scans.
        num_scans: scans evaluated (scans with no objects and no predictions included).

    Returns:
        ``(fp_per_scan, sensitivity, thresholds)``, increasing in FP; the first point is (0, 0) at threshold inf,
        the last keeps every prediction. Sensitivity is NaN without reference objects.
    """
    scores = np.asarray(scores, float)
    hits = np.asarray(hits, bool)
    order = np.argsort(-scores, kind="stable")
    s, h = scores[order], hits[order]
    last = np.r_[s[1:] != s[:-1], True] if len(s) else np.zeros(0, bool)  # a threshold keeps all equal scores
    cum_tp = np.cumsum(h)[last]
    cum_fp = np.cumsum(~h)[last]
    fps = np.r_[0.0, cum_fp / num_scans] if num_scans else np.full(len(cum_fp) + 1, np.nan)
    sens = np.r_[0.0, cum_tp / num_references] if num_references else np.full(len(cum_tp) + 1, np.nan)
    return fps, sens, np.r_[np.inf, s[last]]


def cpm_score(fp_per_scan: np.ndarray, sensitivity: np.ndarray, eval_fps=LUNA16_FPS) -> float:
    """Mean sensitivity at ``eval_fps`` false positives per scan (NaN if the curve is undefined)."""
    fp_per_scan, sensitivity = np.asarray(fp_per_scan, float), np.asarray(sensitivity, float)
    if not len(fp_per_scan) or np.isnan(fp_per_scan).any() or np.isnan(sensitivity).any():
        return float("nan")
    from monai.metrics import compute_froc_score  # deferred: MONAI takes seconds to import

    return float(compute_froc_score(fp_per_scan[::-1], sensitivity[::-1], tuple(eval_fps)))
