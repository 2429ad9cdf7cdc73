# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""MONAI cumulative metric of the lesion-wise figures, for evaluators, handlers and configs."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from monai.data.utils import affine_to_spacing
from monai.metrics import CumulativeIterationMetric

from .lesion_detection import DEFAULT_SIZE_BINS_MM, evaluate_scan, summarise_scans
from .objects import objects_from_instances, objects_from_map

__all__ = ["LesionDetectionMetric"]


def _spacing(t: torch.Tensor, b: int) -> np.ndarray:
    affine = getattr(t, "affine", None)
    if affine is None:
        return np.ones(3)
    a = affine[b] if affine.ndim == 3 else affine
    return affine_to_spacing(np.asarray(a, float))


class LesionDetectionMetric(CumulativeIterationMetric):
    """Lesion-wise detection figures of whole volumes (see :mod:`bundle.metrics.lesion_detection`).

    Each call takes a batch: ``y_pred`` (B, C, H, W, D) probabilities and ``y`` (B, 1, H, W, D) reference instance
    maps (or binary masks, split into connected components). Predicted objects are the connected components of
    ``y_pred[:, pred_channel] >= threshold``, scored by their maximum probability. Spacing comes from the
    ``MetaTensor`` affine of ``y`` (1 mm otherwise). Per-image results are rows of fixed length, so they stack
    and sync across ranks; ``aggregate`` returns the dict of pooled figures.

    Args:
        rule: ``overlap``, ``distance_mm`` or ``distance_voxels``.
        threshold: probability threshold of the predicted map.
        connectivity: 6, 18 or 26 (reference masks and predictions).
        min_overlap: overlap rule's fraction of the reference object.
        max_distance: distance rules' limit (default 5 mm or 3 voxels).
        min_voxels: smaller predicted components are dropped.
        size_bins_mm: edges of the size bins (equivalent diameter).
        pred_channel: channel of ``y_pred`` holding the object probability.
        reference_is_instance: ``y`` holds instance ids (else a binary mask split into components).
        max_detections: predictions kept per image for the FROC curve (highest scores); counts are never truncated.
    """

    def __init__(
        self,
        rule: str = "overlap",
        threshold: float = 0.5,
        connectivity: int = 26,
        min_overlap: float = 0.1,
        max_distance: float | None = None,
        min_voxels: int = 1,
        size_bins_mm=DEFAULT_SIZE_BINS_MM,
        pred_channel: int = -1,
        reference_is_instance: bool = True,
        max_detections: int = 1000,
    ) -> None:
        super().__init__()
        self.rule, self.threshold, self.connectivity = rule, threshold, connectivity
        self.match_kwargs = {"min_overlap": min_overlap} if rule == "overlap" else {}
        if max_distance is not None:
            self.match_kwargs["max_distance"] = max_distance
        self.min_voxels, self.size_bins_mm = min_voxels, tuple(size_bins_mm)
        self.pred_channel, self.reference_is_instance = pred_channel, reference_is_instance
        self.max_detections = max_detections

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if y_pred.ndim != 5 or y.ndim != 5:
            raise ValueError(f"expected (B, C, H, W, D) inputs, got {tuple(y_pred.shape)} and {tuple(y.shape)}")
        rows = []
        for b in range(y_pred.shape[0]):
            spacing = _spacing(y, b)
            ref_map = y[b, 0].detach().cpu().numpy()
            if self.reference_is_instance:
                ref = objects_from_instances(ref_map.astype(np.int64), spacing)
            else:
                ref = objects_from_map(ref_map, 0.5, self.connectivity, spacing)
            prob = y_pred[b, self.pred_channel].detach().float().cpu().numpy()
            pred = objects_from_map(prob, self.threshold, self.connectivity, spacing, self.min_voxels)
            rows.append(self._encode(evaluate_scan(ref, pred, self.rule, self.size_bins_mm, **self.match_kwargs)))
        return torch.stack(rows)

    def _encode(self, r: dict) -> torch.Tensor:
        k = self.max_detections
        order = np.argsort(-r["scores"], kind="stable")[:k]
        if len(r["scores"]) > k:
            warnings.warn(f"{len(r['scores'])} predicted objects in one image; FROC keeps the {k} best")
        scores = np.full(k, np.nan)
        hits = np.zeros(k)
        scores[: len(order)], hits[: len(order)] = r["scores"][order], r["hits"][order]
        head = [r["tp"], r["fp"], r["fn"], r["n_ref"], r["n_pred"]]
        return torch.as_tensor(np.concatenate([head, r["size_tp"], r["size_n"], scores, hits]), dtype=torch.float64)

    def _decode(self, row: np.ndarray) -> dict:
        nb = len(self.size_bins_mm) - 1
        k = self.max_detections
        head, rest = row[:5].astype(int), row[5:]
        scores, hits = rest[2 * nb : 2 * nb + k], rest[2 * nb + k :]
        keep = ~np.isnan(scores)
        return {
            **dict(zip(("tp", "fp", "fn", "n_ref", "n_pred"), head.tolist())),
            "size_tp": rest[:nb].astype(int),
            "size_n": rest[nb : 2 * nb].astype(int),
            "scores": scores[keep],
            "hits": hits[keep] > 0,
            "class_tp": {},
            "class_n": {},
        }

    def aggregate(self) -> dict:  # type: ignore[override]
        """Pooled figures over every image seen since the last ``reset``."""
        buffer = self.get_buffer()
        rows = [] if buffer is None else np.asarray(torch.as_tensor(buffer).cpu(), float).reshape(-1, self._width)
        return summarise_scans([self._decode(r) for r in rows], self.size_bins_mm)

    @property
    def _width(self) -> int:
        return 5 + 2 * (len(self.size_bins_mm) - 1) + 2 * self.max_detections
