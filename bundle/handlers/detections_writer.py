# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Ignite handler turning predicted probability maps into the detections table (``docs/outputs.md``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ignite.engine import Engine, Events
from monai.data.utils import affine_to_spacing

from ..data.io import write_nifti
from ..inference.detections import detection_rows, objects_from_detector_table, write_detections
from ..metrics.objects import objects_from_map

__all__ = ["DetectionsWriter"]


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
        pred_format: ``map`` (a probability map per image, as above) or ``table``: ``pred`` is already an (N, >=6)
            tensor with the columns of :data:`bundle.networks.TABLE_COLUMNS` (voxel i, j, k, score, stage-1 score,
            size in voxels), e.g. from :class:`bundle.networks.TwoStageCMBDetector`; rows with ``score <
            threshold`` are dropped.
        score_column: ``table`` column written as the score (3: the detector's score; 4: its stage-1 score).
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
    ) -> None:
        self.score_column = int(score_column)
        if pred_format not in ("map", "table"):
            raise ValueError(f"pred_format must be 'map' or 'table', got {pred_format!r}")
        self.pred_format = pred_format
        self.path = Path(output_dir) / "detections.csv"
        self.threshold, self.connectivity, self.min_voxels = threshold, connectivity, min_voxels
        self.pred_channel, self.label, self.save_maps = pred_channel, label, save_maps
        self.rows: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.rows = []

    def __call__(self, engine: Engine) -> None:
        for batch, output in zip(engine.state.batch, engine.state.output):
            image = batch["image"]
            affine = np.asarray(image.affine, float)
            spacing = affine_to_spacing(affine)
            subject = str(batch.get("subject", Path(str(image.meta.get("filename_or_obj", "image"))).name))
            if self.pred_format == "table":
                objs = objects_from_detector_table(
                    output["pred"], spacing, self.score_column, self.label, min_score=self.threshold
                )
                self.rows += detection_rows(subject, objs, affine)
                continue
            prob = output["pred"][self.pred_channel].detach().float().cpu().numpy()
            objs = objects_from_map(prob, self.threshold, self.connectivity, spacing, self.min_voxels)
            objs.labels = np.full(len(objs), self.label, dtype=object)
            self.rows += detection_rows(subject, objs, affine)
            if self.save_maps:
                write_nifti(prob, affine, self.path.parent / "maps" / f"{subject}_prob.nii.gz")

    def _write(self, engine: Engine) -> None:
        write_detections(self.rows, self.path)
