# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Ignite handler turning predicted probability maps into the detections table (``docs/outputs.md``)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data.utils import affine_to_spacing

from ..data.io import atomic_path, write_nifti
from ..inference.detections import detection_rows, input_grid_rows, rcnn_rows, to_grid, write_detections
from ..metrics.objects import objects_from_instances, objects_from_map

__all__ = ["DetectionsWriter", "box_map", "instance_map_of_rows", "write_counts"]

FORMATS = ("map", "table", "rcnn", "instances")
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
            :data:`bundle.networks.TABLE_COLUMNS` (voxel i, j, k, score, stage-1 score, size in voxels), e.g. from
            :class:`bundle.networks.TwoStageCMBDetector`; rows with ``score < threshold`` are dropped; when the
            output also has ``score_key`` (the detector's stage-1 map, ``return_map=True``) and ``save_maps`` is
            set, it is written as ``maps/<subject>_prob.nii.gz`` with ``maps/<subject>_objects.nii.gz``: the
            connected component of ``map >= map_threshold`` under each written detection, filled with its
            ``lesion_id`` (the detector's own candidate threshold makes one component per detection);
            ``rcnn``: ``pred`` is a multirater RCNN table (columns ``columns``, see
            :func:`bundle.networks.rcnn_columns`); rows get the class probabilities and the rater heads' answers
            (:func:`bundle.inference.rcnn_rows`), and with ``save_maps`` each subject's written boxes are saved as
            an instance map ``output_dir/maps/<subject>_boxes.nii.gz`` (box of row ``lesion_id`` filled with that
            id, better scores drawn last) on the input grid;
            ``instances`` (GP-Unet): ``pred`` is an instance map (1, H, W, D) already on the input grid (MONAI
            ``Invertd``; its own affine is used) and ``score_key`` the map scoring each object by its maximum;
            ``threshold`` is not applied. With ``save_maps`` both are saved as
            ``maps/<subject>_objects.nii.gz`` (int16, ids = ``lesion_id``) and ``maps/<subject>_heatmap.nii.gz``.
            When the output has ``count_key`` (the network's count estimate), ``count_predictions.csv`` gets one
            row per subject: ``subject, predicted_count, count_used, detected, threshold``.
        score_column: ``table`` column written as the score (3: the detector's score; 4: its stage-1 score).
        columns: column names of an ``rcnn`` table.
        score_key, count_key: output keys of the score map (``instances``, ``table``) and of the count estimate
            (``instances``).
        map_threshold: threshold of the ``table`` format's instance map (the detector's candidate threshold).
        classes: the class columns of ``counts.csv`` (default: ``label`` and every label written; ``objects`` for
            detections without a label).

    Every run also writes ``counts.csv``: one row per subject seen, including subjects without detections, with
    the number of written detections per class and their ``total``.
    """

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
        columns: Sequence[str] = (),
        score_key: str = "net_heatmap",
        count_key: str = "net_count",
        map_threshold: float = 0.2,
        classes: Sequence[str] = (),
    ) -> None:
        self.score_column = int(score_column)
        if pred_format not in FORMATS:
            raise ValueError(f"pred_format must be one of {FORMATS}, got {pred_format!r}")
        self.score_key, self.count_key = score_key, count_key
        self.columns = tuple(columns)
        if pred_format == "rcnn" and not {"i", "j", "k", "score", "scale", "p_nothing"} <= set(self.columns):
            raise ValueError(f"pred_format 'rcnn' needs the detector's columns, got {self.columns}")
        self.pred_format = pred_format
        self.path = Path(output_dir) / "detections.csv"
        self.threshold, self.connectivity, self.min_voxels = threshold, connectivity, min_voxels
        self.pred_channel, self.label, self.save_maps = pred_channel, label, save_maps
        self.map_threshold = float(map_threshold)
        self.classes = tuple(classes)
        self.rows: list[dict] = []
        self.counts: list[dict] = []
        self.subjects: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.rows, self.counts, self.subjects = [], [], []

    def __call__(self, engine: Engine) -> None:
        for batch, output in zip(engine.state.batch, engine.state.output):
            image = batch["image"]
            affine = np.asarray(image.affine, float)
            spacing = affine_to_spacing(affine)
            subject = str(batch.get("subject", Path(str(image.meta.get("filename_or_obj", "image"))).name))
            self.subjects.append(subject)
            if self.pred_format == "rcnn":
                rows = rcnn_rows(subject, output["pred"], self.columns, affine, min_score=self.threshold)
                self.rows += rows
                if self.save_maps:
                    shape = tuple(image.shape[-3:])
                    write_nifti(
                        box_map(rows, shape, spacing), affine, self.path.parent / "maps" / f"{subject}_boxes.nii.gz"
                    )
                continue
            if self.pred_format == "instances":
                self._instances(subject, output)
                continue
            if self.pred_format == "table":
                rows, in_affine, in_shape = input_grid_rows(
                    subject, output["pred"], image, self.label, self.score_column, min_score=self.threshold
                )
                self.rows += rows
                if self.save_maps and self.score_key in output:
                    prob = np.asarray(output[self.score_key].detach().float().cpu()).reshape(image.shape[-3:])
                    prob = to_grid(prob, affine, in_affine, in_shape)
                    maps = self.path.parent / "maps"
                    inst = instance_map_of_rows(rows, prob, self.map_threshold, self.connectivity)
                    write_nifti(inst, in_affine, maps / f"{subject}_objects.nii.gz", np.int16)
                    write_nifti(prob, in_affine, maps / f"{subject}_prob.nii.gz")
                continue
            prob = output["pred"][self.pred_channel].detach().float().cpu().numpy()
            objs = objects_from_map(prob, self.threshold, self.connectivity, spacing, self.min_voxels)
            objs.labels = np.full(len(objs), self.label, dtype=object)
            self.rows += detection_rows(subject, objs, affine)
            if self.save_maps:
                write_nifti(prob, affine, self.path.parent / "maps" / f"{subject}_prob.nii.gz")

    def _instances(self, subject: str, output: dict) -> None:
        pred, heat = output["pred"], output[self.score_key]
        affine = np.asarray(pred.affine, float)
        spacing = affine_to_spacing(affine)
        inst = np.asarray(pred.detach().cpu())[0].astype(np.int64)
        score = np.asarray(heat.detach().float().cpu())[0]
        if score.shape != inst.shape:
            raise ValueError(f"{subject}: {self.score_key} shape {score.shape} differs from the instance map's")
        objs = objects_from_instances(inst, spacing, prob=score)
        objs.labels = np.full(len(objs), self.label, dtype=object)
        self.rows += detection_rows(subject, objs, affine)
        if self.count_key in output:
            estimate = float(torch.as_tensor(output[self.count_key]).detach().float().reshape(-1)[0])
            self.counts.append({
                "subject": subject,
                "predicted_count": round(estimate, 3),
                "count_used": int(output.get("pred_n_objects", len(objs))),
                "detected": len(objs),
                "threshold": float(output.get("pred_threshold", float("nan"))),
            })  # fmt: skip
        if self.save_maps:
            maps = self.path.parent / "maps"
            write_nifti(inst.astype(np.int16), affine, maps / f"{subject}_objects.nii.gz", np.int16)
            write_nifti(score, affine, maps / f"{subject}_heatmap.nii.gz")

    def _write(self, engine: Engine) -> None:
        write_counts(self.rows, self.subjects, self.path.parent / "counts.csv", self.classes or self._classes())
        if self.counts:
            with atomic_path(self.path.parent / "count_predictions.csv") as tmp:
                with open(tmp, "w", newline="") as f:
                    writer = csv.DictWriter(f, list(self.counts[0]))
                    writer.writeheader()
                    writer.writerows(self.counts)
        if self.pred_format == "rcnn":
            from ..transforms.rcnn import RCNN_CHOICES

            raters = [c for c in self.columns if c.startswith("rater")]
            write_detections(self.rows, self.path, RCNN_CHOICES, raters)
        else:
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
    from scipy import ndimage as ndi

    structure = ndi.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[int(connectivity)])
    comps, n_comps = ndi.label(prob >= threshold, structure=structure)
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

