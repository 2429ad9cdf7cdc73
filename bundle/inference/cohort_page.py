# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The cohort page of a main-job folder, ``DIR/index.html`` (docs/outputs.md#every-marker-of-a-cohort).

It reads only what the run wrote (``counts.csv``, ``plan.csv``, ``failed.csv``, the ``alignment.csv`` of each
detector) and shows: the distribution of the counts per class and region (a table and ``report/cohort_counts.png``),
the subjects flagged for QC (images that do not overlap, counts far above the cohort's, failures), and one row per
subject with what ran, its counts and grades, and links to its QC montages.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import numpy as np

from ..data.io import atomic_path
from .run_folder import _rows

__all__ = ["extreme_counts", "write_cohort_page"]

CLASSES = ("cmb", "epvs", "lacune")
PARTS = ("", "structural")  # the folders whose alignment.csv and report/ the page reads


def extreme_counts(values: dict[str, int], factor: float = 5.0, least: int = 10) -> list[str]:
    """Subjects whose count is at least ``least`` and above the cohort's median by more than ``factor`` times its
    median absolute deviation (at least 1)."""
    if len(values) < 3:
        return []
    v = np.array(list(values.values()), float)
    med = float(np.median(v))
    mad = max(float(np.median(np.abs(v - med))), 1.0)
    return [s for s, n in values.items() if n >= least and n > med + factor * mad]


def _flags(out: Path, counts: list[dict], classes: list[str]) -> dict[str, list[str]]:
    flags: dict[str, list[str]] = {}
    for part in PARTS:
        for r in _rows(out / part / "alignment.csv"):
            if r.get("flagged") == "True":
                flags.setdefault(r["subject"], []).append(
                    f"{r['modality']} overlaps {r['onto']} by {float(r['overlap']):.2f} after alignment")
    for c in classes:
        values = {r["subject"]: int(r[c]) for r in counts if r.get(c, "") != ""}
        for s in extreme_counts(values):
            flags.setdefault(s, []).append(f"{values[s]} {c}: far above the cohort's counts")
    for r in _rows(out / "failed.csv"):
        flags.setdefault(r["subject"], []).append(f"failed: {r['reason']}")
    return flags


def _distribution_png(out: Path, counts: list[dict], classes: list[str]) -> str | None:
    if not counts or not classes:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(classes), figsize=(3.6 * len(classes), 3.0), squeeze=False)
    for ax, c in zip(axes[0], classes):
        v = [int(r[c]) for r in counts if r.get(c, "") != ""]
        ax.hist(v, bins=max(1, min(20, len(set(v)))), color="#4070c0")
        ax.set_title(f"{c} per subject (n={len(v)})", fontsize=9)
        ax.set_xlabel("count")
    fig.tight_layout()
    path = out / "report" / "cohort_counts.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return "report/cohort_counts.png"


def _stats_table(counts: list[dict], columns: list[str]) -> str:
    lines = ["<table><tr><th>count</th><th>subjects</th><th>mean</th><th>median</th><th>max</th></tr>"]
    for col in columns:
        v = np.array([float(r[col]) for r in counts if r.get(col, "") != ""])
        if v.size:
            lines.append(f"<tr><td>{html.escape(col)}</td><td>{v.size}</td><td>{v.mean():.1f}</td>"
                         f"<td>{np.median(v):g}</td><td>{v.max():g}</td></tr>")  # fmt: skip
    return "\n".join(lines) + "</table>"


def write_cohort_page(output_dir: str | os.PathLike, title: str = "ESO cohort") -> Path | None:
    """Write ``output_dir/index.html`` (atomically) from the folder's merged tables; returns its path (None on the
    ranks other than 0 of a ``torch.distributed`` group)."""
    import ignite.distributed as idist

    if idist.get_rank() != 0:
        return None
    esc = html.escape
    out = Path(output_dir)
    counts = _rows(out / "counts.csv")
    header = list(counts[0]) if counts else []
    classes = [c for c in CLASSES if c in header]
    columns = [h for h in header if h not in ("subject", "total") and not h.endswith("_grade")]
    grades = [h for h in header if h.endswith("_grade")]
    ran: dict[str, list[str]] = {}
    plan = _rows(out / "plan.csv")
    for r in plan:
        ran.setdefault(r["subject"], []).append(f"{r['detector']}: {'yes' if r['run'] == 'yes' else 'no'} ({r['why']})")
    flags = _flags(out, counts, classes)
    written = {r["subject"] for r in counts}
    for s in dict.fromkeys(r["subject"] for r in plan):  # a subject no detector could run on is listed too
        if s not in written and not any(r["subject"] == s and r["run"] == "yes" for r in plan):
            flags.setdefault(s, []).append("no detector ran: " + "; ".join(r["why"] for r in plan if r["subject"] == s))
    png = _distribution_png(out, counts, classes)
    body = []
    for r in counts:
        s = r["subject"]
        name = re.sub(r"[^A-Za-z0-9._-]", "_", s) + ".png"
        links = [f'<a href="{p}report/{esc(name)}">{esc(p.rstrip("/") or "cmb")} montage</a>'
                 for p in ("", "structural/") if (out / p / "report" / name).is_file()]  # fmt: skip
        cells = "".join(f"<td>{esc(r.get(c, ''))}</td>" for c in (*classes, *grades))
        note = "".join(f"<br><b class='flag'>QC: {esc(f)}</b>" for f in flags.get(s, []))
        body.append(f"<tr><td>{esc(s)}{note}</td><td>{'<br>'.join(esc(x) for x in ran.get(s, []))}</td>{cells}"
                    f"<td>{' '.join(links)}</td></tr>")  # fmt: skip
    failed_only = [s for s in flags if s not in {r["subject"] for r in counts}]
    page = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{esc(title)}</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #999;padding:4px;vertical-align:top}"
        "table{border-collapse:collapse}.flag{color:#b00000}</style></head><body>\n"
        f"<h1>{esc(title)}</h1>\n<p>{len(counts)} subject(s) written, {len(flags)} flagged for QC. Tables: "
        '<a href="detections.csv">detections.csv</a>, <a href="counts.csv">counts.csv</a>, '
        '<a href="plan.csv">plan.csv</a>, <a href="failed.csv">failed.csv</a>.</p>\n'
        "<h2>Counts per class and region</h2>\n" + _stats_table(counts, columns)
        + (f'\n<p><img src="{png}" alt="counts per subject"></p>' if png else "")
        + "\n<h2>Subjects</h2>\n<table><tr><th>subject</th><th>detectors</th>"
        + "".join(f"<th>{esc(c)}</th>" for c in (*classes, *grades)) + "<th>QC montages</th></tr>\n"
        + "\n".join(body) + "\n</table>\n"
        + "".join(f"<p><b>{esc(s)}</b>: {'; '.join(esc(f) for f in flags[s])}</p>\n" for s in failed_only)
        + "</body></html>\n"
    )
    path = out / "index.html"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page)
    return path
