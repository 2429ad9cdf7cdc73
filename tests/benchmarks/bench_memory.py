# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Peak resident memory of the main job over cohorts of 1, 8 and 32 subjects (issue 19; not a test).

    python tests/benchmarks/bench_memory.py --out /tmp/bench_memory [--sizes 1,8,32]

The cohorts are copies of the two demo scans under other names (the same input size per subject, so memory
should not grow with the number of subjects). Each cohort runs as its own ``python -m monai.bundle run`` process;
its peak RSS comes from ``resource.getrusage(RUSAGE_CHILDREN)`` of a one-run wrapper. Prints and writes
``--out/memory.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WRAP = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
)


def cohort(out: Path, n: int) -> Path:
    from bundle.data.synth import demo_input

    demo = out / "demo"
    if not demo.is_dir():
        demo_input(demo)
    scans = sorted(demo.rglob("*_swi.nii.gz"))
    folder = out / f"cohort_{n}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(n):
        shutil.copy(scans[i % len(scans)], folder / f"s{i:03d}.nii.gz")
    return folder


def run(folder: Path, out_dir: Path) -> tuple[float, float]:
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [sys.executable, "-c", WRAP, sys.executable, "-m", "monai.bundle", "run", "--config_file",
           "configs/inference.yaml", "--datalist", str(folder), "--output_dir", str(out_dir), "--report", "false",
           "--progress", "false"]  # fmt: skip
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-2000:])
    return float(res.stdout.strip().splitlines()[-1]) / 1024.0, time.perf_counter() - t0  # ru_maxrss: KiB


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--sizes", default="1,8,32")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    for n in (int(s) for s in args.sizes.split(",")):
        peak, seconds = run(cohort(out, n), out / f"run_{n}")
        figures[n] = {"peak_rss_mib": round(peak, 1), "seconds": round(seconds, 1)}
        print(f"{n:3d} subjects: peak RSS {peak:7.1f} MiB, {seconds:6.1f} s", flush=True)
    (out / "memory.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
