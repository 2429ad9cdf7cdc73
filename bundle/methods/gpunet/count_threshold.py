# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Count-matched thresholding of a heatmap (GP-Unet, Dubost et al. 2017; ``docs/gpunet.md``).

The threshold is chosen so that the number of blobs of ``map >= threshold`` equals the predicted count. Two kinds
of blob (``blobs``):

``components`` (the paper): connected components. Their number only grows when the threshold passes below a local
maximum (a new component appears there) and only shrinks at saddles (two merge), so the highest threshold giving
at least ``n`` components is found by scanning the local maxima's values from the top. Where that level gives more
than ``n`` (tied maxima appear together), the ``n`` components with the highest peaks are kept (equal peaks: the
one whose first voxel comes first in C order), so the result has exactly ``n`` components whenever some threshold
gives at least ``n``; otherwise (peaks merge before enough appear) the components of the highest level with the
most components are returned.

``basins`` (the bundle's default for GP-Unet, a departure documented in ``docs/gpunet.md``): the thresholded map
is also split at its saddles, so two lesions whose blobs touch stay two blobs. Each voxel belongs to the local
maximum that steepest ascent over its neighbours leads to. Equal values are ordered by C order, earlier counting
as higher (as in ``components``), so every ascent ends; a plateau's maxima are those of its voxels with no earlier
neighbour on it (one, its first voxel, for a box-shaped plateau). The blobs at a threshold are the basins of the
maxima at or above it, cut at the threshold. A blob is connected (a voxel's ascent path stays above the
threshold), and the number of blobs is the number of maxima at or above the threshold, so the threshold is the
``n``-th highest maximum: exactly ``n`` blobs whenever the map has ``n`` local maxima (otherwise all of them, cut
at the lowest maximum).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage as ndi

from ...metrics.objects import neighbourhood

__all__ = ["BLOBS", "count_matched_objects"]

BLOBS = ("components", "basins")


def count_matched_objects(
    score_map: np.ndarray,
    count: int,
    mask: np.ndarray | None = None,
    connectivity: int = 26,
    blobs: str = "components",
) -> tuple[np.ndarray, float]:
    """Instance map (int32, ids 1..n ordered by peak value, best first) of the ``count`` blobs, and the threshold
    used (``inf`` for a count of zero or an empty mask).

    Args:
        score_map: 3D map (heatmap, saliency, intensities).
        count: number of objects wanted (a non-negative integer; the caller rounds the network's estimate).
        mask: restrict the blobs to these voxels (e.g. the ROI).
        connectivity: 6, 18 or 26 (the neighbourhood of components, and of the ascent for basins).
        blobs: ``components`` (connected components, the paper) or ``basins`` (components split at saddles).
    """
    score = np.asarray(score_map, dtype=np.float64)
    if score.ndim != 3:
        raise ValueError(f"count_matched_objects needs a 3D map, got shape {score.shape}")
    if int(count) != count or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    structure = neighbourhood(connectivity)
    if blobs not in BLOBS:
        raise ValueError(f"blobs must be one of {BLOBS}, got {blobs!r}")
    n = int(count)
    inside = np.ones(score.shape, bool) if mask is None else np.asarray(mask).astype(bool)
    if inside.shape != score.shape:
        raise ValueError(f"mask shape {inside.shape} differs from the map's {score.shape}")
    out = np.zeros(score.shape, np.int32)
    if n == 0 or not inside.any() or not np.isfinite(score[inside]).any():
        return out, float("inf")
    box = ndi.find_objects(inside.astype(np.uint8))[0]
    sub = np.where(inside[box] & np.isfinite(score[box]), score[box], -np.inf)
    if blobs == "basins":
        out[box], threshold = _basins(sub, n, structure)
        return out, threshold
    peaks = (sub == ndi.maximum_filter(sub, footprint=structure, mode="constant", cval=-np.inf)) & np.isfinite(sub)
    levels = np.unique(sub[peaks])[::-1]
    best = (None, 0, float("inf"))
    for level in levels:
        lab, k = ndi.label(sub >= level, structure)
        if k > best[1]:
            best = (lab, k, float(level))
        if k >= n:
            break
    lab, k, threshold = best
    ids = np.arange(1, k + 1)
    peak = ndi.maximum(sub, lab, ids)
    order = sorted(range(k), key=lambda i: (-peak[i], i))[:n]
    relabel = np.zeros(k + 1, np.int32)
    relabel[np.asarray(order) + 1] = np.arange(1, len(order) + 1)
    out[box] = relabel[lab]
    return out, threshold


def _basins(sub: np.ndarray, n: int, structure: np.ndarray) -> tuple[np.ndarray, float]:
    """The ``n`` highest maxima's basins of ``sub`` (``-inf`` = outside), cut at the ``n``-th maximum's value."""
    valid = np.isfinite(sub)
    size = sub.size
    # strict order of the voxels: value, then C order (earlier = higher); outside voxels below everything
    rank = np.empty(size, np.int64)
    rank[np.lexsort((-np.arange(size), sub.ravel()))] = np.arange(size)
    rank = np.where(valid.ravel(), rank, -1).reshape(sub.shape)
    padded = np.pad(rank, 1, constant_values=-1)
    strides = np.array(padded.shape[1:][::-1]).cumprod()[::-1].tolist() + [1]  # C-order strides of `padded`
    index = np.arange(padded.size).reshape(padded.shape)[1:-1, 1:-1, 1:-1]
    best, parent = rank.copy(), index.copy()
    for off in itertools.product((-1, 0, 1), repeat=3):
        if off == (0, 0, 0) or not structure[tuple(o + 1 for o in off)]:
            continue
        window = tuple(slice(1 + o, padded.shape[i] - 1 + o) for i, o in enumerate(off))
        neighbour = padded[window]
        higher = neighbour > best
        best = np.where(higher, neighbour, best)
        parent = np.where(higher, index + int(np.dot(off, strides)), parent)
    is_max = valid & (parent == index)
    flat_parent = np.arange(padded.size)
    flat_parent[index.ravel()] = parent.ravel()
    while True:  # pointer jumping: every voxel's parent becomes the maximum its ascent ends at
        jumped = flat_parent[flat_parent]
        if np.array_equal(jumped, flat_parent):
            break
        flat_parent = jumped
    root = flat_parent[index]
    maxima = index[is_max]
    order = np.argsort(-rank[is_max], kind="stable")[:n]  # highest maxima first
    chosen = maxima[order]
    threshold = float(sub[is_max][order[-1]])
    ids = np.zeros(padded.size, np.int32)
    ids[chosen] = np.arange(1, len(chosen) + 1)
    objects = np.where(valid & (sub >= threshold), ids[root], 0).astype(np.int32)
    return objects, threshold
