# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Count-matched thresholding of a heatmap (GP-Unet, Dubost et al. 2017; ``docs/gpunet.md``).

The threshold is chosen so that the number of connected components of ``map >= threshold`` equals the predicted
count. The number of components only grows when the threshold passes below a local maximum (a new component
appears there) and only shrinks at saddles (two merge), so the highest threshold giving at least ``n`` components
is found by scanning the local maxima's values from the top. Where that level gives more than ``n`` (tied maxima
appear together), the ``n`` components with the highest peaks are kept (equal peaks: the one whose first voxel
comes first in C order), so the result has exactly ``n`` components whenever some threshold gives at least ``n``;
otherwise (peaks merge before enough appear) the components of the highest level with the most components are
returned.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["count_matched_objects"]


def count_matched_objects(
    score_map: np.ndarray, count: int, mask: np.ndarray | None = None, connectivity: int = 26
) -> tuple[np.ndarray, float]:
    """Instance map (int32, ids 1..n ordered by peak value, best first) of the ``count`` components, and the
    threshold used (``inf`` for a count of zero or an empty mask).

    Args:
        score_map: 3D map (heatmap, saliency, intensities).
        count: number of objects wanted (a non-negative integer; the caller rounds the network's estimate).
        mask: restrict the components to these voxels (e.g. the ROI).
        connectivity: 6, 18 or 26.
    """
    score = np.asarray(score_map, dtype=np.float64)
    if score.ndim != 3:
        raise ValueError(f"count_matched_objects needs a 3D map, got shape {score.shape}")
    if int(count) != count or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    if connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    n = int(count)
    inside = np.ones(score.shape, bool) if mask is None else np.asarray(mask).astype(bool)
    if inside.shape != score.shape:
        raise ValueError(f"mask shape {inside.shape} differs from the map's {score.shape}")
    out = np.zeros(score.shape, np.int32)
    if n == 0 or not inside.any() or not np.isfinite(score[inside]).any():
        return out, float("inf")
    box = ndi.find_objects(inside.astype(np.uint8))[0]
    sub = np.where(inside[box] & np.isfinite(score[box]), score[box], -np.inf)
    structure = ndi.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
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
