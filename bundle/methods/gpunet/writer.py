# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""What GP-Unet produces: detections from its instance map, and its count estimate per subject."""

from __future__ import annotations

import numpy as np
import torch
from monai.data.utils import affine_to_spacing

from ...handlers.writers import SubjectWriter, write_csv, written
from ...inference.detections import detection_rows
from ...inference.outputs import SubjectReader
from ...metrics.objects import objects_from_instances

__all__ = ["CountPredictionsWriter", "InstanceDetections"]


class InstanceDetections(SubjectReader):
    """Reader of GP-Unet's output: ``output["pred"]`` is an instance map (1, H, W, D) already on the input grid
    (MONAI ``Invertd``; its own affine is used) and ``output[score_key]`` the map scoring each object by its
    maximum; every object is of class ``label`` (no threshold: the count-matched threshold made the map)."""

    def __init__(self, label: str = "", score_key: str = "net_heatmap", key: str = "pred") -> None:
        self.label, self.score_key, self.key = label, score_key, key

    def compute(self, subject: str, image, output: dict) -> list[dict]:
        pred, heat = self.item(subject, output, self.key), self.item(subject, output, self.score_key)
        affine = np.asarray(pred.affine, float)
        inst = np.asarray(pred.detach().cpu())[0].astype(np.int64)
        score = np.asarray(heat.detach().float().cpu())[0]
        if score.shape != inst.shape:
            raise ValueError(f"{subject}: {self.score_key} shape {score.shape} differs from the instance map's")
        objs = objects_from_instances(inst, affine_to_spacing(affine), prob=score)
        objs.labels = np.full(len(objs), self.label, dtype=object)
        return detection_rows(subject, objs, affine)


class CountPredictionsWriter(SubjectWriter):
    """``output_dir/count_predictions.csv`` (atomically, when the run completes; not written when no output has
    ``count_key``): one row per subject, ``subject, predicted_count, count_used, detected, threshold``: the
    network's count estimate, the count the threshold matched (``pred_n_objects``), the number of detections the
    reader ``detections`` gives and the threshold used (``pred_threshold``)."""

    key = "count_prediction"

    def __init__(self, output_dir, detections: InstanceDetections, count_key: str = "net_count") -> None:
        super().__init__(output_dir)
        self.detections, self.count_key = detections, count_key

    def write_subject(self, subject: str, image, output: dict) -> dict | None:
        if self.count_key not in output:
            return None
        detected = len(self.detections(subject, image, output))
        estimate = float(torch.as_tensor(output[self.count_key]).detach().float().reshape(-1)[0])
        return {
            "subject": subject,
            "predicted_count": round(estimate, 3),
            "count_used": int(output.get("pred_n_objects", detected)),
            "detected": detected,
            "threshold": float(output.get("pred_threshold", float("nan"))),
        }  # fmt: skip

    def finish(self, records: list[dict]) -> None:
        counts = [r[self.key] for r in written(records) if self.key in r]
        if counts:
            write_csv(self.output_dir / "count_predictions.csv", list(counts[0]), [list(c.values()) for c in counts])
