# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Ignite handler turning predicted probability maps into the detections table (``docs/outputs.md``)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from ignite.engine import Engine, Events
from monai.data.utils import affine_to_spacing

from ..data.io import atomic_path, write_nifti
from ..inference.detections import detection_rows, input_grid_rows, subject_of, to_grid, write_detections
from ..metrics.objects import connected_components, objects_from_map

__all__ = ["DetectionsWriter", "instance_map_of_rows", "write_counts"]

FORMATS = ("map", "table")
UNLABELLED = "objects"  # the counts.csv column of class-agnostic detections (empty label)


class DetectionsWriter:
    """Collect detections of every image an evaluator sees and write ``output_dir/detections.csv`` at the end.

    With ``save_maps`` it also writes each probability map as ``output_dir/maps/<subject>_prob.nii.gz``, on the
    input image's grid and affine, so it overlays the input in any viewer.

    Objects are the connected components of ``pred[pred_channel] >= threshold`` on the grid of the input image
    (the preprocessing of this bundle's segmentation workflow does not resample or crop), scored by their
    maximum probability; coordinates use the input image's affine. The table is written atomically once the run
    completes; a run with no detection writes the header only.

    Args:
        output_dir: folder of ``detections.csv``.
        threshold, connectivity, min_voxels: object extraction (see :func:`bundle.metrics.objects_from_map`).
        pred_channel: channel holding the object probability.
        label: class name written in the ``label`` column.
        save_maps: also write the probability maps (float32 NIfTI, atomically; ``map`` format only).
        pred_format: ``map`` (a probability map per image, as above);
            ``table``: ``pred`` is already an (N, >=6) tensor with the columns of
            :data:`bundle.inference.TABLE_COLUMNS` (voxel i, j, k, score, stage-1 score, size in voxels), e.g. from
            :class:`bundle.methods.twostage.TwoStageCMBDetector`; rows with ``score < threshold`` are dropped; when the
            output also has ``score_key`` (the detector's stage-1 map, ``return_map=True``) and ``save_maps`` is
            set, it is written as ``maps/<subject>_prob.nii.gz`` with ``maps/<subject>_objects.nii.gz``: the
            connected component of ``map >= map_threshold`` under each written detection, filled with its
            ``lesion_id`` (the detector's own candidate threshold makes one component per detection);
        score_column: ``table`` column written as the score (3: the detector's score; 4: its stage-1 score).
        score_key: output key of the ``table`` format's score map.
        map_threshold: threshold of the ``table`` format's instance map (the detector's candidate threshold).
        classes: the class columns of ``counts.csv`` (default: ``label`` and every label written; ``objects`` for
            detections without a label).

    Every run also writes ``counts.csv``: one row per subject seen, including subjects without detections, with
    the number of written detections per class and their ``total``.

    A method whose network returns something else subclasses this writer and overrides :meth:`subject_rows` (the
    rows of one subject, writing its maps) and, for extra columns, :meth:`write_table`: e.g.
    ``bundle.methods.rcnn.RCNNDetectionsWriter`` and ``bundle.methods.gpunet.InstanceDetectionsWriter``.
    """

    formats = FORMATS

    def __init__(
        self,
        output_dir: str | os.PathLike,
        threshold: float = 0.5,
        connectivity: int = 26,
        min_voxels: int = 1,
        pred_channel: int = -1,
        label: str = "",
        save_maps: bool = True,
        pred_format: str = "map",
        score_column: int = 3,
        score_key: str = "net_heatmap",
        map_threshold: float = 0.2,
        classes: Sequence[str] = (),
    ) -> None:
        self.score_column = int(score_column)
        if pred_format not in self.formats:
            raise ValueError(f"pred_format must be one of {self.formats}, got {pred_format!r}")
        self.score_key = score_key
        self.pred_format = pred_format
        self.path = Path(output_dir) / "detections.csv"
        self.threshold, self.connectivity, self.min_voxels = threshold, connectivity, min_voxels
        self.pred_channel, self.label, self.save_maps = pred_channel, label, save_maps
        self.map_threshold = float(map_threshold)
        self.classes = tuple(classes)
        self.rows: list[dict] = []
        self.subjects: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.rows, self.subjects = [], []

    @property
    def maps_dir(self) -> Path:
        return self.path.parent / "maps"

    def __call__(self, engine: Engine) -> None:
        for batch, output in zip(engine.state.batch, engine.state.output):
            subject = subject_of(batch)
            self.subjects.append(subject)
            self.rows += self.subject_rows(subject, batch["image"], output)

    def subject_rows(self, subject: str, image, output: dict) -> list[dict]:
        """The detections-table rows of one subject (``image``: its preprocessed image, ``output``: the
        post-processed network output); writes the subject's maps when ``save_maps``."""
        affine = np.asarray(image.affine, float)
        if self.pred_format == "table":
            rows, in_affine, in_shape = input_grid_rows(
                subject, output["pred"], image, self.label, self.score_column, min_score=self.threshold
            )
            if self.save_maps and self.score_key in output:
                prob = np.asarray(output[self.score_key].detach().float().cpu()).reshape(image.shape[-3:])
                prob = to_grid(prob, affine, in_affine, in_shape)
                inst = instance_map_of_rows(rows, prob, self.map_threshold, self.connectivity)
                write_nifti(inst, in_affine, self.maps_dir / f"{subject}_objects.nii.gz", np.int16)
                write_nifti(prob, in_affine, self.maps_dir / f"{subject}_prob.nii.gz")
            return rows
        prob = output["pred"][self.pred_channel].detach().float().cpu().numpy()
        objs = objects_from_map(prob, self.threshold, self.connectivity, affine_to_spacing(affine), self.min_voxels)
        objs.labels = np.full(len(objs), self.label, dtype=object)
        if self.save_maps:
            write_nifti(prob, affine, self.maps_dir / f"{subject}_prob.nii.gz")
        return detection_rows(subject, objs, affine)

    def _write(self, engine: Engine) -> None:
        write_counts(self.rows, self.subjects, self.path.parent / "counts.csv", self.classes or self._classes())
        self.write_table()

    def write_table(self) -> None:
        """Write ``detections.csv`` from the collected rows (atomically)."""
        write_detections(self.rows, self.path)

    def _classes(self) -> tuple[str, ...]:
        own = self.label or UNLABELLED
        return (own, *sorted({str(r["label"]) or UNLABELLED for r in self.rows} - {own}))


def write_counts(rows: list[dict], subjects: Sequence[str], path: str | os.PathLike, classes: Sequence[str]) -> Path:
    """``counts.csv`` (atomically): per subject of ``subjects`` (in order, once each), the number of ``rows`` of
    each class and the ``total``; a subject without detections gets zeros. Raises if a row's label is not one of
    ``classes`` (the table and the counts must agree). Rows without a label count under ``objects``."""
    classes = list(dict.fromkeys(c or UNLABELLED for c in classes))
    per = {s: dict.fromkeys(classes, 0) for s in dict.fromkeys(subjects)}
    for r in rows:
        label = str(r["label"]) or UNLABELLED
        if label not in classes:
            raise ValueError(f"detection of class {label!r} in subject {r['subject']!r}; counts.csv has {classes}")
        per.setdefault(str(r["subject"]), dict.fromkeys(classes, 0))[label] += 1
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["subject", *classes, "total"])
            for subject, c in per.items():
                writer.writerow([subject, *c.values(), sum(c.values())])
    return Path(path)


def instance_map_of_rows(rows: list[dict], prob: np.ndarray, threshold: float, connectivity: int = 26) -> np.ndarray:
    """int16 map: the connected component of ``prob >= threshold`` that holds each row's (i, j, k) voxel, filled
    with the row's ``lesion_id`` (a single voxel where that voxel is below the threshold)."""
    comps = connected_components(prob >= threshold, int(connectivity))
    n_comps = int(comps.max())
    lut = np.zeros(n_comps + 1, np.int16)  # component -> lesion_id, applied to the volume once
    below = []
    for r in rows:
        ijk = tuple(int(np.clip(round(float(r[a])), 0, size - 1)) for a, size in zip("ijk", prob.shape))
        if comps[ijk]:
            lut[comps[ijk]] = int(r["lesion_id"])
        else:
            below.append((ijk, int(r["lesion_id"])))
    out = lut[comps]
    for ijk, lesion_id in below:
        out[ijk] = lesion_id
    return out
