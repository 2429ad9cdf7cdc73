# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Ignite handler of :class:`bundle.metrics.LesionDetectionMetric`, usable as a key metric in configs."""

from __future__ import annotations

from typing import Callable, Sequence

from monai.handlers import IgniteMetricHandler
from monai.handlers.utils import from_engine

from ..metrics.metric import LesionDetectionMetric

__all__ = ["LesionDetection", "SCALAR_FIGURES"]

SCALAR_FIGURES = (
    "sensitivity",
    "fp_per_scan",
    "precision",
    "false_discovery_rate",
    "f1",
    "f1_median_per_scan",
    "count_abs_diff_mean",
    "icc_2_1",
    "icc_3_1",
    "cpm",
)


class LesionDetection(IgniteMetricHandler):
    """Lesion-wise figures as an ignite metric.

    ``engine.state.metrics[name]`` receives ``key_figure`` (a scalar, so checkpointing and early stopping can use
    it), and ``engine.state.metrics[f"{name}_{figure}"]`` every figure of ``log_figures``, which
    ``StatsHandler``/``TensorBoardStatsHandler``/``MLFlowHandler`` then log. The full result (size bins, FROC) is
    kept in ``self.figures``.

    Args:
        key_figure: figure reported under the metric's own name (e.g. ``sensitivity``, ``f1``, ``cpm``; use a
            negated figure such as FP per scan through ``score_function`` of the checkpoint handler if needed).
        log_figures: scalar figures also written to ``engine.state.metrics``.
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``.
        metric_kwargs: arguments of :class:`bundle.metrics.LesionDetectionMetric`.
    """

    def __init__(
        self,
        key_figure: str = "sensitivity",
        log_figures: Sequence[str] = SCALAR_FIGURES,
        output_transform: Callable = from_engine(["pred", "label"]),
        save_details: bool = False,
        **metric_kwargs,
    ) -> None:
        if key_figure not in SCALAR_FIGURES:
            raise ValueError(f"key_figure must be one of {SCALAR_FIGURES}, got {key_figure!r}")
        super().__init__(
            LesionDetectionMetric(**metric_kwargs), output_transform=output_transform, save_details=save_details
        )
        self.key_figure = key_figure
        self.log_figures = tuple(log_figures)
        self.figures: dict = {}

    def compute(self) -> float:
        self.figures = super().compute()  # MONAI's: the metric's figures (and per-scan details with save_details)
        return float(self.figures[self.key_figure])

    def completed(self, engine, name: str) -> None:
        engine.state.metrics[name] = self.compute()
        for fig in self.log_figures:
            engine.state.metrics[f"{name}_{fig}"] = float(self.figures[fig])
