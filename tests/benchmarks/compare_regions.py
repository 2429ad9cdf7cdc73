# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The regions of two main-job runs on one simulated cohort against the regions the simulator drew its objects in
(docs/regions.md#atlas-regions), and how much of each brain mask the registered atlas covers.

Made for a change in how the regions are found (e.g. one registration per subject). A detection within
``--hit_mm`` of a simulated object of its class takes that object's drawn region as truth (microbleeds: lobar, or
deep for the basal ganglia and thalamus; lacunes: deep; EPVS: their rating region); detections of objects drawn
elsewhere are not counted. Coverage: the share of the given brain mask where ``maps/<subject>_regions.nii.gz`` (the
microbleed detector's, on the SWI grid) and ``structural/maps/<subject>_regions.nii.gz`` have a region::

    python tests/benchmarks/compare_regions.py OLD_RUN NEW_RUN --input COHORT/input.json
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np

DRAWN = {"cmb": {"lobar": "lobar", "basal_ganglia": "deep", "thalamus": "deep"},
         "lacune": {"basal_ganglia": "deep", "thalamus": "deep", "centrum_semiovale": "deep"},
         "epvs": {"basal_ganglia": "basal_ganglia", "centrum_semiovale": "centrum_semiovale"}}  # fmt: skip


def agreement(run: Path, entries: list[dict], root: Path, hit_mm: float) -> dict:
    """Per class [detections whose region is the drawn one, detections of a drawn object]."""
    with open(run / "detections.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out = {c: [0, 0] for c in DRAWN}
    for e in entries:
        objects = json.loads((root / e["lesions"]).read_text())
        for r in (r for r in rows if r["subject"] == e["subject"] and r["label"] in DRAWN):
            mine = [o for o in objects if o["class"] == r["label"]]
            if not mine:
                continue
            d = np.linalg.norm(np.array([o["centre_mm"] for o in mine]) - [float(r[a]) for a in "xyz"], axis=1)
            want = DRAWN[r["label"]].get(mine[int(d.argmin())]["region"])
            if d.min() <= hit_mm and want is not None:
                out[r["label"]][0] += int(r["region"] == want)
                out[r["label"]][1] += 1
    return out


def coverage(run: Path, entries: list[dict], root: Path, folder: str) -> list[float]:
    """Per subject: the share of its given brain mask inside the atlas's regions of ``run/folder/maps`` (none when
    that detector did not run)."""
    out = []
    for e in entries if (run / folder / "maps").is_dir() else []:
        given = np.asarray(nib.load(str(root / e["mask"])).dataobj) > 0
        regions = np.asarray(nib.load(str(run / folder / "maps" / f"{e['subject']}_regions.nii.gz")).dataobj)
        out.append(float(np.mean(regions[given] > 0)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--input", required=True, help="the cohort's datalist (its testing entries, lesions, masks)")
    ap.add_argument("--hit_mm", type=float, default=5.0)
    args = ap.parse_args()
    path = Path(args.input)
    entries, root = json.loads(path.read_text())["testing"], path.parent
    print("| run | " + " | ".join(f"{c}: region as drawn" for c in DRAWN) + " | atlas coverage of the brain mask, "
          "microbleed detector (min-max) | EPVS and lacune detector |")
    print("|---|" + "---|" * (len(DRAWN) + 2))
    for run in map(Path, args.runs):
        agree = agreement(run, entries, root, args.hit_mm)
        cells = [f"{100 * a / n:.1f} % ({a}/{n})" if n else "-" for a, n in agree.values()]
        cov = [coverage(run, entries, root, f) for f in (".", "structural")]
        cells += [f"{np.mean(c):.3f} ({min(c):.3f}-{max(c):.3f})" if c else "-" for c in cov]
        print(f"| {run} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
