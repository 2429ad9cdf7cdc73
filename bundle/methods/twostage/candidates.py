# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Candidates of a probability map: one per connected component, placed at its peak (two-stage CMB detector)."""

from __future__ import annotations

import numpy as np

from ...metrics.objects import Objects, connected_components, objects_from_instances

__all__ = ["candidates_from_map"]


def candidates_from_map(
    prob: np.ndarray, threshold: float = 0.2, connectivity: int = 26, spacing=(1.0, 1.0, 1.0)
) -> Objects:
    """Connected components of ``prob >= threshold``, each reduced to its highest voxel.

    Returns:
        :class:`bundle.metrics.Objects` whose centres are the peak voxels (ties: the first in scan order), scores
        the peak probabilities, sizes the component sizes, and ``instance`` the component map.
    """
    prob = np.asarray(prob, dtype=np.float32)
    inst = connected_components(prob >= threshold, connectivity)
    objs = objects_from_instances(inst, spacing, prob=prob)
    if not len(objs):
        return objs
    flat = objs.instance.reshape(-1)
    fg = np.flatnonzero(flat)
    order = np.lexsort((fg, -prob.reshape(-1)[fg], flat[fg]))  # by component, then descending probability
    first = np.r_[True, np.diff(flat[fg][order]) != 0]
    peaks = fg[order][first]
    objs.centres = np.stack(np.unravel_index(peaks, prob.shape), 1).astype(float)
    return objs
