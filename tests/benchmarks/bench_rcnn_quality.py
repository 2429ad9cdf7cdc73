# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Quality benchmark of the multirater RCNN (issue 5; not part of the test suite).

    python tests/benchmarks/bench_rcnn_quality.py [--out /tmp/rcnn_bench] [--full] [--select_box_nms]
        [--override key=value ...]

Simulates two disjoint 1 mm EPVS/lacune cohorts (T1, T2, FLAIR, six raters per object): 14 training scans (seed
301) and 8 test scans (seed 302), as the paper's 14 training subjects. Trains with ``configs/rcnn/train.yaml`` plus
``configs/rcnn/quick.yaml`` (``--full`` drops quick.yaml: the paper's width and 64^3 patches; days on this CPU),
timed; then runs the evaluate config on the test scans and prints the figures of ``multirater.json`` (objects of
at least 5 voxels): sensitivity at <= 10 FP per scan, sensitivity by size, lacune-vs-EPVS accuracy where >= 4 of 6
raters agree, box overlap against rater agreement, and the rater heads' agreement with their raters. A rerun with
the same ``--out`` reuses the cohorts and the finished training steps.

``--select_box_nms`` first runs inference without the final box suppression (``box_nms_iou`` 1.0) on a third,
disjoint validation cohort (4 scans, seed 303), applies :func:`bundle.methods.rcnn.cube_nms` to its table at each
value of ``BOX_NMS_GRID``, prints the sensitivity at <= 10 FP per scan for each and the best value (ties: the
larger, i.e. the milder suppression), and evaluates the test scans at that value. The test scans play no part in
the choice. Without it the test scans are evaluated at the config's ``box_nms_iou``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import cohort_entries, overrides, run_bundle  # noqa: E402

CONFIGS = ["configs/common.yaml", "configs/rcnn/train.yaml"]
COHORTS = {"train": (14, 301), "test": (8, 302), "validation": (4, 303)}
BOX_NMS_GRID = (1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02)


def make_datalist(out: Path) -> tuple[Path, Path]:
    """The benchmark's datalist (training and testing cohorts) and the selection datalist (validation cohort as
    its testing list, which the inference config runs on)."""
    from concurrent.futures import ProcessPoolExecutor

    from bundle.data.synth import generate_cohort

    with ProcessPoolExecutor(len(COHORTS)) as pool:  # one process per cohort
        jobs = [pool.submit(generate_cohort, "epvs_lacune", n, out / name, seed=seed, progress=False)
                for name, (n, seed) in COHORTS.items()]  # fmt: skip
        for job in jobs:
            job.result()
    d = {
        "name": "rcnn benchmark",
        "modalities": ["t1", "t2", "flair"],
        "classes": ["epvs", "lacune"],
        "training": cohort_entries(out / "train", "train"),
        "testing": cohort_entries(out / "test", "test"),
    }
    path = out / "datalist.json"
    path.write_text(json.dumps(d, indent=1))
    select = out / "datalist_select.json"
    select.write_text(json.dumps({**d, "training": [], "testing": cohort_entries(out / "validation", "val")}, indent=1))
    return path, select


def select_box_nms(datalist: Path, detections: Path, out: Path) -> float:
    """Sensitivity at <= 10 FP per scan of the validation table after :func:`cube_nms` at each grid value; best."""
    import csv

    import torch

    from bundle.data import load_datalist, load_volume
    from bundle.methods.rcnn import cube_nms, multirater_figures

    rows = list(csv.DictReader(detections.open()))
    spacing = {e["subject"]: torch.as_tensor(load_volume(e["label"], e["subject"], "label").pixdim, dtype=torch.float)
               for e in load_datalist(datalist, "testing")}  # fmt: skip
    best, best_sens = 1.0, -1.0
    for iou in BOX_NMS_GRID:
        kept = []
        for subject in sorted({r["subject"] for r in rows}):
            rs = [r for r in rows if r["subject"] == subject]
            ijk = torch.tensor([[float(r[k]) for k in "ijk"] for r in rs]) * spacing[subject]
            # diameter_mm is the box side in voxels times the mean voxel size (bundle.methods.rcnn.rcnn_rows)
            sides = torch.tensor([float(r["diameter_mm"]) for r in rs])[:, None] / spacing[subject].mean()
            keep = cube_nms(ijk, sides * spacing[subject], torch.tensor([float(r["score"]) for r in rs]), iou)
            kept += [rs[int(n)] for n in keep]
        path = out / f"select_iou{iou:g}.csv"
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)
        fig = multirater_figures(str(datalist), str(path), "testing")
        print(f"  box_nms_iou {iou:<5g}: {len(kept):4d} detections, sensitivity {fig['sensitivity']:.3f} at "
              f"{fig['fp_per_scan']:.2f} FP/scan")  # fmt: skip
        if fig["sensitivity"] > best_sens:
            best, best_sens = iou, fig["sensitivity"]
    print(f"selected box_nms_iou {best:g} on {len(spacing)} validation scans")
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="/tmp/rcnn_bench")
    p.add_argument("--full", action="store_true", help="the paper's network and patches (no quick.yaml)")
    p.add_argument("--select_box_nms", action="store_true", help="choose box_nms_iou on the validation cohort")
    p.add_argument("--override", nargs="*", default=[], help="config overrides key=value")
    a = p.parse_args()
    out = Path(a.out)
    datalist, select_list = make_datalist(out)
    configs = CONFIGS + ([] if a.full else ["configs/rcnn/quick.yaml"])
    extra = overrides(a.override)
    run = out / "run"
    base = ["--datalist", str(datalist), "--progress", "false", *extra]
    t_train = run_bundle(["training", "--config_file", str(configs), "--output_dir", str(run), *base])
    evals = configs + ["configs/rcnn/inference.yaml", "configs/rcnn/evaluate.yaml"]
    ckpt = str(run / "models" / "rcnn_detector.pt")
    if a.select_box_nms:
        sel = out / "select"
        run_bundle(["evaluation", "--config_file", str(evals), "--output_dir", str(sel), "--checkpoint", ckpt,
                    "--datalist", str(select_list), "--progress", "false", *extra, "--box_nms_iou", "1.0"])  # fmt: skip
        base += ["--box_nms_iou", str(select_box_nms(select_list, sel / "detections.csv", sel))]
    t_eval = run_bundle(
        ["evaluation", "--config_file", str(evals), "--output_dir", str(out / "eval"), "--checkpoint", ckpt, *base]
    )
    fig = json.loads((out / "eval" / "multirater.json").read_text())
    met = json.loads((out / "eval" / "metrics.json").read_text())["pooled"]
    print(f"training wall time {t_train:.0f} s (this call; 0 if every step was already finished)")
    print(f"inference + evaluation of {fig['scans']} test scans: {t_eval:.0f} s")
    print(f"objects >= 5 voxels: {fig['references']}; threshold {fig['threshold']:.3f}")
    print(
        f"sensitivity at <= {fig['settings']['max_fp']:g} FP/scan: {fig['sensitivity']:.3f} at {fig['fp_per_scan']:.2f}"
    )
    for b in fig["sensitivity_by_size"]:
        print(f"  {b['voxels']:>6} voxels: {b['found']}/{b['n']} = {b['sensitivity']:.3f}")
    acc = fig["class_accuracy"]
    print(f"lacune-vs-EPVS accuracy (>= 4 of 6 raters agree): {acc['accuracy']:.3f} on {acc['n']} objects")
    for c, v in acc["per_class"].items():
        print(f"  {c}: {v['correct']}/{v['n']}")
    ov = fig["overlap_vs_agreement"]
    print(
        f"box IoU, all raters agree: median {ov['all_agree']['median_iou']:.3f} (n={ov['all_agree']['n']}); "
        f"some say nothing: {ov['some_nothing']['median_iou']:.3f} (n={ov['some_nothing']['n']}); "
        f"Mann-Whitney p={ov['mannwhitney_p']:.3g}"
    )
    print("rater heads' agreement with their raters:", [round(h, 3) for h in fig["rater_head_accuracy"]])
    print(f"all objects (metrics.json, score >= 0.5): sensitivity {met['sensitivity']:.3f}, ", end="")
    print(f"FP/scan {met['fp_per_scan']:.2f}")


if __name__ == "__main__":
    main()
