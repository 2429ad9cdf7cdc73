# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Objects of one scan for lesion-wise evaluation: from a binary/probability map, an instance map or a table.

An :class:`Objects` holds N objects: centres (voxel i, j, k), sizes (voxels), scores, class labels and, when the
objects come from a map, the instance map itself (needed by the overlap rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "LABEL_FORMATS",
    "Objects",
    "connected_components",
    "label_instances",
    "neighbourhood",
    "objects_from_instances",
    "objects_from_map",
    "objects_from_table",
]
LABEL_FORMATS = ("auto", "instances", "binary")

_RANK = {6: 1, 18: 2, 26: 3}


@dataclass
class Objects:
    """N objects of one scan.

    Attributes:
        centres: (N, 3) float voxel coordinates (i, j, k) of the centres of mass.
        sizes: (N,) voxel counts (0 where unknown, e.g. a table without volumes).
        scores: (N,) confidence; 1 for reference objects.
        labels: (N,) class names ("" when class-agnostic).
        instance: instance map with ids 1..N in the order of the arrays, or None (objects from a table).
        spacing: voxel size in mm (i, j, k).
    """

    centres: np.ndarray
    sizes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    instance: np.ndarray | None
    spacing: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def diameters_mm(self) -> np.ndarray:
        """Diameter of the sphere with each object's volume (mm)."""
        volume = self.sizes * float(np.prod(self.spacing))
        return np.cbrt(6.0 * volume / np.pi)


def neighbourhood(connectivity: int = 26) -> np.ndarray:
    """The 3D structuring element of a connectivity: 6 (faces), 18 (and edges) or 26 (and corners).

    Raises:
        ValueError: connectivity not 6, 18 or 26.
    """
    if connectivity not in _RANK:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    return ndi.generate_binary_structure(3, _RANK[int(connectivity)])


def connected_components(mask: np.ndarray, connectivity: int = 26) -> np.ndarray:
    """Instance map of the connected components of ``mask > 0`` (ids 1..N, scan order).

    Raises:
        ValueError: connectivity not 6, 18 or 26, or ``mask`` not 3D.
    """
    structure = neighbourhood(connectivity)
    if np.ndim(mask) != 3:
        raise ValueError(f"expected a 3D map, got shape {np.shape(mask)}")
    return ndi.label(np.asarray(mask) > 0, structure=structure)[0]


def label_instances(label: np.ndarray, label_format: str = "auto", connectivity: int = 26,
                    known_ids: bool = False) -> tuple[np.ndarray, str]:
    """A label map as an instance map, and how it was read (``"instances"`` or ``"binary"``).

    ``label_format``: ``"instances"`` (each positive integer id one lesion, as the bundle's simulators and importers
    write them), ``"binary"`` (a mask such as VALDO's, 0/1 or 0/0.5/1 where raters disagree: each connected
    component of its non-zero voxels at ``connectivity`` one lesion) or ``"auto"``: an instance map when a lesion
    file lists its ids (``known_ids``) or it holds integer ids above 1; otherwise (only 0 and 1, or fractions) a
    mask, reported ``"binary"`` when its foreground has several 26-connected parts or fractional values (a single
    0/1 lesion reads the same either way).

    Raises:
        ValueError: unknown ``label_format``; ``instances`` (given or known) with non-integer values.
    """
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label_format must be one of {LABEL_FORMATS}, got {label_format!r}")
    label = np.asarray(label)
    values = np.unique(label)
    integer = bool(np.all(values == np.round(values)))
    if label_format == "instances" or (label_format == "auto" and (known_ids or (integer and values.max() > 1))):
        if not integer:
            odd = values[values != np.round(values)][:3].tolist()
            raise ValueError(f"an instance map holds integer ids; this label has values such as {odd}")
        return label.astype(np.int64, copy=False), "instances"
    if label_format == "auto" and integer and connected_components(label != 0, 26).max() <= 1:
        return label.astype(np.int64, copy=False), "instances"  # empty, or one lesion: the same either way
    return connected_components(label != 0, connectivity).astype(np.int64), "binary"


def objects_from_instances(
    instance: np.ndarray,
    spacing=(1.0, 1.0, 1.0),
    prob: np.ndarray | None = None,
    labels: dict[int, str] | None = None,
) -> Objects:
    """Objects of an instance map (0 background, any positive ids, relabelled to 1..N in increasing id order).

    Works on the foreground voxels only (no sort of the whole volume), so a 256^3 map takes a fraction of a second.

    Args:
        instance: 3D integer map.
        spacing: voxel size (mm).
        prob: optional probability map; an object's score is its maximum probability (else 1).
        labels: optional class name per original id.
    """
    instance = np.asarray(instance)
    flat = instance.reshape(-1)
    fg = np.flatnonzero(flat)
    lab = flat[fg].astype(np.int64)
    if lab.size and lab.min() < 0:
        raise ValueError("instance map has negative ids")
    present = np.flatnonzero(np.bincount(lab)) if lab.size else np.zeros(0, np.int64)
    original = present[present > 0]
    n = len(original)
    inst = instance
    if n and original[-1] != n:  # ids with gaps: make them 1..N
        lut = np.zeros(int(original[-1]) + 1, np.int64)
        lut[original] = np.arange(1, n + 1)
        lab = lut[lab]
        inst = np.zeros(instance.shape, np.int32)
        inst.reshape(-1)[fg] = lab
    sizes = np.bincount(lab, minlength=n + 1)[1:]
    coords = np.unravel_index(fg, instance.shape)
    sums = np.stack([np.bincount(lab, weights=c, minlength=n + 1)[1:] for c in coords], 1)
    centres = sums.reshape(n, 3) / np.maximum(sizes, 1)[:, None]
    if prob is not None and n:
        best = np.full(n + 1, -np.inf)
        np.maximum.at(best, lab, np.asarray(prob).reshape(-1)[fg])
        scores = best[1:]
    else:
        scores = np.ones(n)
    names = np.array([(labels or {}).get(int(i), "") for i in original], dtype=object)
    return Objects(centres, sizes, scores, names, inst, np.asarray(spacing, float))


def objects_from_map(
    pred: np.ndarray, threshold: float = 0.5, connectivity: int = 26, spacing=(1.0, 1.0, 1.0), min_voxels: int = 1
) -> Objects:
    """Objects of a probability or binary map: connected components of ``pred >= threshold``, scored by their max.

    Args:
        min_voxels: components smaller than this are dropped.
    """
    pred = np.asarray(pred, dtype=np.float32)
    inst = connected_components(pred >= threshold, connectivity)
    if min_voxels > 1 and inst.max():
        small = np.bincount(inst.ravel()) < min_voxels
        small[0] = False
        inst[small[inst]] = 0
    return objects_from_instances(inst, spacing, prob=pred)


def objects_from_table(rows: list[dict], spacing=(1.0, 1.0, 1.0)) -> Objects:
    """Objects from detection rows (``i, j, k``, optional ``score``, ``label``, ``volume_mm3``)."""
    spacing = np.asarray(spacing, float)
    centres = np.array([[float(r["i"]), float(r["j"]), float(r["k"])] for r in rows], float).reshape(-1, 3)
    scores = np.array([float(r.get("score", 1.0)) for r in rows], float)
    vol = np.array([float(r.get("volume_mm3") or 0.0) for r in rows], float)
    sizes = np.round(vol / float(np.prod(spacing))).astype(np.int64)
    labels = np.array([str(r.get("label", "")) for r in rows], dtype=object)
    return Objects(centres, sizes, scores, labels, None, spacing)
