# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""PNG montage of simulated subjects: per modality, an axial slice through a labelled object and a zoom on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io import atomic_path

__all__ = ["montage"]


def _slice_through(label: np.ndarray, records: list[dict]) -> tuple[int, tuple[int, int] | None]:
    """Axial slice index through the largest object (its centre voxel), or the middle slice if there is none."""
    if not records:
        return label.shape[2] // 2, None
    rec = max(records, key=lambda r: r["n_voxels"])
    i, j, k = (int(round(c)) for c in rec["centre_voxel"])
    return int(np.clip(k, 0, label.shape[2] - 1)), (i, j)


def montage(datalist: str | Path, out_png: str | Path, max_subjects: int = 4, zoom_mm: float = 40.0) -> Path:
    """Draw up to ``max_subjects`` subjects of a simulator datalist into one PNG and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib

    root = Path(datalist).parent
    data = json.loads(Path(datalist).read_text())
    entries = [e for split in ("training", "validation", "testing") for e in data.get(split, [])][:max_subjects]
    mods = data["modalities"]
    fig, axes = plt.subplots(len(entries), 2 * len(mods), figsize=(3.2 * 2 * len(mods), 3.4 * len(entries)))
    axes = np.atleast_2d(axes)
    for row, entry in enumerate(entries):
        label = np.asarray(nib.load(str(root / entry["label"])).dataobj)
        records = json.loads((root / entry["lesions"]).read_text())
        k, centre = _slice_through(label, records)
        spacing = entry.get("spacing", [1.0, 1.0, 1.0])
        half = [int(zoom_mm / 2 / s) for s in spacing[:2]]
        for m, path in enumerate(entry["image"]):
            img = np.asarray(nib.load(str(root / path)).dataobj, dtype=np.float32)[:, :, k]
            vmax = np.percentile(img[img > 0], 99.5) if (img > 0).any() else 1.0
            for col, zoomed in ((2 * m, False), (2 * m + 1, True)):
                ax = axes[row, col]
                sl = (slice(None), slice(None))
                if zoomed and centre is not None:
                    sl = tuple(slice(max(c - h, 0), c + h) for c, h in zip(centre, half))
                aspect = spacing[1] / spacing[0]
                ax.imshow(img[sl].T, cmap="gray", origin="lower", vmin=0, vmax=vmax, aspect=aspect)
                lab = label[:, :, k][sl]
                if lab.any():
                    ax.contour((lab > 0).T.astype(float), levels=[0.5], colors="r", linewidths=0.6)
                ax.set_axis_off()
                title = f"{entry['subject']} {mods[m]}" + (" zoom" if zoomed else f" z={k}")
                ax.set_title(title, fontsize=8)
    fig.suptitle(
        f"{data.get('name', '')}: red = labelled objects; counts {[e.get('counts') for e in entries]}", fontsize=9
    )
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(out_png)
