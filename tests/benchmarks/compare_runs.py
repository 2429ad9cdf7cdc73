# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Two main-job runs on the same cohort side by side: paired detections and hits against the simulator's truth.

Made for a preprocessing change that must leave detections unchanged (e.g. N4's convergence, docs/benchmarks.md).
Cohort subject n (sorted) is the simulator's subject n of ``--source`` (as ``bench_cohort.py`` builds it). A
detection is paired with the other run's nearest same-class detection within ``--pair_mm``; it hits a truth object
of its class whose centre lies within ``--hit_mm`` (each object counted once)::

    python tests/benchmarks/compare_runs.py OLD_RUN NEW_RUN --source /work/bench_cohort/source
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def _detections(run: Path) -> dict:
    out = defaultdict(list)
    with open(run / "detections.csv", newline="") as f:
        for r in csv.DictReader(f):
            out[(r["subject"], r["label"])].append((float(r["x"]), float(r["y"]), float(r["z"]), float(r["score"])))
    return out


def _truth(source: Path, subjects: list[str]) -> dict:
    entries = json.loads((source / "datalist.json").read_text())
    entries = [e for split in ("training", "validation", "testing") for e in entries[split]]
    out = defaultdict(list)
    for sub, e in zip(subjects, entries):
        for obj in json.loads((source / e["lesions"]).read_text()):
            out[(sub, obj["class"])].append(obj["centre_mm"])
    return out


def _pairs(a: list, b: list, mm: float) -> tuple[int, list[float]]:
    """Greedy nearest pairs of a and b within mm: count and |score difference| of each pair."""
    if not a or not b:
        return 0, []
    pa, pb = np.array(a), np.array(b)
    dist = np.linalg.norm(pa[:, None, :3] - pb[None, :, :3], axis=-1)
    used_a, used_b, diffs = set(), set(), []
    for i, j in sorted(np.argwhere(dist <= mm).tolist(), key=lambda ij: dist[ij[0], ij[1]]):
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            diffs.append(abs(pa[i, 3] - pb[j, 3]))
    return len(diffs), diffs


def _hits(dets: list, objects: list, mm: float) -> tuple[int, int]:
    """Truth objects found and detections that found none."""
    if not dets:
        return 0, 0
    d = np.array(dets)[:, :3]
    if not objects:
        return 0, len(d)
    dist = np.linalg.norm(d[:, None] - np.array(objects)[None], axis=-1)
    return int((dist.min(0) <= mm).sum()), int((dist.min(1) > mm).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--source", required=True, help="the simulator's cohort folder (datalist.json, lesions)")
    ap.add_argument("--pair_mm", type=float, default=2.0)
    ap.add_argument("--hit_mm", type=float, default=4.0)
    args = ap.parse_args()
    old, new = _detections(Path(args.old)), _detections(Path(args.new))
    subjects = sorted({k[0] for k in old} | {k[0] for k in new})
    truth = _truth(Path(args.source), subjects)
    for label in ("cmb", "epvs", "lacune"):
        keys = [k for k in set(old) | set(new) if k[1] == label]
        n_old, n_new = sum(len(old[k]) for k in keys), sum(len(new[k]) for k in keys)
        paired, diffs = 0, []
        for k in keys:
            p, d = _pairs(old[k], new[k], args.pair_mm)
            paired, diffs = paired + p, diffs + d
        objects = sum(len(truth[k]) for k in keys)
        hit = {name: np.sum([_hits(run[k], truth[k], args.hit_mm) for k in keys], axis=0) for name, run in
               (("old", old), ("new", new))}  # fmt: skip
        score = f"median |score diff| {np.median(diffs):.4f}, max {max(diffs):.4f}" if diffs else "no pairs"
        print(f"{label}: old {n_old}, new {n_new}, paired {paired} ({score}); truth {objects} in the run subjects: "
              f"found old {hit['old'][0]} new {hit['new'][0]}, unmatched detections old {hit['old'][1]} "
              f"new {hit['new'][1]}")  # fmt: skip


if __name__ == "__main__":
    main()
