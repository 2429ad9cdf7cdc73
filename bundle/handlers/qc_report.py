# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""QC report of a detection run: a PNG montage per subject with every detection circled and numbered, and an
``index.html`` that links the montages with the counts per class (``docs/outputs.md``).

The montage shows the input image as the user gave it (read from its file, on its own grid), so what is circled is
what the ``i, j, k`` columns of ``detections.csv`` point at. Each PNG records the subject and the ids it drew in its
text chunks (``Subject``, ``Detections``), so a script can check a report without looking at it.
"""

from __future__ import annotations

import csv
import html
import os
import re
from pathlib import Path
from typing import Sequence

import ignite.distributed as idist
import numpy as np
from ignite.engine import Engine, Events
from monai.data.utils import affine_to_spacing

from ..data.io import atomic_path, image_file
from ..inference.detections import read_detections, subject_of
from ..inference.isolation import FAILED
from ..inference.run_folder import SubjectRecords, read_failed

__all__ = ["QCReport", "choose_slices", "subject_montage", "write_index"]

COLOURS = ("#ff3030", "#30c0ff", "#ffd000", "#50ff50", "#ff60ff", "#ffffff")


def choose_slices(rows: Sequence[dict], half_thickness: int = 2, max_panels: int = 24) -> list[tuple[int, list[dict]]]:
    """Axial slices that show every detection: take the best-scored detection not shown yet, show its slice ``k``
    with every detection within ``half_thickness`` slices of it, repeat. Returns at most ``max_panels`` (slice,
    rows) pairs in slice order; detections left over are those that did not fit."""
    left = sorted(rows, key=lambda r: -float(r["score"]))
    panels = []
    while left and len(panels) < max_panels:
        k = int(round(float(left[0]["k"])))
        shown = [r for r in left if abs(float(r["k"]) - k) <= half_thickness]
        panels.append((k, shown))
        left = [r for r in left if abs(float(r["k"]) - k) > half_thickness]
    return sorted(panels, key=lambda p: p[0])


def _window(vol: np.ndarray) -> tuple[float, float]:
    nz = vol[np.isfinite(vol) & (vol != 0)]
    if not nz.size:
        return 0.0, 1.0
    lo, hi = np.percentile(nz, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _volume(image_path) -> tuple[np.ndarray, np.ndarray]:
    """The first 3D volume of a NIfTI file (float32) and its voxel sizes."""
    import nibabel as nib

    img = nib.load(str(image_path))
    vol = np.asarray(img.dataobj, dtype=np.float32)
    if vol.ndim == 4:
        vol = vol[..., 0]
    if vol.ndim != 3:
        raise ValueError(f"{image_path}: QC montage needs a 3D image, got shape {vol.shape}")
    return vol, np.asarray(affine_to_spacing(np.asarray(img.affine, float)), float)


def _circle(ax, row: dict, colour, pixel_mm: float) -> None:
    """Circle a detection (radius: its diameter plus a margin, at least 6 pixels) and write its ``lesion_id``."""
    from matplotlib.patches import Circle

    radius = max(float(row.get("diameter_mm") or 0.0) / pixel_mm + 4.0, 6.0)
    ax.add_patch(Circle((float(row["i"]), float(row["j"])), radius, fill=False, color=colour, linewidth=1.2))
    ax.text(float(row["i"]) + radius, float(row["j"]) + radius, str(int(row["lesion_id"])), color=colour, fontsize=8)


def _title(subject: str, rows, classes, not_shown: list, max_panels: int, outlines: dict | None) -> str:
    counts = {c: sum(str(r["label"]) == c for r in rows) for c in classes} if classes else {}
    title = f"{subject}: {len(rows)} detection(s)" + (
        " (" + ", ".join(f"{c} {n}" for c, n in counts.items()) + ")" if counts else ""
    )
    if not_shown:
        title += f"; {len(not_shown)} not shown (more than {max_panels} slices)"
    if outlines:
        title += "\n" + ", ".join(f"{c}: {name}" for name, (_, c) in outlines.items())
    return title


def _outline(ax, outlines: dict | None, shape: tuple, k: int) -> None:
    """Draw on slice ``k`` the border of every non-zero value of each outline volume on the image's grid."""
    for vol_o, c in (outlines or {}).values():
        if vol_o.shape == shape:
            for value in np.unique(vol_o[:, :, k])[1:]:
                ax.contour((vol_o[:, :, k] == value).T, levels=[0.5], colors=[c], linewidths=0.6, origin="lower")


def _plan(rows: Sequence[dict], max_panels: int) -> tuple[list, list[int], list[int]]:
    """A montage's panels (:func:`choose_slices`), the lesion ids they show and those they cannot."""
    panels = choose_slices(rows, max_panels=max_panels)
    shown_ids = sorted({int(r["lesion_id"]) for _, rs in panels for r in rs})
    return panels, shown_ids, sorted({int(r["lesion_id"]) for r in rows} - set(shown_ids))


def subject_montage(
    image_path: str | os.PathLike,
    rows: Sequence[dict],
    out_png: str | os.PathLike,
    subject: str,
    classes: Sequence[str] = (),
    max_panels: int = 24,
    columns: int = 4,
    outlines: dict | None = None,
) -> dict:
    """Draw ``subject``'s detections (rows of ``detections.csv``) on axial slices of its image and save a PNG.

    Each detection is circled (radius: its diameter plus a margin, at least 6 pixels) and numbered with its
    ``lesion_id`` on every panel within 2 slices of its centre; colours follow ``classes``. A subject without
    detections gets three slices (at 30, 50 and 70 % of the volume) titled "no detections". ``outlines``: name ->
    (volume on the image's grid, colour); the border of each of its non-zero values is drawn (e.g. the brain mask,
    the atlas's groups) and named under the title. Returns what was drawn: ``{"png", "drawn" (lesion ids),
    "not_shown" (ids beyond max_panels), "panels" (slice indices)}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vol, spacing = _volume(image_path)
    lo, hi = _window(vol)
    panels, shown_ids, not_shown = _plan(rows, max_panels)
    empty = not rows
    if empty:
        panels = [(int(round(f * (vol.shape[2] - 1))), []) for f in (0.3, 0.5, 0.7)]
    colour = {c: COLOURS[n % len(COLOURS)] for n, c in enumerate(classes)}
    ncol = min(columns, len(panels))
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.6 * nrow + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (k, rs) in zip(axes.ravel(), panels):
        k = int(np.clip(k, 0, vol.shape[2] - 1))
        ax.imshow(vol[:, :, k].T, cmap="gray", vmin=lo, vmax=hi, origin="lower", interpolation="nearest")
        ax.set_title("no detections" if empty else f"slice k={k}", fontsize=9)
        _outline(ax, outlines, vol.shape, k)
        for r in rs:
            _circle(ax, r, colour.get(str(r["label"]), COLOURS[0]), float(spacing[:2].min()))
    fig.suptitle(_title(subject, rows, classes, not_shown, max_panels, outlines), fontsize=11)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    meta = {"Subject": subject, "Detections": ",".join(map(str, shown_ids)), "Software": "brain_mri_eso_detection"}
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata=meta)
    plt.close(fig)
    return {"png": out_png, "drawn": shown_ids, "not_shown": not_shown, "panels": [k for k, _ in panels]}


def write_index(
    out_dir: str | os.PathLike,
    subjects: Sequence[dict],
    classes: Sequence[str],
    title: str = "ESO detections",
    failed: Sequence[tuple[str, str]] = (),
) -> Path:
    """``out_dir/index.html`` (atomically): one table row per subject with its counts per class, the total and its
    montage (a thumbnail linking to the PNG), then the subjects that ``failed`` with their reasons.
    ``subjects``: dicts with ``subject``, ``png`` (relative to ``out_dir``), ``counts`` ({class: n}),
    ``not_shown`` (ids) and ``flags`` (QC problems, one line each, shown in the row and counted above the table)."""
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in classes)
    body = []
    for s in subjects:
        cells = "".join(f"<td>{int(s['counts'].get(c, 0))}</td>" for c in classes)
        note = f"<br>{len(s['not_shown'])} detection(s) not shown" if s.get("not_shown") else ""
        flags = "".join(f"<br><b class='flag'>QC: {esc(f)}</b>" for f in s.get("flags", []))
        png = esc(str(s["png"]))
        body.append(
            f"<tr><td>{esc(s['subject'])}{flags}</td>{cells}<td>{sum(s['counts'].values())}</td>"
            f'<td><a href="{png}"><img src="{png}" width="480" alt="{esc(s["subject"])}"></a>{note}</td></tr>'
        )
    page = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{esc(title)}</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #999;padding:4px;vertical-align:top}"
        "table{border-collapse:collapse}</style></head><body>\n"
        f"<h1>{esc(title)}</h1>\n<p>{len(subjects)} subject(s), {sum(bool(s.get('flags')) for s in subjects)} "
        "flagged for QC. Tables: "
        '<a href="../detections.csv">detections.csv</a>, <a href="../counts.csv">counts.csv</a>. '
        "Circles: detections, numbered by <code>lesion_id</code>.</p>\n"
        f"<table><tr><th>subject</th>{head}<th>total</th><th>montage</th></tr>\n" + "\n".join(body) + "\n</table>"
        + _failed_section(failed) + "</body></html>\n"
    )
    path = Path(out_dir) / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page)
    return path


def _failed_section(failed: Sequence[tuple[str, str]]) -> str:
    if not failed:
        return ""
    items = "".join(f"<li><b>{html.escape(s)}</b>: {html.escape(r)}</li>" for s, r in failed)
    link = '<a href="../failed.csv">failed.csv</a>'
    return f"\n<h2>{len(failed)} subject(s) failed</h2>\n<p>({link})</p><ul>{items}</ul>\n"


#: the maps a montage outlines where the run wrote them: name -> (file suffix in maps/, colour)
OUTLINES = {"brain mask": ("brainmask", "green"), "atlas regions": ("regions", "orange")}


def _region_groups(codes: np.ndarray) -> np.ndarray:
    """The atlas's fine codes as its groups (1 lobar, 2 deep, 3 infratentorial), for outlines."""
    from ..data.atlas import FINE, GROUPS

    lut = np.zeros(256, np.uint8)
    for code, name in FINE.items():
        lut[code] = 1 + next(n for n, g in enumerate(GROUPS.values()) if name in g)
    return lut[codes]


def _drawn_since(png: Path, records, subject: str) -> bool:
    """Whether ``png`` was written after ``subject``'s record (so from the rows the record holds now)."""
    try:
        record = records.path(subject)
    except ValueError:  # a subject id that names no record file
        return False
    return png.is_file() and record.is_file() and png.stat().st_mtime_ns >= record.stat().st_mtime_ns


def qc_flags(record: dict) -> list[str]:
    """The QC problems of a subject's record (``subjects/<id>.json``), one line each: its images that do not
    overlap the first after alignment (:class:`bundle.handlers.AlignmentWriter`)."""
    return [f"{a['modality']} overlaps {a['onto']} by {float(a['overlap']):.2f} (head Dice) after alignment"
            for a in record.get("alignment", []) if a.get("flagged")]  # fmt: skip


class QCReport:
    """Ignite handler writing ``output_dir/report/<subject>.png`` per subject and ``output_dir/report/index.html``.

    It reads what the run wrote, not a writer's state: during the run it notes each subject's input image (the file
    in ``image.meta["filename_or_obj"]``); when the run completes it reads ``output_dir/detections.csv`` and
    ``counts.csv`` and draws each subject's detections on its image (unless its montage was drawn after its record
    was written: by a shard, or by the run this one resumes), then writes the index with the counts. Attach
    it after the table and counts writers (the configs list it after ``writer``), so that the tables exist.

    Args:
        output_dir: run folder (the report goes to ``output_dir/report``).
        classes: class names, for the counts and colours (default: the class columns of ``counts.csv``).
        max_panels: slices per montage at most.

    A config leaves it out with MONAI's ``_disabled_`` (the main job's ``--report false``).
    """

    def __init__(self, output_dir: str | os.PathLike, classes: Sequence[str] = (), max_panels: int = 24) -> None:
        self.run_dir, self.dir = Path(output_dir), Path(output_dir) / "report"
        self.classes, self.max_panels = tuple(classes), int(max_panels)
        self.images: dict[str, str] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._report)

    def _reset(self, engine: Engine) -> None:
        self.images = {}

    def __call__(self, engine: Engine) -> None:
        for batch in engine.state.batch:
            if FAILED in batch or batch.get("image") is None:  # failed (listed from failed.csv) or skipped
                continue
            self.images[subject_of(batch)] = image_file(batch["image"])

    def _outlines(self, subject: str) -> dict:
        """The run's brain mask and atlas-region maps of ``subject`` (``maps/``), where it wrote them."""
        import nibabel as nib

        out = {}
        for name, (suffix, colour) in OUTLINES.items():
            path = self.run_dir / "maps" / f"{subject}_{suffix}.nii.gz"
            if path.is_file():
                vol = np.asarray(nib.load(str(path)).dataobj).astype(np.uint8)
                out[name] = (_region_groups(vol) if suffix == "regions" else vol, colour)
        return out

    def _report(self, engine: Engine) -> None:
        if idist.get_rank() != 0:  # rank 0 reports the whole run (bundle.handlers.Writers merged it)
            return
        rows = read_detections(self.run_dir / "detections.csv")
        with open(self.run_dir / "counts.csv", newline="") as f:
            counted = list(csv.reader(f))
        classes = self.classes or tuple(c for c in counted[0] if c not in ("subject", "total"))
        records = SubjectRecords(self.run_dir)
        subjects = []
        for subject in (line[0] for line in counted[1:]):  # every subject written, by this process or another
            record = records.load(subject) or {}
            image = self.images.get(subject) or record.get("image")
            if not image:
                continue
            own = rows.get(subject, [])
            png = self.dir / (re.sub(r"[^A-Za-z0-9._-]", "_", subject) + ".png")
            if _drawn_since(png, records, subject):  # e.g. by a shard, or the run this one resumes
                _, shown, hidden = _plan(own, self.max_panels)
                drawn = {"png": png, "drawn": shown, "not_shown": hidden}
            else:
                drawn = subject_montage(image, own, png, subject, classes, self.max_panels,
                                        outlines=self._outlines(subject))  # fmt: skip
            counts = {c: sum(str(r["label"]) == c for r in own) for c in classes}
            flags = qc_flags(record)
            subjects.append({**drawn, "subject": subject, "png": png.name, "counts": counts, "flags": flags})
        write_index(self.dir, subjects, classes, failed=read_failed(self.run_dir))
