# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Throughput of the main job on a cohort per number of preprocessing workers or of processes
(docs/benchmarks.md#a-cohort-on-both-cores).

Simulates ``--n`` subjects with every marker and modality (the demo's simulator, 1 mm, brain masks given), then
runs the main job (``configs/inference.yaml``, shipped weights, both detectors, B-spline regions) on them once per
value of ``--workers`` (``--inference_workers``), each as its own process, then once per value of ``--processes``
(docs/outputs.md#every-marker-of-a-cohort: the job starts N shards ``--shard i/N`` at once, each on 1/N of its
torch and SimpleITK threads, then merges; all of it timed; a failed shard fails the run). While it runs, the
script samples every 0.5 s the machine's CPU use (``/proc/stat``, all cores together) and the resident memory of
the job's processes (the job and its DataLoader workers or shards; summed, so pages they share count once per
process). Per run: wall time, subjects per minute, the share of the cores busy over the run, the CPU time, the
share of 1-s intervals with the cores over 90 % busy together, peak memory (all processes, and the largest one),
and how its detections differ from the first run's (:func:`differences`). Writes ``throughput.json`` and prints
the table::

    python tests/benchmarks/bench_throughput.py --out /work/bench_throughput --n 20 --workers 0 --processes 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PAGE = os.sysconf("SC_PAGE_SIZE")


def _cpu() -> tuple[int, int]:
    """(busy, busy + idle) jiffies of all cores since boot."""
    f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = f[0] + f[1] + f[2] + f[5] + f[6]
    return busy, busy + f[3] + f[4]


def _tree_rss(root: int) -> tuple[int, int]:
    """(sum, largest) resident bytes of ``root`` and its descendants."""
    parent, rss = {}, {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            parent[int(d.name)], rss[int(d.name)] = int(fields[1]), int(fields[21]) * PAGE
        except (OSError, ValueError):
            continue
    tree, grew = {root}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= new
        grew = bool(new)
    mine = [rss.get(p, 0) for p in tree]
    return sum(mine), max(mine)


def run(datalist: Path, out: Path, workers: int, processes: int = 1) -> dict:
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.yaml", "--datalist",
           str(datalist), "--output_dir", str(out), "--progress", "false", "--inference_workers", str(workers),
           "--processes", str(processes)]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out.parent.mkdir(parents=True, exist_ok=True)
    log = open(out.with_suffix(".log"), "w")
    start, (b0, t0) = time.perf_counter(), _cpu()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    samples, peak, largest, last = [], 0, 0, (b0, t0)
    next_second = start + 1.0
    while proc.poll() is None:
        time.sleep(0.5)
        total, big = _tree_rss(proc.pid)
        peak, largest = max(peak, total), max(largest, big)
        if time.perf_counter() >= next_second:
            now = _cpu()
            samples.append((now[0] - last[0]) / max(now[1] - last[1], 1))
            last, next_second = now, next_second + 1.0
    wall = time.perf_counter() - start
    b1, t1 = _cpu()
    log.close()
    if proc.returncode != 0:
        raise SystemExit(f"{out.name}: the main job failed ({proc.returncode}); see {log.name}")
    n = len(json.loads((out / "run.json").read_text())["written"])
    if "stopped with status" in out.with_suffix(".log").read_text():
        raise SystemExit(f"{out.name}: a shard failed; see {log.name}")
    return {"workers": workers, "processes": processes, "subjects": n, "wall_s": round(wall, 1),
            "per_minute": round(60.0 * n / wall, 2),
            "busy": round((b1 - b0) / max(t1 - t0, 1), 3), "cpu_core_s": round((b1 - b0) / os.sysconf("SC_CLK_TCK")),
            "both_busy_seconds": round(sum(s >= 0.9 for s in samples) / max(len(samples), 1), 3),
            "peak_mib": round(peak / 2**20), "largest_mib": round(largest / 2**20)}  # fmt: skip


def differences(folder: Path, first: Path) -> str:
    """How ``folder``'s detections differ from ``first``'s: ``equal`` (byte for byte), else the rows whose subject,
    class or voxel differ, the largest score difference and the regions that differ on the same rows."""
    from bundle.inference import read_detections

    if all((folder / t).read_bytes() == (first / t).read_bytes() for t in ("detections.csv", "counts.csv")):
        return "equal"
    a, b = ({(s, r["label"], r["i"], r["j"], r["k"]): r for s, rs in read_detections(f / "detections.csv").items()
             for r in rs} for f in (folder, first))  # fmt: skip
    same = a.keys() & b.keys()
    score = max((abs(a[k]["score"] - b[k]["score"]) for k in same), default=0.0)
    regions = sum(a[k].get("region") != b[k].get("region") for k in same)
    return f"{len(a.keys() ^ b.keys())} rows differ; scores within {score:.1e}; {regions} regions differ"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--workers", default="0,2", help="comma-separated --inference_workers values")
    ap.add_argument("--processes", default="", help="comma-separated --processes values (no workers)")
    args = ap.parse_args()
    from bundle.data.synth import demo_input

    out = Path(args.out)
    datalist = demo_input(out / "input", n=args.n, seed=args.seed)
    rows = []
    runs = [(int(w), 1) for w in args.workers.split(",") if w] + [(0, int(r)) for r in args.processes.split(",") if r]
    for w, r in runs:
        folder = out / (f"run_w{w}" if r == 1 else f"run_p{r}")
        row = run(datalist, folder, w, r)
        row["against_first"] = differences(folder, out / (f"run_w{runs[0][0]}" if runs[0][1] == 1 else
                                                          f"run_p{runs[0][1]}"))  # fmt: skip
        rows.append(row)
        print(row, flush=True)
    (out / "throughput.json").write_text(json.dumps({"n": args.n, "seed": args.seed, "runs": rows}, indent=1))
    print("| workers | processes | subjects | wall (s) | subjects/min | cores busy | CPU (core-s) | "
          "1-s intervals >= 90 % busy | peak memory, all processes (MiB) | largest process (MiB) | "
          "detections against the first run's |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['processes']} | {r['subjects']} | {r['wall_s']} | {r['per_minute']} | "
              f"{100 * r['busy']:.0f} % | {r['cpu_core_s']} | "
              f"{100 * r['both_busy_seconds']:.0f} % | {r['peak_mib']} | {r['largest_mib']} | "
              f"{r['against_first']} |")


if __name__ == "__main__":
    main()
