# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Summary of a cohort datalist: subjects per split, objects per class, sizes, rater agreement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["summarise", "format_summary"]

SPLITS = ("training", "validation", "testing")


def summarise(datalist: str | Path) -> dict:
    """Figures computed from the files a datalist points to (not from the simulator's memory)."""
    path = Path(datalist)
    data = json.loads(path.read_text())
    entries = [e for s in SPLITS for e in data.get(s, [])]
    records = []
    for e in entries:
        if "lesions" in e:
            records += json.loads((path.parent / e["lesions"]).read_text())
    out = {
        "datalist": str(path),
        "modalities": data.get("modalities"),
        "subjects": {s: len(data.get(s, [])) for s in SPLITS},
        "scans_without_objects": sum(e.get("count", 0) == 0 for e in entries),
        "classes": {},
    }
    for cls in data.get("classes", sorted({r["class"] for r in records})):
        recs = [r for r in records if r["class"] == cls]
        per_scan = [e.get("counts", {}).get(cls, 0) for e in entries]
        diam = [r["diameter_mm"] for r in recs]
        vox = [r["n_voxels"] for r in recs]
        out["classes"][cls] = {
            "objects": len(recs),
            "per_scan_mean": float(np.mean(per_scan)) if per_scan else 0.0,
            "per_scan_range": [int(min(per_scan)), int(max(per_scan))] if per_scan else [0, 0],
            "diameter_mm_range": [float(min(diam)), float(max(diam))] if diam else [],
            "voxels_median": float(np.median(vox)) if vox else 0.0,
            "under_10_voxels": float(np.mean(np.array(vox) < 10)) if vox else 0.0,
        }
    rated = [r for r in records if r["class"] in ("epvs", "lacune")]
    if rated:
        out["perfect_rater_agreement"] = float(np.mean([len(set(r["raters"])) == 1 for r in rated]))
    secs = [e["seconds"] for e in entries if "seconds" in e]
    if secs:
        out["seconds_per_subject"] = float(np.mean(secs))
    return out


def format_summary(s: dict) -> str:
    """Human-readable text of :func:`summarise`'s result."""
    lines = [
        f"datalist: {s['datalist']}",
        f"modalities: {', '.join(s['modalities'] or [])}",
        "subjects: " + ", ".join(f"{k} {v}" for k, v in s["subjects"].items()),
        f"scans without objects: {s['scans_without_objects']}",
    ]
    for cls, c in s["classes"].items():
        d = c["diameter_mm_range"]
        size = f"diameter {d[0]:.1f}-{d[1]:.1f} mm" if d else "no objects"
        lines.append(
            f"{cls}: {c['objects']} objects, {c['per_scan_mean']:.1f} per scan "
            f"(range {c['per_scan_range'][0]}-{c['per_scan_range'][1]}), {size}, "
            f"median {c['voxels_median']:.0f} voxels, {100 * c['under_10_voxels']:.0f}% under 10 voxels"
        )
    if "perfect_rater_agreement" in s:
        lines.append(f"perfect agreement of 6 raters: {100 * s['perfect_rater_agreement']:.1f}% of EPVS/lacunes")
    if "seconds_per_subject" in s:
        lines.append(f"simulation time: {s['seconds_per_subject']:.1f} s per subject")
    return "\n".join(lines)
