# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""What the multirater RCNN produces: detections-table rows from its box table and box instance maps (readers for
the writers of :mod:`bundle.handlers.writers`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from monai.data.utils import affine_to_spacing
from nibabel.affines import apply_affine

from ...inference.detections import detection_rows, input_grid
from ...inference.outputs import SubjectReader
from ...metrics.objects import Objects
from .transforms import RCNN_CHOICES

__all__ = ["BoxInstances", "RCNNDetections", "box_map", "rcnn_rows"]


def rcnn_rows(
    subject: str,
    table,
    columns: Sequence[str],
    affine: np.ndarray,
    min_score: float | None = None,
    out_affine: np.ndarray | None = None,
) -> list[dict]:
    """Rows of one subject from a multirater RCNN table (:func:`bundle.methods.rcnn.rcnn_columns`; NaN rows dropped)
    computed on the grid ``affine``, reported on the grid ``out_affine`` (the input file's; default ``affine``).

    ``label`` is the likelier of lacune and EPVS, ``score`` is 1 - p_nothing, the four ``p_<answer>`` columns, one
    ``rater<k>`` column per rater head (that head's answer) and each head's ``rater<k>_p_<answer>`` probabilities
    follow; ``diameter_mm`` is the box side (voxels times the mean voxel size) and ``volume_mm3`` the volume of the
    sphere of that diameter (a box detector does not segment).
    """
    t = table.detach().float().cpu().numpy() if hasattr(table, "detach") else np.asarray(table, float)
    col = {c: n for n, c in enumerate(columns)}
    t = t.reshape(-1, len(columns))
    keep = np.isfinite(t[:, col["score"]]) & (t[:, col["score"]] >= (min_score if min_score is not None else -np.inf))
    t = t[keep]
    affine = np.asarray(affine, float)
    out_affine = affine if out_affine is None else np.asarray(out_affine, float)
    side = t[:, col["scale"]] * float(np.cbrt(np.prod(affine_to_spacing(affine))))
    probs = t[:, [col[f"p_{c}"] for c in RCNN_CHOICES]]
    labels = np.where(probs[:, 1] > probs[:, 2], "lacune", "epvs").astype(object)
    spacing = np.asarray(affine_to_spacing(out_affine), float)
    sizes = np.pi / 6.0 * (side**3) / float(np.prod(spacing))
    centres = apply_affine(np.linalg.inv(out_affine) @ affine, t[:, :3].reshape(-1, 3))
    objs = Objects(centres, sizes, t[:, col["score"]], labels, None, spacing)
    rows = detection_rows(subject, objs, out_affine, probs, RCNN_CHOICES)
    raters = [c for c in columns if c.startswith("rater")]
    for row, vals in zip(rows, t[:, [col[c] for c in raters]] if raters else [[]] * len(rows)):
        row.update({c: RCNN_CHOICES[int(v)] if "_p_" not in c else round(float(v), 4) for c, v in zip(raters, vals)})
    return rows


def box_map(rows: list[dict], shape: Sequence[int], spacing) -> np.ndarray:
    """int16 instance map of detection boxes: the cube of side ``diameter_mm`` around each row's (i, j, k), filled
    with its ``lesion_id``; rows are drawn from the lowest score up so the best box wins where boxes overlap."""
    out = np.zeros(tuple(shape), np.int16)
    spacing = np.asarray(spacing, float)
    for row in sorted(rows, key=lambda r: r["score"]):
        c = np.array([row["i"], row["j"], row["k"]], float)
        half = np.floor(row["diameter_mm"] / spacing / 2.0)
        lo = np.clip(np.round(c - half), 0, np.asarray(shape) - 1).astype(int)
        hi = np.clip(np.round(c + half) + 1, 1, shape).astype(int)
        out[tuple(slice(a, b) for a, b in zip(lo, hi))] = int(row["lesion_id"])
    return out


class RCNNDetections(SubjectReader):
    """Reader of the multirater RCNN's output for :mod:`bundle.handlers.writers`: ``output["pred"]`` is its box table
    (columns ``columns``, see :func:`bundle.methods.rcnn.rcnn_columns`); rows of score >= ``threshold`` get the class
    probabilities and the rater heads' answers (:func:`rcnn_rows`), on the image's grid."""

    choices = RCNN_CHOICES

    def __init__(self, columns: Sequence[str], threshold: float = 0.5, key: str = "pred") -> None:
        self.columns, self.threshold, self.key = tuple(columns), float(threshold), key
        if not {"i", "j", "k", "score", "scale", "p_nothing"} <= set(self.columns):
            raise ValueError(f"the RCNN reader needs the detector's columns, got {self.columns}")
        self.raters = tuple(c for c in self.columns if c.startswith("rater"))

    def compute(self, subject: str, image, output: dict) -> list[dict]:
        table = self.item(subject, output, self.key)
        affine, out_affine = np.asarray(image.affine, float), input_grid(image)[0]
        return rcnn_rows(subject, table, self.columns, affine, min_score=self.threshold, out_affine=out_affine)


class BoxInstances(SubjectReader):
    """``(int16 instance map, affine)`` of the subject's written boxes on the image's grid (:func:`box_map`; the
    box of row ``lesion_id`` filled with that id, better scores drawn last), for
    :class:`bundle.handlers.InstanceMapWriter`."""

    def __init__(self, detections: RCNNDetections) -> None:
        self.detections = detections

    def compute(self, subject: str, image, output: dict) -> tuple[np.ndarray, np.ndarray]:
        affine, shape = input_grid(image)
        rows = self.detections(subject, image, output)
        return box_map(rows, shape, affine_to_spacing(affine)), affine
