# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Generalisation benchmark of GP-Unet counting basal-ganglia EPVS from counts, with the ROI made by the bundle
(issue 20, item 4; not a test).

    python tests/benchmarks/bench_gpunet_generalisation.py --out /work/bench_gp --cohorts /work/bench_epvs
        [--train_regions | --regions_checkpoint models/brain_regions.pt]
        [--train | --checkpoint models/gpunet_counts.pt]
        [--n_train 40 --n_val 6 --n_test 2 --test_seed 900] [--n_extra 3 --extra_seed 950]

1. Cohorts: those of ``bench_epvs_generalisation.py`` in ``--cohorts`` (the same arguments reuse them), plus
   ``--n_extra`` more test scans per setting (seed ``--extra_seed`` + setting index) in ``OUT/extra``.
2. Datalists for GP-Unet: the T2 image only, ``count`` = the simulator's number of EPVS in the basal ganglia, no
   ``roi`` (the bundle makes it). Training and validation: the training and validation scans.
3. ``--train_regions``: trains ``configs/regions/train.yaml`` on the training scans (all three contrasts, regions
   maps; the best validation Dice is kept). ``--train``: trains GP-Unet (``configs/gpunet/train.yaml`` +
   ``shipped.yaml``) from the counts; the epoch of lowest validation count error is kept. Both start afresh
   (``--resume false``); the regions network trains 90 epochs, as the shipped one. Nothing is chosen on a
   test scan (GP-Unet's count needs no threshold).
4. Per setting: inference with the bundle's ROI, and with the simulator's ROI (``roi_source_gpunet=datalist``) to
   tell ROI errors from counting errors; the Dice of the regions network's region map (argmax of its classes) on
   T1, T2 and FLAIR against the simulator's.
5. ``OUT/result.json`` and a printed table: per setting and pooled over the held-out settings, count ICC(3,1) and
   ICC(2,1), mean absolute error, mean error, Pearson r; ROI Dice per region and contrast.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_epvs_generalisation import make_cohorts  # noqa: E402
from bench_utils import cohort_entries, overrides, run_bundle  # noqa: E402

MODALITIES = ("t1", "t2", "flair")
REGIONS = {1: "basal_ganglia", 2: "centrum_semiovale", 3: "hippocampus", 4: "midbrain", 5: "thalamus"}


def gpunet_entry(e: dict) -> dict:
    """A structural entry as GP-Unet sees it: its T2, the basal-ganglia EPVS count, the simulator's ROI (no label
    map: GP-Unet learns from counts)."""
    return {"subject": e["subject"], "image": [e["image"][MODALITIES.index("t2")]], "roi": e["roi"],
            "count": int(e["counts_by_region"]["epvs"]["basal_ganglia"])}  # fmt: skip


def write(path: Path, modalities, **splits) -> Path:
    path.write_text(json.dumps({"modalities": list(modalities), "classes": ["epvs", "lacune"], **splits}))
    return path


def count_figures(true: list[float], pred: list[float]) -> dict:
    from bundle.metrics.lesion_detection import icc

    t, p = np.asarray(true, float), np.asarray(pred, float)
    icc2, icc3 = icc(np.stack([t, p], 1))
    r = float(np.corrcoef(t, p)[0, 1]) if len(t) > 1 and t.std() > 0 and p.std() > 0 else float("nan")
    return {"n": len(t), "icc3": round(icc3, 3), "icc2": round(icc2, 3), "mae": round(float(np.abs(p - t).mean()), 2),
            "mean_error": round(float((p - t).mean()), 2), "pearson_r": round(r, 3),
            "mean_true": round(float(t.mean()), 2), "mean_pred": round(float(p.mean()), 2)}  # fmt: skip


def roi_dice(entries: list[dict], checkpoint: Path) -> dict:
    """Mean Dice per region and contrast of the regions network against the simulator's region map."""
    import torch
    from monai.bundle import ConfigParser
    from monai.metrics import compute_dice
    from monai.networks.utils import one_hot
    from monai.transforms import ResampleToMatch

    from bundle.data import LoadSubjectd
    from bundle.transforms.regions import BrainRegionsd

    parser = ConfigParser()
    parser.read_config("configs/common.yaml")
    net = parser.get_parsed_content("regions_network_def")
    net.load_state_dict(torch.load(str(checkpoint), map_location="cpu", weights_only=True))
    out: dict = {}
    for e in entries:
        d = LoadSubjectd(keys=["image", "regions"], lesions_key=None)(dict(e))
        ref = d["regions"][0].numpy().round().astype(int)
        for c, m in enumerate(MODALITIES):
            probs = BrainRegionsd("image", net, None, channel=c, load=False).probabilities(d["image"])
            pred = ResampleToMatch(mode="bilinear")(probs, img_dst=d["image"][:1]).argmax(0).numpy()
            maps = [one_hot(torch.as_tensor(x)[None, None], len(REGIONS) + 1) for x in (pred, ref)]
            dice = compute_dice(*maps, include_background=False, ignore_empty=False)[0]  # 1 where both lack a region
            for code, v in zip(REGIONS, dice.tolist()):
                out.setdefault(m, {}).setdefault(REGIONS[code], []).append(v)
    return {m: {r: round(float(np.mean(v)), 3) for r, v in per.items()} for m, per in out.items()}


def predicted_counts(folder: Path) -> dict[str, float]:
    with open(folder / "count_predictions.csv") as f:
        return {row["subject"]: float(row["predicted_count"]) for row in csv.DictReader(f)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cohorts", type=Path, required=True, help="bench_epvs_generalisation.py's --out")
    ap.add_argument("--train_regions", action="store_true")
    ap.add_argument("--regions_checkpoint", type=Path, default=Path("models/brain_regions.pt"))
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--checkpoint", type=Path, default=Path("models/gpunet_counts.pt"))
    ap.add_argument("--n_train", type=int, default=40)
    ap.add_argument("--n_val", type=int, default=6)
    ap.add_argument("--n_test", type=int, default=2)
    ap.add_argument("--test_seed", type=int, default=900)
    ap.add_argument("--n_extra", type=int, default=3)
    ap.add_argument("--extra_seed", type=int, default=950)
    ap.add_argument("--override", nargs="*", default=[], help="key=value pairs for every bundle run")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from bundle.data.synth.structural import HELD_OUT, generate_structural_cohort

    groups = make_cohorts(args.cohorts, args.n_train, args.n_val, args.n_test, args.test_seed)
    settings = ["in_distribution", *HELD_OUT]
    for k, setting in enumerate(settings):
        if args.n_extra:
            folder = args.out / "extra" / setting
            preset = "validation" if setting == "in_distribution" else setting
            generate_structural_cohort(folder, {"testing": (preset, args.n_extra)}, seed=args.extra_seed + k)
            groups[setting] += cohort_entries(folder, f"x-{setting}")
    extra = overrides(args.override)
    result: dict = {}
    if args.train_regions:
        dl = write(args.out / "regions.json", MODALITIES, training=groups["training"], validation=groups["validation"])
        run = args.out / "regions_run"
        result["regions_training_seconds"] = run_bundle(["training", "--config_file", json.dumps(
            ["configs/common.yaml", "configs/regions/train.yaml"]), "--datalist", str(dl), "--output_dir", str(run),
            "--progress", "false", "--max_epochs", "90", "--resume", "false", *extra])  # fmt: skip
        args.regions_checkpoint = run / "models" / "best_dice_brain_regions.pt"
    configs = ["configs/common.yaml", "configs/gpunet/train.yaml", "configs/gpunet/shipped.yaml"]
    common = ["--regions_checkpoint", str(args.regions_checkpoint.resolve()), "--progress", "false", *extra]
    if args.train:
        dl = write(args.out / "gpunet_train.json", ["t2"], training=[gpunet_entry(e) for e in groups["training"]],
                   validation=[gpunet_entry(e) for e in groups["validation"]])  # fmt: skip
        run = args.out / "gpunet_run"
        result["gpunet_training_seconds"] = run_bundle(["training", "--config_file", json.dumps(configs), "--datalist",
                                                        str(dl), "--output_dir", str(run), "--resume", "false",
                                                        *common])  # fmt: skip
        args.checkpoint = run / "models" / "best_count_mae_gpunet_counts.pt"
    infer = configs + ["configs/gpunet/inference.yaml"]
    per, pooled = {}, {"bundle_roi": ([], []), "simulator_roi": ([], [])}
    for setting in ["validation", *settings]:
        entries = [gpunet_entry(e) for e in groups[setting]]
        dl = write(args.out / f"{setting}.json", ["t2"], testing=entries)
        true = [e["count"] for e in entries]
        row = {}
        for source, key in (("bundle", "bundle_roi"), ("datalist", "simulator_roi")):
            folder = args.out / "eval" / f"{setting}_{source}"
            run_bundle(["inference", "--config_file", json.dumps(infer), "--datalist", str(dl), "--output_dir",
                        str(folder), "--checkpoint", str(args.checkpoint.resolve()), "--roi_source_gpunet", source,
                        "--overwrite", "true", *common])  # fmt: skip
            got = predicted_counts(folder)
            pred = [got[e["subject"]] for e in entries]
            row[key] = count_figures(true, pred)
            if setting not in ("validation", "in_distribution"):
                pooled[key][0].extend(true)
                pooled[key][1].extend(pred)
        row["roi_dice"] = roi_dice(groups[setting], args.regions_checkpoint)
        per[setting] = row
        print(setting, json.dumps(row), flush=True)
    result["settings"] = {k: str(v) for k, v in vars(args).items()}  # the checkpoints actually evaluated
    result["per_setting"] = per
    result["pooled_held_out"] = {k: count_figures(*v) for k, v in pooled.items()}
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["pooled_held_out"], indent=1))


if __name__ == "__main__":
    main()
