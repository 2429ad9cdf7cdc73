# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The detections table, the one output contract of every detector (``docs/outputs.md``).

``detections.csv``: one row per detected object with ``subject, lesion_id, label, score, x, y, z, i, j, k,
diameter_mm, volume_mm3`` and then ``p_<class>`` per class where the detector classifies. ``x, y, z`` are world
RAS millimetres from the input NIfTI's affine; ``i, j, k`` voxel indices in the input image.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Sequence

import ignite.distributed as idist
import numpy as np
from monai.data.utils import affine_to_spacing
from nibabel.affines import apply_affine

from ..data.io import atomic_path
from ..metrics.objects import Objects

__all__ = [
    "input_grid",
    "input_grid_rows",
    "to_grid",
    "to_input_grid",
    "print_summary",
    "COLUMNS",
    "TABLE_COLUMNS",
    "DetectionTableError",
    "detection_rows",
    "objects_from_detector_table",
    "read_detections",
    "subject_of",
    "write_detections",
]

COLUMNS = ("subject", "lesion_id", "label", "score", "x", "y", "z", "i", "j", "k", "diameter_mm", "volume_mm3")
#: columns of the (N, 6) candidate table a point detector returns
#: (e.g. :class:`bundle.methods.twostage.TwoStageCMBDetector`)
TABLE_COLUMNS = ("i", "j", "k", "score", "stage1_score", "size_voxels")
_NUMERIC = ("score", "x", "y", "z", "i", "j", "k", "diameter_mm", "volume_mm3")


class DetectionTableError(ValueError):
    """A detections table is malformed; the message names the file, the row and the column."""


def detection_rows(
    subject: str,
    objects: Objects,
    affine: np.ndarray,
    class_probs: np.ndarray | None = None,
    classes: Sequence[str] = (),
) -> list[dict]:
    """Rows of one subject from objects found on the input image's grid.

    Args:
        subject: the datalist entry's ``subject``.
        objects: detections with centres in voxel coordinates of the input image.
        affine: 4x4 voxel-to-world (RAS mm) matrix of the input image.
        class_probs: optional (N, n_classes) probabilities, written as ``p_<class>`` columns.
        classes: class names of ``class_probs``' columns.
    """
    affine = np.asarray(affine, float)
    world = apply_affine(affine, np.asarray(objects.centres, float).reshape(-1, 3))
    volume = objects.sizes * float(np.prod(objects.spacing))
    rows = []
    for n in range(len(objects)):
        row = {
            "subject": subject,
            "lesion_id": n + 1,
            "label": str(objects.labels[n]) if objects.labels[n] else "",
            "score": float(objects.scores[n]),
            **{ax: round(float(v), 3) for ax, v in zip("xyz", world[n])},
            **{ax: round(float(v), 3) for ax, v in zip("ijk", objects.centres[n])},
            "diameter_mm": round(float(objects.diameters_mm[n]), 3),
            "volume_mm3": round(float(volume[n]), 3),
        }
        if class_probs is not None:
            row.update({f"p_{c}": round(float(p), 6) for c, p in zip(classes, class_probs[n])})
        rows.append(row)
    return rows


def objects_from_detector_table(
    table, spacing, score_column: int = 3, label: str = "", min_score: float | None = None
) -> Objects:
    """Objects of a detector's (N, 6) table (:data:`TABLE_COLUMNS`; NaN rows are batch padding and are dropped).

    Args:
        table: array or tensor; voxel centres in columns 0-2, sizes in column 5.
        spacing: voxel size (mm) of the input grid.
        score_column: column used as the score (3: the detector's score, 4: its stage-1 score).
        label: class name of every object.
        min_score: keep rows with ``score >= min_score`` only.
    """
    t = table.detach().float().cpu().numpy() if hasattr(table, "detach") else np.asarray(table, float)
    t = t.reshape(-1, len(TABLE_COLUMNS))
    score = t[:, score_column]
    keep = np.isfinite(score) & (score >= (min_score if min_score is not None else -np.inf))
    t = t[keep]
    return Objects(
        t[:, :3], t[:, 5], t[:, score_column], np.full(len(t), label, object), None, np.asarray(spacing, float)
    )


def subject_of(item: dict) -> str:
    """The subject id of a batch item: its ``subject``, else its image's file name."""
    meta = getattr(item["image"], "meta", {})
    return str(item.get("subject", Path(str(meta.get("filename_or_obj", "image"))).name))


def write_detections(
    rows: list[dict], path: str | os.PathLike, classes: Sequence[str] = (), extra: Sequence[str] = ()
) -> Path:
    """Write rows atomically with the contract's column order (an empty table keeps its header); ``p_<class>``
    columns per class and then the ``extra`` columns follow."""
    fields = [*COLUMNS, *(f"p_{c}" for c in classes), *extra]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())
    return Path(path)


def read_detections(path: str | os.PathLike) -> dict[str, list[dict]]:
    """Rows grouped by subject, numeric columns as floats.

    Raises:
        FileNotFoundError: no such file.
        DetectionTableError: missing columns or a non-numeric value (names the file, row and column).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"detections table {path} does not exist")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("subject", "score", "i", "j", "k") if c not in (reader.fieldnames or [])]
        if missing:
            raise DetectionTableError(f"{path} lacks the columns {missing} (header: {reader.fieldnames})")
        out: dict[str, list[dict]] = {}
        for n, row in enumerate(reader, start=2):
            for col in _NUMERIC:
                if col in row and row[col] not in ("", None):
                    try:
                        row[col] = float(row[col])
                    except ValueError:
                        raise DetectionTableError(f"{path} line {n}: column {col} is not a number: {row[col]!r}")
            out.setdefault(row["subject"], []).append(row)
    return out


def print_summary(output_dir: str | os.PathLike, max_rows: int = 50) -> str:
    """Print (and return) a run's counts per subject and its detections (up to ``max_rows``, best first), with
    the paths of the written files: what a user reads in the console after the main job (rank 0 only, in a
    ``torch.distributed`` group)."""
    if idist.get_rank() != 0:
        return ""
    out = Path(output_dir)
    lines = [f"detections: {out / 'detections.csv'}"]
    counts_path = out / "counts.csv"
    if counts_path.is_file():
        with open(counts_path, newline="") as f:
            counts = list(csv.reader(f))
        lines.append("counts per subject (counts.csv):")
        lines += ["  " + "  ".join(f"{c:>10}" for c in row) for row in counts]
    rows = [r for rs in read_detections(out / "detections.csv").values() for r in rs]
    rows.sort(key=lambda r: -r["score"])
    lines.append(f"{len(rows)} detection(s){f', best {max_rows} shown' if len(rows) > max_rows else ''}:")
    if rows:
        lines.append(f"  {'subject':>12} {'id':>4} {'label':>7} {'score':>6} {'x':>8} {'y':>8} {'z':>8} {'diam_mm':>8}")
    for r in rows[:max_rows]:
        lines.append(
            f"  {r['subject']:>12} {int(r['lesion_id']):>4} {r['label']:>7} {r['score']:6.3f} {r['x']:8.1f} "
            f"{r['y']:8.1f} {r['z']:8.1f} {r['diameter_mm']:8.2f}"
        )
    maps = out / "maps"
    if maps.is_dir():
        lines.append(f"maps (input grid): {maps}")
    report = out / "report" / "index.html"
    if report.is_file():
        lines.append(f"QC report: {report}")
    text = "\n".join(lines)
    print(text)
    return text


def input_grid(image) -> tuple[np.ndarray, tuple[int, ...]]:
    """Affine and shape of the file ``image`` was read from (``original_affine`` and ``spatial_shape`` of MONAI's
    loader), or of ``image`` itself when they are absent; a preprocessing that resamples (``Spacingd`` to the
    working grid) changes ``image.affine`` but not these."""
    meta = getattr(image, "meta", {})
    affine = np.asarray(getattr(image, "affine", np.eye(4)), float)
    if "original_affine" not in meta or "spatial_shape" not in meta:
        return affine, tuple(int(s) for s in image.shape[-3:])
    shape = tuple(int(s) for s in np.asarray(meta["spatial_shape"]).reshape(-1)[:3])
    return np.asarray(meta["original_affine"], float).reshape(4, 4), shape


def to_grid(volume: np.ndarray, affine: np.ndarray, dst_affine: np.ndarray, dst_shape) -> np.ndarray:
    """``volume`` (H, W, D) on ``affine`` resampled (trilinear, zero outside) onto the grid ``dst_affine``,
    ``dst_shape``; returned unchanged when the grids are the same. Only the box of the destination that the
    volume's non-zero voxels (and one voxel around them) reach is interpolated: the rest is zero anyway."""
    dst_shape = tuple(int(s) for s in dst_shape)
    if tuple(volume.shape) == dst_shape and np.allclose(affine, dst_affine, atol=1e-4):
        return volume
    import torch
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    lo, hi = _reached_box(volume, affine, dst_affine, dst_shape)
    if np.any(hi <= lo):
        return np.zeros(dst_shape, np.float32)
    box = np.array(dst_affine, float)
    box[:3, 3] += box[:3, :3] @ lo
    src = MetaTensor(torch.as_tensor(volume, dtype=torch.float32)[None], affine=torch.as_tensor(affine))
    part = SpatialResample(mode="bilinear", padding_mode="zeros", dtype=torch.float32)(
        src, dst_affine=torch.as_tensor(box), spatial_size=tuple(int(n) for n in hi - lo)
    )
    part = np.asarray(part.detach().cpu())[0]
    if part.shape == dst_shape:  # the box is the whole grid (a brain that fills the field of view): no copy
        return part
    out = np.zeros(dst_shape, np.float32)
    out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = part
    return out


def _reached_box(volume: np.ndarray, affine, dst_affine, dst_shape) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``: the destination voxels (half-open box, clipped to ``dst_shape``) within one source voxel of
    ``volume``'s non-zero voxels; an empty box when there are none."""
    from itertools import product

    inside = np.asarray(volume) != 0  # one pass over the volume, then its projections
    plane = inside.any(axis=2)
    nz = [np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0)), np.flatnonzero(inside.any(axis=(0, 1)))]
    if any(len(n) == 0 for n in nz):
        return np.zeros(3, int), np.zeros(3, int)
    corners = np.array(list(product(*[(n[0] - 1, n[-1] + 1) for n in nz])), float)  # the box one voxel wider
    to_dst = np.linalg.inv(np.asarray(dst_affine, float)) @ np.asarray(affine, float)
    vox = corners @ to_dst[:3, :3].T + to_dst[:3, 3]
    lo = np.clip(np.floor(vox.min(0)).astype(int) - 1, 0, dst_shape)
    hi = np.clip(np.ceil(vox.max(0)).astype(int) + 2, 0, dst_shape)
    return lo, hi


def input_grid_rows(
    subject: str, table, image, label: str = "", score_column: int = 3, min_score: float | None = None
) -> tuple[list[dict], np.ndarray, tuple[int, ...]]:
    """Rows of a point detector's table computed on ``image``'s grid (e.g. the 1 mm working grid), reported on the
    grid of the file ``image`` was read from (:func:`input_grid`): ``i, j, k`` input voxels, ``x, y, z`` world mm.

    Returns ``(rows, input affine, input shape)``."""
    affine = np.asarray(image.affine, float)
    objs = objects_from_detector_table(table, affine_to_spacing(affine), score_column, label, min_score=min_score)
    in_affine, in_shape = to_input_grid(objs, image)
    return detection_rows(subject, objs, in_affine), in_affine, in_shape


def to_input_grid(objects: Objects, image) -> tuple[np.ndarray, tuple[int, ...]]:
    """Move ``objects``' centres (voxels of ``image``'s grid, e.g. the working grid) to voxels of the grid of the
    file ``image`` was read from (:func:`input_grid`), in place; sizes and spacing stay ``image``'s, so volumes in
    mm^3 are unchanged. Returns that grid's ``(affine, shape)``."""
    in_affine, in_shape = input_grid(image)
    move = np.linalg.inv(in_affine) @ np.asarray(image.affine, float)
    objects.centres = apply_affine(move, np.asarray(objects.centres, float).reshape(-1, 3))
    return in_affine, in_shape
