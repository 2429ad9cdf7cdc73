# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The FROC plot draws the curve where its sensitivity is, and the seven CPM points on it (read back from pixels)."""

from __future__ import annotations

import numpy as np
from matplotlib.image import imread

from bundle.evaluation import plot_froc
from bundle.metrics import LUNA16_FPS

C0, C1 = np.array([0x1F, 0x77, 0xB4]) / 255, np.array([0xFF, 0x7F, 0x0E]) / 255  # curve, CPM points


def _pixels(path, colour):
    img = imread(str(path))[..., :3]
    return np.argwhere(np.abs(img - colour).max(-1) < 0.08)  # (row, column) of pixels of that colour


def _plot(tmp_path, name, sens):
    fps = [0.0, *LUNA16_FPS]
    figures = {"froc": {"fp_per_scan": fps, "sensitivity": [0.0, *sens]}, "cpm": float(np.mean(sens)),
               "sensitivity": float(sens[-1])}  # fmt: skip
    return plot_froc(figures, tmp_path / f"{name}.png", title=name)


def test_curve_height_follows_the_sensitivity(tmp_path):
    high = _pixels(_plot(tmp_path, "high", [0.9] * 7), C0)
    low = _pixels(_plot(tmp_path, "low", [0.2] * 7), C0)
    rising = _pixels(_plot(tmp_path, "rising", [0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95]), C0)
    assert len(high) > 100 and len(low) > 100
    assert high[:, 0].mean() < low[:, 0].mean() - 100  # image rows grow downwards: 0.9 drawn far above 0.2
    left, right = rising[:, 1] < np.median(rising[:, 1]), rising[:, 1] >= np.median(rising[:, 1])
    assert rising[left, 0].mean() > rising[right, 0].mean() + 40  # a rising curve goes up to the right
    assert len(_pixels(_plot(tmp_path, "high", [0.9] * 7), C1)) > 50  # the CPM points are drawn


def test_undefined_sensitivity_draws_no_curve(tmp_path):
    figures = {"froc": {"fp_per_scan": [0.0, 1.0], "sensitivity": [float("nan")] * 2}, "cpm": float("nan"),
               "sensitivity": float("nan")}  # fmt: skip
    path = plot_froc(figures, tmp_path / "none.png")
    assert len(_pixels(path, C0)) < 20 and len(_pixels(path, C1)) < 20  # (the legend has no entries then)
