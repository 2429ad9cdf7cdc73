# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""One-to-one matching of predicted to reference objects (pure functions).

Three rules, all greedy by descending prediction score, each prediction taking at most one reference and each
reference at most one prediction:

* ``overlap``: a prediction may hit a reference it covers by at least ``min_overlap`` (10 %) of the reference's
  voxels; among those still free it takes the one it overlaps most (the lesion-wise validation paper's rule: a
  prediction over two references counts once, the other is a miss); ties in score: lower index first.
* ``distance_mm``: a prediction may hit a free reference whose centre lies within ``max_distance`` mm; among
  predictions of equal score the closest pairs go first (5 mm by default; VALDO's official rule differs:
  ``docs/evaluation.md``).
* ``distance_voxels``: the same in voxel units (GP-Unet's rule, radius 3).

Each function returns ``match``: an int array of length N_pred holding the matched reference index or -1.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .objects import Objects

__all__ = ["RULES", "match_objects", "match_by_overlap", "match_by_distance"]

RULES = ("overlap", "distance_mm", "distance_voxels")


def _order(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-np.asarray(scores, float), kind="stable")


def match_by_overlap(ref: Objects, pred: Objects, min_overlap: float = 0.1) -> np.ndarray:
    """Overlap rule; both sets need instance maps on the same grid.

    Raises:
        ValueError: an instance map is missing or the grids differ.
    """
    if ref.instance is None or pred.instance is None:
        raise ValueError("the overlap rule needs instance maps for both reference and prediction")
    if ref.instance.shape != pred.instance.shape:
        raise ValueError(f"reference grid {ref.instance.shape} differs from prediction grid {pred.instance.shape}")
    match = np.full(len(pred), -1, np.int64)
    if not len(ref) or not len(pred):
        return match
    r, p = ref.instance.ravel(), pred.instance.ravel()
    both = np.flatnonzero((r > 0) & (p > 0))
    pairs, counts = np.unique(np.stack([p[both], r[both]]), axis=1, return_counts=True)
    frac = counts / ref.sizes[pairs[1] - 1]
    keep = frac >= min_overlap
    cand: dict[int, list[tuple[int, int]]] = {}
    for pi, ri, c in zip(pairs[0][keep] - 1, pairs[1][keep] - 1, counts[keep]):
        cand.setdefault(int(pi), []).append((int(c), int(ri)))
    taken = np.zeros(len(ref), bool)
    for pi in _order(pred.scores):
        options = sorted((o for o in cand.get(int(pi), []) if not taken[o[1]]), key=lambda o: (-o[0], o[1]))
        if options:
            match[pi] = options[0][1]
            taken[options[0][1]] = True
    return match


def match_by_distance(ref: Objects, pred: Objects, max_distance: float = 5.0, in_mm: bool = True) -> np.ndarray:
    """Centre-distance rule, in mm (using the reference spacing) or in voxels; the limit is inclusive.

    Pairs within the limit are taken in order of descending prediction score, then ascending distance (then
    reference, then prediction index), each when both are still free. Among predictions of equal score (a binary
    map's are all 1) the closest pairs are matched first, so the result does not follow the scan order; a
    higher-scored prediction is never displaced by a lower-scored one (one matching serves every threshold).
    """
    match = np.full(len(pred), -1, np.int64)
    if not len(ref) or not len(pred):
        return match
    scale = ref.spacing if in_mm else np.ones(3)
    near = cKDTree(ref.centres * scale).query_ball_point(pred.centres * scale, r=max_distance + 1e-9)
    pi = np.repeat(np.arange(len(pred)), [len(n) for n in near])
    if not len(pi):
        return match
    rj = np.fromiter((j for n in near for j in n), np.int64, len(pi))
    d = np.round(np.linalg.norm((ref.centres[rj] - pred.centres[pi]) * scale, axis=1), 9)  # float noise: no tie-break
    taken = np.zeros(len(ref), bool)
    for k in np.lexsort((pi, rj, d, -np.asarray(pred.scores, float)[pi])):
        if match[pi[k]] < 0 and not taken[rj[k]]:
            match[pi[k]] = rj[k]
            taken[rj[k]] = True
    return match


def match_objects(ref: Objects, pred: Objects, rule: str = "overlap", **kwargs) -> np.ndarray:
    """Dispatch to a rule by name (``overlap``, ``distance_mm``, ``distance_voxels``).

    Keyword args: ``min_overlap`` (overlap) or ``max_distance`` (distance rules; default 5 mm or 3 voxels).

    Raises:
        ValueError: unknown rule.
    """
    if rule == "overlap":
        return match_by_overlap(ref, pred, kwargs.get("min_overlap", 0.1))
    if rule == "distance_mm":
        return match_by_distance(ref, pred, kwargs.get("max_distance", 5.0), in_mm=True)
    if rule == "distance_voxels":
        return match_by_distance(ref, pred, kwargs.get("max_distance", 3.0), in_mm=False)
    raise ValueError(f"unknown matching rule {rule!r}; expected one of {RULES}")
