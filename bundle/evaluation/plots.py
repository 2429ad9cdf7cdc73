# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""FROC plot (PNG) of pooled lesion-wise figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.io import atomic_path
from ..metrics.froc import LUNA16_FPS

__all__ = ["plot_froc"]


def plot_froc(figures: dict, path: str | Path, title: str = "") -> Path:
    """Sensitivity against FP per scan (log axis), LUNA16 operating points marked, CPM in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fps = np.asarray(figures["froc"]["fp_per_scan"], float)
    sens = np.asarray(figures["froc"]["sensitivity"], float)
    fig, ax = plt.subplots(figsize=(5, 4))
    if len(fps) and not np.isnan(sens).any():
        grid = np.unique(np.r_[np.geomspace(1e-2, max(fps.max(), 16.0), 200), fps])  # linear between points, as CPM
        ax.plot(np.maximum(grid, 1e-2), np.interp(grid, fps, sens), color="C0", label="FROC")
        at = np.interp(LUNA16_FPS, fps, sens)
        ax.plot(LUNA16_FPS, at, "o", color="C1", label="CPM points (1/8-8 FP/scan)")
    ax.set_xscale("log")
    ax.set_xlim(1e-2, max(16.0, float(np.nanmax(fps)) if len(fps) else 16.0))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positives per scan")
    ax.set_ylabel("sensitivity")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"{title}\nCPM {figures['cpm']:.3f}, sensitivity {figures['sensitivity']:.3f}", fontsize=9)
    if ax.get_legend_handles_labels()[0]:  # no curve (no reference objects): no legend
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)
