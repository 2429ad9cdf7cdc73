# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The main job on a mixed cohort: what it runs per subject, its time per subject and its peak memory
(docs/outputs.md#every-marker-of-a-cohort).

Simulates 8 subjects with every marker (the first simulator's ``all`` task, 1 mm) and writes them as subject
folders with mixed availability: SWI only; T1 + T2 + FLAIR; all four; T1 + FLAIR; all four with the T1 on a 1.2 mm
grid turned by 10 degrees; all four without a brain mask; T2 alone; FLAIR alone (nothing runs). Then runs the main
job (``configs/inference.yaml``, the shipped weights) on the whole folder and on a folder of one subject with all
four modalities, each as its own process under ``/usr/bin/time -v``, and writes ``cohort.json`` (wall time, peak
resident memory, per-subject plan, counts) and prints a summary::

    python tests/benchmarks/bench_cohort.py --out /work/bench_cohort
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bundle.data.synth import generate_cohort  # noqa: E402
from bundle.data.synth.regrid import reslice  # noqa: E402

#: subject -> (images, with its brain mask)
PATTERNS = {
    "sub-01": (("swi",), True),
    "sub-02": (("t1", "t2", "flair"), True),
    "sub-03": (("swi", "t1", "t2", "flair"), True),
    "sub-04": (("t1", "flair"), True),
    "sub-05": (("swi", "t1-rotated", "t2", "flair"), True),
    "sub-06": (("swi", "t1", "t2", "flair"), False),
    "sub-07": (("t2",), True),
    "sub-08": (("flair",), True),
}


def build(out: Path, seed: int = 2100) -> Path:
    """The mixed cohort's subject folders under ``out/cohort`` (simulated once into ``out/source``)."""
    src = generate_cohort("all", len(PATTERNS), out / "source", seed=seed, progress=False)
    entries = json.loads(src.read_text())
    entries = [e for split in ("training", "validation", "testing") for e in entries[split]]
    cohort = out / "cohort"
    for (sub, (images, masked)), e in zip(PATTERNS.items(), entries):
        folder = cohort / sub
        folder.mkdir(parents=True, exist_ok=True)
        files = dict(zip(("swi", "t1", "t2", "flair"), e["image"]))
        for name in images:
            mod = name.split("-")[0]
            dst = folder / f"{sub}_{mod}.nii.gz"
            if name.endswith("rotated"):
                reslice(src.parent / files[mod], dst, (1.2, 1.2, 1.2), (10.0, 0.0, 0.0))
            else:
                shutil.copy(src.parent / files[mod], dst)
        if masked:
            shutil.copy(src.parent / e["mask"], folder / f"{sub}_brainmask.nii.gz")
    return cohort


def timed_run(input_dir: Path, out_dir: Path) -> dict:
    """The main job as its own process under /usr/bin/time -v: wall seconds, peak resident MiB, exit status."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "monai.bundle", "run", "--config_file",
           "configs/inference.yaml", "--datalist", str(input_dir), "--output_dir", str(out_dir), "--progress",
           "false"]  # fmt: skip
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)", res.stderr)
    h, m, s = (float(x) if x else 0.0 for x in wall.groups())
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr).group(1))
    return {"exit": res.returncode, "wall_s": round(3600 * h + 60 * m + s, 1), "peak_mib": round(rss / 1024, 1),
            "stderr_tail": res.stderr[-1500:] if res.returncode not in (0, 3) else ""}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    cohort = build(out)
    one = out / "one"
    if not one.exists():
        shutil.copytree(cohort / "sub-03", one / "sub-03")
    result = {}
    for name, folder in (("one subject, 4 modalities", one), ("8 mixed subjects", cohort)):
        run_dir = out / ("run_one" if folder == one else "run_cohort")
        shutil.rmtree(run_dir, ignore_errors=True)
        result[name] = timed_run(folder, run_dir)
        with open(run_dir / "plan.csv", newline="") as f:
            result[name]["plan"] = [f"{r['subject']} {r['detector']}: {r['run']} ({r['why']})"
                                    for r in csv.DictReader(f)]  # fmt: skip
        with open(run_dir / "counts.csv", newline="") as f:
            result[name]["counts"] = [{k: r[k] for k in ("subject", "cmb", "epvs", "lacune", "total")}
                                      for r in csv.DictReader(f)]  # fmt: skip
        result[name]["outputs"] = sorted(p.name for p in run_dir.iterdir())
        print(name, json.dumps(result[name], indent=1), flush=True)
    (out / "cohort.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
