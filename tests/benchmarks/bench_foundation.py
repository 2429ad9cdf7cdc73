# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Benchmark of the foundation (not part of the test suite): simulator speed and statistics, loading, preprocessing.

    python tests/benchmarks/bench_foundation.py [--out /tmp/eso_bench] [--n 6]

Prints one line per figure; docs/benchmarks.md quotes its output.
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import time
from pathlib import Path

import torch

from bundle.data import LoadSubjectd, load_datalist
from bundle.data.synth import generate_cohort, generate_subject, summarise
from bundle.transforms import HistogramPeakNormalize, N4BiasFieldCorrection, WhiteMatterZScore


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/eso_bench")
    parser.add_argument("--n", type=int, default=6, help="subjects per task for the statistics")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")

    _, cold = _timed(generate_subject, "cmb", 0, out / "cold", seed=100)
    print(f"simulator, first 1 mm subject in a fresh process (template load included): {cold:.1f} s")
    for task in ("cmb", "epvs_lacune"):
        datalist, total = _timed(generate_cohort, task, args.n, out / task, seed=1, progress=False)
        s = summarise(datalist)
        print(
            f"simulator, {task}, 1 mm, {args.n} subjects: {total / args.n:.1f} s per subject "
            f"({len(s['modalities'])} modalities)"
        )
        for cls, c in s["classes"].items():
            print(
                f"  {cls}: {c['per_scan_mean']:.1f} per scan (range {c['per_scan_range']}), diameter "
                f"{c['diameter_mm_range']} mm, median {c['voxels_median']:.0f} voxels, "
                f"{100 * c['under_10_voxels']:.0f}% under 10 voxels"
            )
        if "perfect_rater_agreement" in s:
            print(f"  perfect agreement of 6 raters: {100 * s['perfect_rater_agreement']:.1f}%")
        print(f"  scans without objects: {s['scans_without_objects']} of {args.n}")
    entry, t = _timed(generate_subject, "cmb", 0, out / "aniso", seed=1, spacing=(0.5, 0.5, 2.0))
    print(f"simulator, cmb, 0.5 x 0.5 x 2 mm grid: {t:.1f} s per subject")

    entries = load_datalist(out / "epvs_lacune" / "datalist.json", "training")
    d, t = _timed(LoadSubjectd(), entries[0])
    print(f"LoadSubjectd (3 modalities + label + masks + records, all checks), 1 mm: {t:.2f} s")
    img = d["image"][:1]
    _, t = _timed(N4BiasFieldCorrection(), img, d["mask"])
    print(f"N4BiasFieldCorrection (defaults: shrink 4, 50/50/30 iterations), one 1 mm channel: {t:.1f} s")
    _, t = _timed(HistogramPeakNormalize(), img, d["mask"])
    print(f"HistogramPeakNormalize, one 1 mm channel: {t:.2f} s")
    _, t = _timed(WhiteMatterZScore(), d["image"], None, d["mask"])
    print(f"WhiteMatterZScore (WM estimated by k-means), 3 channels 1 mm: {t:.2f} s")
    print(f"peak memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
