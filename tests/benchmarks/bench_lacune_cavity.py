# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""How far a lacune call's fluid-like signal may reach past it (the structural detector's ``cavity_leak_mm3``),
chosen on validation scans only.

Scans: the 6 validation scans of ``bench_epvs_generalisation.py`` (its cohorts in OUT, made there when absent) and a
development cohort made for this choice (OUT/dev: 12 scans of the simulator's validation preset, seed 801), each
with all three modalities, T2 alone and T1 alone. No test scan is read.

The structural inference runs once per input with every detection kept (``--detection_threshold 0
--cavity_leak_mm3 1e9``) and writes each lacune call's measured ``fluid_beyond_mm3``. For each candidate limit the
lacune calls above it are dropped; the operating threshold then follows as in the EPVS benchmark (the lowest score
with at most 5 unmatched detections per scan on the 6 validation scans with all modalities: dropped calls free that
budget), and the table reports lacune precision, recall and F1 at that threshold, pooled over all scans and inputs
(a call is a hit when its centre lies within 5 mm of a lacune's, one call per lacune). The shipped limit is the
candidate with the highest pooled F1 (ties: the larger limit).

    python tests/benchmarks/bench_lacune_cavity.py --out /work/bench_epvs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_epvs_generalisation import (  # noqa: E402
    METHODS,
    lacune_hits,
    make_cohorts,
    scan_figures,
    threshold_at,
    with_subset,
    write_datalist,
)
from bench_utils import cohort_entries, run_bundle  # noqa: E402

INPUTS = ("all", "t2", "t1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="the EPVS benchmark's folder (cohorts reused)")
    ap.add_argument("--checkpoint", default="models/structural_unet.pt")
    ap.add_argument("--n_train", type=int, default=40)
    ap.add_argument("--n_val", type=int, default=6)
    ap.add_argument("--n_test", type=int, default=2)
    ap.add_argument("--n_dev", type=int, default=12)
    ap.add_argument("--dev_seed", type=int, default=801)
    ap.add_argument("--max_val_fp", type=float, default=5.0)
    ap.add_argument("--candidates", default="0,2,5,10,20,1e9", help="limits in mm^3 (1e9: keep every call)")
    args = ap.parse_args()
    from bundle.data.synth.structural import generate_structural_cohort

    groups = make_cohorts(args.out, args.n_train, args.n_val, args.n_test, 900)
    generate_structural_cohort(args.out / "dev", {"testing": ("validation", args.n_dev)}, seed=args.dev_seed,
                               progress=False)  # fmt: skip
    scans = groups["validation"] + cohort_entries(args.out / "dev", "dev")
    configs = METHODS["unet"]["train"] + METHODS["unet"]["infer"]
    calls = []  # (input, entry, its rows) per scan and input
    for name in INPUTS:
        entries = with_subset(scans, name)
        folder = args.out / "eval_cavity" / name
        dl = write_datalist(args.out / f"cavity_{name}.json", [], entries)
        seconds = run_bundle(["run", "--config_file", json.dumps(configs), "--datalist", str(dl), "--output_dir",
                              str(folder), "--checkpoint", args.checkpoint, "--progress", "false", "--overwrite",
                              "true", "--detection_threshold", "0", "--cavity_leak_mm3", "1e9"])  # fmt: skip
        print(f"{name}: {len(entries)} scans, inference {seconds:.0f} s", flush=True)
        from bundle.inference import read_detections

        table = read_detections(str(folder / "detections.csv"))
        calls += [(name, e, table.get(e["subject"], [])) for e in entries]
    validation = {e["subject"] for e in groups["validation"]}
    table = []
    for limit in [float(x) for x in args.candidates.split(",")]:

        def kept(rows: list[dict]) -> list[dict]:
            return [r for r in rows if r["label"] != "lacune" or float(r["fluid_beyond_mm3"]) <= limit]

        threshold = threshold_at([scan_figures(e, kept(rows)) for name, e, rows in calls
                                  if name == "all" and e["subject"] in validation], args.max_val_fp)  # fmt: skip
        tp = n_det = n_lac = 0
        for _, e, rows in calls:
            refs = [r for r in json.loads(Path(e["lesions"]).read_text()) if r["class"] == "lacune"]
            found = [r for r in kept(rows) if r["label"] == "lacune" and r["score"] >= threshold]
            ref_mm = np.array([r["centre_mm"] for r in refs], float).reshape(-1, 3)
            pred_mm = np.array([[r["x"], r["y"], r["z"]] for r in found], float).reshape(-1, 3)
            tp += lacune_hits(ref_mm, pred_mm, np.array([r["score"] for r in found], float))
            n_det, n_lac = n_det + len(found), n_lac + len(refs)
        prec, rec = tp / max(n_det, 1), tp / max(n_lac, 1)
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        table.append({"limit_mm3": limit, "threshold": round(threshold, 5), "lacunes": n_lac, "calls": n_det,
                      "found": tp, "precision": round(prec, 3), "recall": round(rec, 3), "f1": round(f1, 3),
                      "_f1": f1})  # fmt: skip
        print(json.dumps({k: v for k, v in table[-1].items() if k != "_f1"}), flush=True)
    best = max(table, key=lambda r: (r.pop("_f1"), r["limit_mm3"]))
    result = {"settings": {k: str(v) for k, v in vars(args).items()}, "inputs": list(INPUTS),
              "scans": len(scans), "table": table, "chosen_limit_mm3": best["limit_mm3"]}  # fmt: skip
    (args.out / "lacune_cavity.json").write_text(json.dumps(result, indent=1))
    print("chosen limit:", best["limit_mm3"], "mm^3")


if __name__ == "__main__":
    main()
