# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""What GP-Unet writes: detections from its instance map, the maps, and its count estimate per subject."""

from __future__ import annotations

import csv

import numpy as np
import torch
from ignite.engine import Engine
from monai.data.utils import affine_to_spacing

from ...data.io import atomic_path, write_nifti
from ...handlers.detections_writer import DetectionsWriter
from ...inference.detections import detection_rows
from ...metrics.objects import objects_from_instances

__all__ = ["InstanceDetectionsWriter"]


class InstanceDetectionsWriter(DetectionsWriter):
    """:class:`bundle.handlers.DetectionsWriter` for GP-Unet: ``pred`` is an instance map (1, H, W, D) already on
    the input grid (MONAI ``Invertd``; its own affine is used) and ``score_key`` the map scoring each object by its
    maximum; ``threshold`` is not applied. With ``save_maps`` both are saved as ``maps/<subject>_objects.nii.gz``
    (int16, ids = ``lesion_id``) and ``maps/<subject>_heatmap.nii.gz``. When the output has ``count_key`` (the
    network's count estimate), ``count_predictions.csv`` gets one row per subject: ``subject, predicted_count,
    count_used, detected, threshold``. The other arguments are the base writer's."""

    formats = ("instances",)

    def __init__(self, output_dir, pred_format: str = "instances", count_key: str = "net_count", **kwargs) -> None:
        super().__init__(output_dir, pred_format=pred_format, **kwargs)
        self.count_key = count_key
        self.counts: list[dict] = []

    def _reset(self, engine: Engine) -> None:
        super()._reset(engine)
        self.counts = []

    def subject_rows(self, subject: str, image, output: dict) -> list[dict]:
        pred, heat = output["pred"], output[self.score_key]
        affine = np.asarray(pred.affine, float)
        inst = np.asarray(pred.detach().cpu())[0].astype(np.int64)
        score = np.asarray(heat.detach().float().cpu())[0]
        if score.shape != inst.shape:
            raise ValueError(f"{subject}: {self.score_key} shape {score.shape} differs from the instance map's")
        objs = objects_from_instances(inst, affine_to_spacing(affine), prob=score)
        objs.labels = np.full(len(objs), self.label, dtype=object)
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
            write_nifti(inst.astype(np.int16), affine, self.maps_dir / f"{subject}_objects.nii.gz", np.int16)
            write_nifti(score, affine, self.maps_dir / f"{subject}_heatmap.nii.gz")
        return detection_rows(subject, objs, affine)

    def write_table(self) -> None:
        if self.counts:
            with atomic_path(self.path.parent / "count_predictions.csv") as tmp:
                with open(tmp, "w", newline="") as f:
                    writer = csv.DictWriter(f, list(self.counts[0]))
                    writer.writeheader()
                    writer.writerows(self.counts)
        super().write_table()
