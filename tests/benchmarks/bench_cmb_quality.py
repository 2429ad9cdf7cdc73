# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Quality benchmark of the two-stage microbleed detector (issue 4; not part of the test suite).

    python tests/benchmarks/bench_cmb_quality.py [--out /tmp/cmb_bench] [--extra_configs configs/twostage/quick.yaml]
        [--override stage1_iterations=800 ...]

Simulates microbleed cohorts on two grids (1 mm and 0.5 x 0.5 x 2 mm, with veins, calcifications and susceptibility
artefacts as mimics), builds a datalist of 15 training scans (every one with microbleeds, as in the paper) and 20
different test scans (5 without microbleeds), trains both stages with ``configs/twostage/train.yaml`` (timed: CPU
training time, preprocessing and mimic mining included), runs the evaluate config twice on the test scans (score =
two-stage score, and score = stage-1 peak, i.e. stage 1 alone) and prints:
sensitivity at <= 2 FP per scan, CPM, FP per scan of stage 1 alone at the two-stage sensitivity, figures by grid
and the false positives on the scans without microbleeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import cohort_entries, overrides, run_bundle  # noqa: E402

CONFIGS = ["configs/common.yaml", "configs/twostage/train.yaml"]
COHORTS = {  # name: (spacing, subjects, seed)
    "iso_train": ((1.0, 1.0, 1.0), 10, 101),
    "ani_train": ((0.5, 0.5, 2.0), 10, 102),
    "iso_test": ((1.0, 1.0, 1.0), 16, 201),
    "ani_test": ((0.5, 0.5, 2.0), 16, 202),
}


def make_datalist(out: Path) -> Path:
    from bundle.data.synth import generate_cohort

    for name, (spacing, n, seed) in COHORTS.items():
        generate_cohort("cmb", n, out / name, seed=seed, spacing=spacing, progress=True)
    pick = {}
    for name in COHORTS:
        pick[name] = cohort_entries(out / name, name)
    with_cmb = {k: [e for e in v if e["count"] > 0] for k, v in pick.items()}
    without = {k: [e for e in v if e["count"] == 0] for k, v in pick.items()}
    training = with_cmb["iso_train"][:8] + with_cmb["ani_train"][:7]
    testing = with_cmb["iso_test"][:8] + with_cmb["ani_test"][:7] + without["iso_test"][:3] + without["ani_test"][:2]
    if len(training) != 15 or len(testing) != 20:
        raise RuntimeError(f"not enough simulated subjects: {len(training)} training, {len(testing)} testing")
    d = {"name": "cmb benchmark", "modalities": ["swi"], "classes": ["cmb"], "training": training, "testing": testing}
    path = out / "datalist.json"
    path.write_text(json.dumps(d, indent=1))
    return path


def _at_fp(froc: dict, max_fp: float) -> float:
    fps, sens = np.asarray(froc["fp_per_scan"]), np.asarray(froc["sensitivity"])
    ok = fps <= max_fp
    return float(sens[ok].max()) if ok.any() else 0.0


def _fp_at_sensitivity(froc: dict, target: float) -> float:
    fps, sens = np.asarray(froc["fp_per_scan"]), np.asarray(froc["sensitivity"])
    ok = sens >= target - 1e-9
    return float(fps[ok].min()) if ok.any() else float("inf")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="/tmp/cmb_bench")
    p.add_argument("--extra_configs", nargs="*", default=[])
    p.add_argument("--override", nargs="*", default=[], help="config overrides key=value")
    a = p.parse_args()
    out = Path(a.out)
    datalist = make_datalist(out)
    configs = CONFIGS + a.extra_configs
    extra = overrides(a.override)
    run_dir = out / "run"
    base = ["--datalist", str(datalist), "--output_dir", str(run_dir), "--progress", "false", *extra]
    train_s = run_bundle(["training", "--config_file", str(configs), *base])
    ckpt = run_dir / "models" / "cmb_detector.pt"
    evals = {}
    timing = {}
    for name, col in (("two_stage", 3), ("stage1", 4)):
        ev = out / f"eval_{name}"
        cfg = configs + ["configs/twostage/inference.yaml", "configs/twostage/evaluate.yaml"]
        args = ["--datalist", str(datalist), "--output_dir", str(ev), "--checkpoint", str(ckpt), *extra]
        timing[name] = run_bundle(["--config_file", str(cfg), *args, "--score_column", str(col)])
        evals[name] = json.loads((ev / "metrics.json").read_text())
    two, one = evals["two_stage"]["pooled"], evals["stage1"]["pooled"]
    sens2 = _at_fp(two["froc"], 2.0)
    per_scan = evals["two_stage"]["per_scan"]
    zero = [s for s in per_scan if s["n_ref"] == 0]
    result = {
        "training_seconds": round(train_s, 1),
        "inference_seconds_20_scans": round(timing["two_stage"], 1),
        "test_references": int(two["tp"] + two["fn"]),
        "two_stage": {
            "sensitivity_at_2fp": sens2,
            "cpm": two["cpm"],
            "operating_point": {k: two[k] for k in ("sensitivity", "fp_per_scan", "precision", "tp", "fp", "fn")},
            "max_sensitivity": float(max(two["froc"]["sensitivity"] or [0.0])),
        },
        "stage1_alone": {
            "sensitivity_at_2fp": _at_fp(one["froc"], 2.0),
            "cpm": one["cpm"],
            "fp_per_scan_at_two_stage_sensitivity": _fp_at_sensitivity(one["froc"], sens2),
            "candidates_per_scan": float(np.mean([s["n_pred"] for s in evals["stage1"]["per_scan"]])),
            "max_sensitivity": float(max(one["froc"]["sensitivity"] or [0.0])),
        },
        "two_stage_fp_per_scan_at_that_sensitivity": _fp_at_sensitivity(two["froc"], sens2),
        "scans_without_cmb_fp_at_operating_point": [s["fp"] for s in zero],
        "by_grid_at_operating_point": {
            g: {
                "tp": sum(s["tp"] for s in per_scan if s["subject"].startswith(g)),
                "fn": sum(s["fn"] for s in per_scan if s["subject"].startswith(g)),
                "fp": sum(s["fp"] for s in per_scan if s["subject"].startswith(g)),
            }
            for g in ("iso", "ani")
        },
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
