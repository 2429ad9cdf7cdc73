# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""What would removing one kind of false positive buy? An oracle on the generalisation benchmark's tables.

    python tests/benchmarks/cmb_fp_oracle.py --val /work/bench6/val_datalist_h48.json \
        /work/bench7/eval_validation_c/detections.csv \
        --test /work/bench7/test_datalist.json /work/bench7/eval_testing_c/detections.csv [--test ...]

Every row of the tables (every candidate kept, as ``bench_cmb_generalisation.py`` writes them) is a hit or a false
positive of a kind (``bench_cmb_generalisation._kind``: unlabelled microbleed visible under 2 mm, vein,
calcification, other). For each set of kinds removed, as a perfect filter would (e.g. a phase image against
calcifications), the threshold is chosen again by the benchmark's rule on the validation scans (lowest score with
at most ``--max_val_fp`` remaining FPs per scan), and the held-out settings of each test series are scored at it:
sensitivity, FP per scan, microbleeds under 3 mm found, FPs on the scans without microbleeds. Not part of the suite.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cmb_generalisation as bench  # noqa: E402

MIN_SCORE = 0.1  # FPs scoring less are not attributed to a kind (never removed; every threshold here is higher)
REMOVED = ((), ("calcification",), ("subvisible_cmb",), ("calcification", "subvisible_cmb"))


def rows_of(datalist: Path, detections: Path, held_out_only: bool) -> tuple[list[tuple], list[tuple]]:
    """(score, kind, matched diameter mm, scan index) per row, and (references, under 3 mm) per scan."""
    from bundle.evaluation.evaluate import _reference
    from bundle.metrics import evaluate_scan, objects_from_table

    table = bench._table(detections)
    rows, scans = [], []
    for e in json.loads(datalist.read_text())["testing"]:
        if held_out_only and e["subject"].startswith(("in_distribution", "oldsim")):
            continue
        ref = _reference(e)[0]
        det = table.get(e["subject"], [])
        mimics = json.loads(Path(e["mimics"]).read_text()) if e.get("mimics") else []
        match = evaluate_scan(ref, objects_from_table(det, ref.spacing), "distance_mm")["match"]
        for r, m in zip(det, match):
            p = np.array([float(r["x"]), float(r["y"]), float(r["z"])])
            kind = "hit" if m >= 0 else bench._kind(p, mimics) if float(r["score"]) >= MIN_SCORE else "below_0.1"
            rows.append((float(r["score"]), kind, float(ref.diameters_mm[m]) if m >= 0 else 0.0, len(scans)))
        scans.append((len(ref), int((ref.diameters_mm < 3).sum())))
    return rows, scans


def threshold(rows: list[tuple], n_scans: int, removed: tuple, max_fp: float) -> float:
    scores = np.array([r[0] for r in rows])
    fp = np.array([r[1] not in ("hit", *removed) for r in rows])
    return float(min(t for t in np.unique(scores) if (fp & (scores >= t)).sum() / n_scans <= max_fp))


def at(rows: list[tuple], scans: list[tuple], removed: tuple, thr: float) -> dict:
    kept = [r for r in rows if r[0] >= thr and r[1] not in removed]
    hits = [r for r in kept if r[1] == "hit"]
    empty = [k for k, s in enumerate(scans) if s[0] == 0]
    fp_empty = [sum(1 for r in kept if r[3] == k and r[1] != "hit") for k in empty]
    return {
        "sensitivity": round(len(hits) / max(sum(s[0] for s in scans), 1), 3),
        "fp_per_scan": round((len(kept) - len(hits)) / len(scans), 2),
        "under_3mm": f"{sum(1 for r in hits if r[2] < 3)}/{sum(s[1] for s in scans)}",
        "fp_without_cmb": f"{sum(fp_empty)} on {len(empty)} scans, at most {max(fp_empty, default=0)}",
        "fp_kinds": dict(Counter(r[1] for r in kept if r[1] != "hit")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", nargs=2, type=Path, required=True, metavar=("DATALIST", "DETECTIONS"))
    ap.add_argument("--test", nargs=2, type=Path, action="append", required=True, metavar=("DATALIST", "DETECTIONS"))
    ap.add_argument("--max_val_fp", type=float, default=0.5)
    args = ap.parse_args()
    val_rows, val_scans = rows_of(*args.val, held_out_only=False)
    tests = [(dl, *rows_of(dl, det, held_out_only=True)) for dl, det in args.test]
    result = []
    for removed in REMOVED:
        thr = threshold(val_rows, len(val_scans), removed, args.max_val_fp)
        result.append({"removed": list(removed), "threshold": round(thr, 3),
                       "held_out": {str(dl): at(rows, scans, removed, thr) for dl, rows, scans in tests}})  # fmt: skip
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
