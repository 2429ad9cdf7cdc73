# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""GP-Unet benchmark (issue 6; not part of the test suite): the paper's table of methods (a)-(f) and its FROC.

    python tests/benchmarks/bench_gpunet.py [--out /tmp/gpunet_bench] [--plot docs/images/gpunet_froc.png]
        [--override key=value ...] [--weights best|final] [--blobs basins|components] [--test-seed 403]

Simulates three disjoint 1 mm T2 cohorts of the ``epvs`` task (EPVS in the basal ganglia only, so each scan's
``count`` is its count in the ROI): training (seed 401) and validation (seed 402) enter the datalist WITHOUT label
maps or lesion records (counts only); testing (seed 403) keeps its label maps, whose objects' centres are the
annotated points. Trains GP-Unet (e) and the regression network without upsampling (d) with
``configs/gpunet/quick.yaml``, timed; runs every method's config ((a) intensities, (b) saliency of (d), (c)
saliency of (e), (d) class map, (e) GP-Unet, (f) heatmap + intensities) through the evaluate config (a hit: the
component's centre within 3 voxels of a point); prints sensitivity, FP per image and false discovery rate; then
re-thresholds each method's saved map with the count times a multiplier (``MULTIPLIERS``) for the FROC curves,
with both kinds of blob (``components``, the paper's connected components, and ``basins``, components split at
saddles, the config's default; ``--blobs`` picks the one the configs run with, the table's), and compares (e)
with (a) at equal FP per image for each (linear interpolation along (e)'s curve). ``--test-seed`` simulates
another test cohort (into ``OUT/test_<seed>`` unless it is the default), to check a result on scans that played
no part in a choice. A rerun with the same
``--out`` reuses the cohorts and finished trainings (delete ``OUT/run`` to retrain). ``--weights best`` (default)
evaluates each network at its epoch of lowest validation count error (a choice made from counts alone), ``final``
at its last epoch; results go to ``OUT/eval_<weights>`` and ``OUT/results_<weights>.json``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import cohort_entries, overrides, run_bundle  # noqa: E402

from bundle.methods.gpunet.count_threshold import BLOBS  # noqa: E402

TRAIN = ["configs/common.yaml", "configs/gpunet/train.yaml", "configs/gpunet/quick.yaml"]
COHORTS = {"train": (40, 401), "validation": (8, 402), "test": (12, 403)}
METHODS = {  # name: (paper's label, override file or None)
    "a_intensity": ("(a) intensities", "configs/gpunet/methods/a_intensity.yaml"),
    "b_saliency_regression": ("(b) saliency, regression net", "configs/gpunet/methods/b_saliency_regression.yaml"),
    "c_saliency_fcn": ("(c) saliency, FCN", "configs/gpunet/methods/c_saliency_fcn.yaml"),
    "d_regression": ("(d) regression net (class map)", "configs/gpunet/methods/d_regression.yaml"),
    "e_gpunet": ("(e) GP-Unet", None),
    "f_intensity_blend": ("(f) GP-Unet + intensities", "configs/gpunet/methods/f_intensity_blend.yaml"),
}
PAPER = {  # the paper's Table 1: TPR %, FP per image, FDR %
    "a_intensity": (40.6, 2.3, 59.8),
    "b_saliency_regression": (39.8, 2.7, 54.2),
    "c_saliency_fcn": (18.7, 3.3, 70.2),
    "d_regression": (19.6, 3.2, 70.5),
    "e_gpunet": (54.8, 1.9, 37.7),
    "f_intensity_blend": (62.0, 1.5, 31.4),
}
MULTIPLIERS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)


def make_datalist(out: Path, test_seed: int = COHORTS["test"][1]) -> Path:
    from concurrent.futures import ProcessPoolExecutor

    from bundle.data.synth import generate_cohort

    cohorts = {**COHORTS, "test": (COHORTS["test"][0], test_seed)}
    folder = {
        name: out / (name if seed == COHORTS[name][1] else f"{name}_{seed}") for name, (_, seed) in cohorts.items()
    }
    with ProcessPoolExecutor(2) as pool:
        jobs = [pool.submit(generate_cohort, "epvs", n, folder[name], seed=seed, progress=False)
                for name, (n, seed) in cohorts.items()]  # fmt: skip
        for job in jobs:
            job.result()

    def counts_only(e: dict) -> dict:
        return {k: v for k, v in e.items() if k not in ("label", "lesions", "mimics")}

    d = {
        "name": "gpunet benchmark",
        "modalities": ["t2"],
        "classes": ["epvs"],
        "training": [counts_only(e) for e in cohort_entries(folder["train"], "train")],
        "validation": [counts_only(e) for e in cohort_entries(folder["validation"], "val")],
        "testing": cohort_entries(folder["test"], "test"),
    }
    path = out / ("datalist.json" if folder["test"].name == "test" else f"datalist_{folder['test'].name}.json")
    path.write_text(json.dumps(d, indent=1))
    return path


def froc_by_multiplier(datalist: Path, folder: Path) -> dict[str, list[dict]]:
    """Per kind of blob, the sensitivity and FP per image of one method's saved maps re-thresholded at each count
    multiplier (the scans are read once for all)."""
    from bundle.data import load_datalist, load_volume
    from bundle.methods.gpunet import count_matched_objects, predicted_count
    from bundle.metrics import evaluate_scan, objects_from_instances, summarise_scans

    counts = {
        r["subject"]: float(r["predicted_count"]) for r in csv.DictReader((folder / "count_predictions.csv").open())
    }
    scans = []
    for e in load_datalist(datalist, "testing"):
        label = load_volume(e["label"], e["subject"], "label")
        spacing = np.asarray(label.pixdim, float)
        ref = objects_from_instances(label[0].numpy().astype(np.int64), spacing)
        heat = load_volume(str(folder / "maps" / f"{e['subject']}_heatmap.nii.gz"), e["subject"], "heatmap")[0].numpy()
        roi = load_volume(e["roi"], e["subject"], "roi")[0].numpy() > 0
        scans.append((ref, heat, roi, counts[e["subject"]], spacing))
    curves: dict[str, list[dict]] = {b: [] for b in BLOBS}
    for blobs, m in itertools.product(BLOBS, MULTIPLIERS):
        results = []
        for ref, heat, roi, count, spacing in scans:
            inst, _ = count_matched_objects(heat, predicted_count(count, m), roi, blobs=blobs)
            pred = objects_from_instances(inst, spacing, prob=heat)
            results.append(evaluate_scan(ref, pred, "distance_voxels", max_distance=3.0))
        s = summarise_scans(results)
        curves[blobs].append({"multiplier": m, "sensitivity": s["sensitivity"], "fp_per_scan": s["fp_per_scan"],
                              "fdr": s["false_discovery_rate"]})  # fmt: skip
    return curves


def sensitivity_at(curve: list[dict], fp: float) -> float:
    """Sensitivity of a multiplier curve at ``fp`` FP per image (linear interpolation; NaN outside its range)."""
    pts = sorted((c["fp_per_scan"], c["sensitivity"]) for c in curve)
    x, y = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    return float(np.interp(fp, x, y)) if x[0] <= fp <= x[-1] else float("nan")


def plot(curves: dict, path: Path, blobs: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, curve in curves.items():
        pts = sorted((c["fp_per_scan"], c["sensitivity"]) for c in curve)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, label=METHODS[name][0])
    ax.set_xlabel("false positives per image")
    ax.set_ylabel("sensitivity")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"GP-Unet benchmark: count x {MULTIPLIERS[0]}-{MULTIPLIERS[-1]}, blobs: {blobs}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="/tmp/gpunet_bench")
    p.add_argument("--plot", default=None, help="write the FROC plot here (default OUT/froc_methods.png)")
    p.add_argument("--override", nargs="*", default=[], help="config overrides key=value")
    p.add_argument(
        "--weights",
        choices=("best", "final"),
        default="best",
        help="best: the epoch with the lowest validation count error (counts only, no labels); final: the last",
    )
    p.add_argument("--blobs", choices=BLOBS, default="basins", help="the blobs the configs count (the table's)")
    p.add_argument("--test-seed", type=int, default=COHORTS["test"][1], help="seed of the simulated test cohort")
    a = p.parse_args()
    out = Path(a.out)
    datalist = make_datalist(out, a.test_seed)
    extra = overrides(a.override)
    base = ["--datalist", str(datalist), "--output_dir", str(out / "run"), *extra]
    t_e = run_bundle(["training", "--config_file", str(TRAIN), *base])
    t_d = run_bundle(["training", "--config_file", str(TRAIN + ["configs/gpunet/methods/d_regression.yaml"]), *base])
    print(f"training wall time: (e) {t_e:.0f} s, (d) {t_d:.0f} s (0 if already finished)")
    evals = TRAIN + ["configs/gpunet/inference.yaml"]
    table, curves = {}, {b: {} for b in BLOBS}
    tag = a.weights if datalist.name == "datalist.json" else f"{a.weights}_{datalist.stem.split('_', 1)[1]}"
    for name, (_, extra_file) in METHODS.items():
        files = evals + ([extra_file] if extra_file else []) + ["configs/gpunet/evaluate.yaml"]
        folder = out / f"eval_{tag}_{a.blobs}" / name
        ckpt = str(out / "run" / "models" / _checkpoint(name, a.weights))
        t = run_bundle(["evaluation", "--config_file", str(files), "--datalist", str(datalist), "--output_dir",
                        str(folder), *extra, "--count_blobs", a.blobs, "--checkpoint", ckpt])  # fmt: skip
        pooled = json.loads((folder / "metrics.json").read_text())["pooled"]
        table[name] = (pooled["sensitivity"], pooled["fp_per_scan"], pooled["false_discovery_rate"], t)
        for b, curve in froc_by_multiplier(datalist, folder).items():
            curves[b][name] = curve
    counts = list(csv.DictReader((out / f"eval_{tag}_{a.blobs}" / "e_gpunet" / "count_predictions.csv").open()))
    truth = {e["subject"]: e["count"] for e in json.loads(datalist.read_text())["testing"]}
    err = [float(r["predicted_count"]) - truth[r["subject"]] for r in counts]
    print(f"(e) count on {len(err)} test scans: mean absolute error {np.mean(np.abs(err)):.2f}, "
          f"mean error {np.mean(err):+.2f}; true counts {sorted(truth.values())}")  # fmt: skip
    print(f"table: the configs with blobs = {a.blobs}, at the predicted count")
    print(f"{'method':34s} {'TPR %':>6s} {'FP/img':>7s} {'FDR %':>6s}   paper: TPR FPav FDR   eval s")
    for name, (tpr, fp, fdr, t) in table.items():
        pt = PAPER[name]
        print(f"{METHODS[name][0]:34s} {100 * tpr:6.1f} {fp:7.2f} {100 * fdr:6.1f}   {pt[0]:5.1f} {pt[1]:4.1f} "
              f"{pt[2]:4.1f}   {t:5.0f}")  # fmt: skip
    for b in BLOBS:
        print(f"FROC, blobs = {b} (count multiplier: sensitivity / FP per image):")
        for name, curve in curves[b].items():
            pts = ", ".join(f"x{c['multiplier']:g}: {c['sensitivity']:.3f}/{c['fp_per_scan']:.2f}" for c in curve)
            print(f"  {name}: {pts}")
        at_1 = {c["multiplier"]: c for c in curves[b]["a_intensity"]}[1.0]
        e_at = sensitivity_at(curves[b]["e_gpunet"], at_1["fp_per_scan"])
        verdict = "beats" if e_at > at_1["sensitivity"] else "does NOT beat"
        print(f"blobs = {b}: at (a)'s {at_1['fp_per_scan']:.2f} FP/image: (a) {at_1['sensitivity']:.3f}, (e) "
              f"{e_at:.3f} (interpolated on (e)'s multiplier curve) -> (e) {verdict} (a)")  # fmt: skip
    plot(curves[a.blobs], Path(a.plot) if a.plot else out / f"froc_{tag}_{a.blobs}.png", a.blobs)
    (out / f"results_{tag}_{a.blobs}.json").write_text(json.dumps({"table": table, "curves": curves}, indent=1))


def _checkpoint(name: str, weights: str = "best") -> str:
    final = "gpunet_regression.pt" if name in ("b_saliency_regression", "d_regression") else "gpunet.pt"
    return f"best_count_mae_{final}" if weights == "best" else final


if __name__ == "__main__":
    main()
