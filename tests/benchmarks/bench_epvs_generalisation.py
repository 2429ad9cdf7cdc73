# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Generalisation benchmark of the EPVS and lacune detectors (the multirater RCNN, the structural U-Net; issue 20;
not a test).

    python tests/benchmarks/bench_epvs_generalisation.py --out /work/bench_epvs [--method rcnn | unet]
        [--train | --checkpoint FILE] [--overlay configs/rcnn/shipped.yaml] [--n_train 40] [--n_val 8] [--n_test 3]
        [--test_seed 900]
        [--cohorts_only]
        [--subset_settings in_distribution,thick_slices,other_contrast] [--validation_only] [--result result.json]

1. Cohorts of the structural simulator (``bundle.data.synth.structural``): training and validation scans of the
   ``train``/``validation`` presets (seed 800), and ``--n_test`` test scans per setting: the training distribution
   (``in_distribution``, reported apart) and every setting held out from training (``HELD_OUT``: 3.5-4.5 mm
   slices, spoiled-gradient-echo T1 with long-TE T2 and off-null FLAIR, 250-400 EPVS, no lesions, severe atrophy
   and WMH, low SNR, heads rotated 20-30 degrees). Each setting has its own seed from ``--test_seed``.
2. ``--train``: trains the method's config (``METHODS``: the RCNN's ``configs/rcnn/train.yaml``, or the U-Net's
   ``configs/unet/train.yaml`` + ``structural.yaml``; plus ``--overlay``) on the training scans (and, for the
   U-Net, its whole-volume validation on the validation scans, which chooses the kept network).
3. Runs the method's inference config (every detection kept) on the validation scans, then on the test scans, also with
   modalities removed for the settings of ``--subset_settings`` (T1 + FLAIR, T2 + FLAIR, T2, T1).
4. Chooses the operating threshold on the **validation scans only** (all modalities): the lowest score at which
   they have at most ``--max_val_fp`` false positives per scan. The validation scans' own figures at that threshold,
   with all modalities and with each subset, go to the result file (``validation``; ``validation_pooled``: the five
   inputs' scans together; ``validation_mean_epvs_sensitivity_at_5fp``: over the five inputs): the figures that may
   compare networks. ``--validation_only`` stops there, before inference runs on any test scan.
   Evaluations are reused only when made from the same checkpoint bytes, shipped weights, configs, bundle code,
   overrides and subjects.
5. Writes ``OUT/<--result>`` (``result.json``) and prints, per setting and subset and pooled over the held-out settings:
   EPVS sensitivity at <= 5 FP per scan (a point of the FROC curve) and at the operating threshold, EPVS count
   ICC(3,1) and ICC(2,1) per region (basal ganglia, centrum semiovale; detections labelled EPVS at the operating
   threshold, each counted in its matched object's region, an unmatched one in the simulator's region map under
   it), lacune F1 at the operating threshold (detections labelled lacune matched to lacunes on their own),
   lacune-vs-EPVS accuracy where at least 4 of 6 raters agree, and each rater head's agreement with every rater
   (on the diagonal: its own) and, where the detections carry the heads' answer probabilities (the U-Net's heads),
   the rater profiles of :func:`bundle.metrics.rater_profiles` (``rater_heads.profiles``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import REPO, cohort_entries, run_bundle  # noqa: E402

from bundle.data.vocabulary import ANSWERS  # noqa: E402

SUBSETS = {"all": ("t1", "t2", "flair"), "t1_flair": ("t1", "flair"), "t2_flair": ("t2", "flair"), "t2": ("t2",),
           "t1": ("t1",)}  # fmt: skip
REGIONS = ("basal_ganglia", "centrum_semiovale")
# per method: training configs, the configs added for inference, run ids (training, inference), the trained
# checkpoint inside the training's output folder, and arguments of every run (no progress bars; keep every detection)
METHODS = {
    "rcnn": {"train": ["configs/common.yaml", "configs/rcnn/train.yaml"],
             "infer": ["configs/rcnn/inference.yaml", "configs/rcnn/evaluate.yaml"], "ids": ("training", "evaluation"),
             "checkpoint": "models/rcnn_detector.pt", "args": ["--progress", "false"]},
    "unet": {"train": ["configs/common.yaml", "configs/unet/train.yaml", "configs/unet/structural.yaml"],
             "infer": ["configs/unet/inference.yaml", "configs/unet/structural_inference.yaml"], "ids": ("run", "run"),
             "checkpoint": "checkpoints/best_network.pt",
             "args": ["--progress", "false", "--detection_threshold", "0"]},
}  # fmt: skip


def make_cohorts(out: Path, n_train: int, n_val: int, n_test: int, test_seed: int) -> dict[str, list[dict]]:
    from bundle.data.synth.structural import HELD_OUT, generate_structural_cohort

    generate_structural_cohort(out / "train", {"training": ("train", n_train), "validation": ("validation", n_val)},
                               seed=800)  # fmt: skip
    train = cohort_entries(out / "train", "tr")
    groups = {"training": [e for e in train if e["subject"] < f"tr-sub-{n_train:04d}"],
              "validation": [e for e in train if e["subject"] >= f"tr-sub-{n_train:04d}"]}  # fmt: skip
    for k, setting in enumerate(("in_distribution", *HELD_OUT)):
        preset = "validation" if setting == "in_distribution" else setting
        folder = out / "test" / setting
        generate_structural_cohort(folder, {"testing": (preset, n_test)}, seed=test_seed + k)
        groups[setting] = cohort_entries(folder, setting)
    return groups


def with_subset(entries: list[dict], subset: str) -> list[dict]:
    """The entries with only the images of ``subset`` (``modalities`` key), subject ids suffixed."""
    if subset == "all":
        return entries
    keep = SUBSETS[subset]
    return [{**e, "subject": f"{e['subject']}-{subset}", "modalities": list(keep),
             "image": [p for m, p in zip(SUBSETS["all"], e["image"]) if m in keep]} for e in entries]  # fmt: skip


def write_datalist(path: Path, training: list[dict], testing: list[dict], validation: list[dict] = ()) -> Path:
    path.write_text(json.dumps({"modalities": list(SUBSETS["all"]), "classes": ["epvs", "lacune"],
                                "training": training, "validation": list(validation), "testing": testing}))  # fmt: skip
    return path


def scan_figures(entry: dict, rows: list[dict]) -> dict:
    """Per scan: references (class, raters, region), detections matched by centre distance (<= 5 mm, greedy by
    score) and the region code under each detection."""
    from bundle.data import load_volume
    from bundle.metrics.lesion_matching import match_by_distance
    from bundle.metrics.objects import objects_from_instances, objects_from_table

    label = load_volume(entry["label"], entry["subject"], "label")
    lab = label[0].numpy().astype(np.int64)
    spacing = np.asarray(label.pixdim, float)
    records = {int(r["id"]): r for r in json.loads(Path(entry["lesions"]).read_text())}
    ref = objects_from_instances(lab, spacing)
    ids = np.unique(lab[lab > 0])
    pred = objects_from_table(rows, spacing)
    match = match_by_distance(ref, pred, 5.0) if len(rows) else np.zeros(0, np.int64)
    regions = np.asarray(load_volume(entry["regions"], entry["subject"], "regions")[0])
    vox = np.array([[int(round(float(r[c]))) for c in "ijk"] for r in rows], int).reshape(-1, 3)
    vox = np.clip(vox, 0, np.array(regions.shape) - 1)
    return {
        "ref": [records[int(i)] for i in ids],
        "ref_mm": ref.centres * spacing,
        "pred_mm": pred.centres * spacing,
        "match": match,
        "scores": np.array([float(r["score"]) for r in rows]),
        "labels": [r["label"] for r in rows],
        "heads": [[r.get(f"rater{k}") for k in range(1, 7)] for r in rows],
        "head_probs": [[[r.get(f"rater{k}_p_{a}") for a in ANSWERS] for k in range(1, 7)] for r in rows],
        "region": regions[tuple(vox.T)] if len(rows) else np.zeros(0, int),
        "counts": entry["counts_by_region"]["epvs"],
    }


def threshold_at(scans: list[dict], max_fp: float) -> float:
    """The lowest score threshold at which the scans have at most ``max_fp`` unmatched detections per scan."""
    scores = np.concatenate([s["scores"][s["match"] < 0] for s in scans] + [np.zeros(0)])
    allowed = int(np.floor(max_fp * len(scans)))
    if len(scores) <= allowed:
        return 0.0
    return float(np.sort(scores)[::-1][allowed]) + 1e-9


def lacune_hits(ref_mm: np.ndarray, pred_mm: np.ndarray, scores: np.ndarray) -> int:
    """Predictions matched one-to-one to references within 5 mm (the evaluation's rule, on mm coordinates)."""
    from bundle.metrics.lesion_matching import match_by_distance
    from bundle.metrics.objects import Objects

    def objs(c, sc):
        c = np.asarray(c, float).reshape(-1, 3)
        return Objects(c, np.zeros(len(c)), np.asarray(sc, float), np.array([""] * len(c), object), None, np.ones(3))

    return int((match_by_distance(objs(ref_mm, np.ones(len(ref_mm))), objs(pred_mm, scores), 5.0) >= 0).sum())


def figures(scans: list[dict], threshold: float) -> dict:
    from bundle.data.synth.structural import REGION_CODES
    from bundle.metrics.froc import froc_curve
    from bundle.metrics.lesion_detection import icc
    from bundle.metrics.raters import rater_profiles

    out: dict = {"scans": len(scans), "threshold": threshold}
    # EPVS detection: a hit finds an EPVS reference; a detection matched to a lacune is neither hit nor FP
    hits, scores, n_epvs = [], [], 0
    for s in scans:
        cls = np.array([r["class"] for r in s["ref"]])
        n_epvs += int((cls == "epvs").sum())
        keep = np.ones(len(s["match"]), bool)
        if len(cls):
            keep = (s["match"] < 0) | (cls[np.maximum(s["match"], 0)] == "epvs")
        hits.append((s["match"] >= 0)[keep])
        scores.append(s["scores"][keep])
    hits, scores = np.concatenate(hits + [np.zeros(0, bool)]), np.concatenate(scores + [np.zeros(0)])
    fps, sens, _ = froc_curve(scores, hits, n_epvs, len(scans))
    ok = np.flatnonzero(fps <= 5.0)
    out["epvs"] = {"n": n_epvs, "sensitivity_at_5fp": float(sens[ok[-1]]) if len(ok) and n_epvs else float("nan"),
                   "sensitivity": float(hits[scores >= threshold].sum() / n_epvs) if n_epvs else float("nan"),
                   "fp_per_scan": float((~hits[scores >= threshold]).sum() / max(len(scans), 1))}  # fmt: skip
    # EPVS counts per region: detections labelled EPVS at the threshold, each in its matched object's region (the
    # region the true count uses) or, unmatched, in the region map's region under it
    out["count_icc"] = {}
    for region in REGIONS:
        code = REGION_CODES[region]
        pairs = []
        for s in scans:
            where = [s["ref"][m]["region"] == region if m >= 0 else s["region"][p] == code
                     for p, m in enumerate(s["match"])]  # fmt: skip
            found = (s["scores"] >= threshold) & (np.array(s["labels"]) == "epvs") & np.array(where, bool)
            pairs.append([s["counts"][region], int(found.sum())])
        pairs = np.array(pairs, float).reshape(-1, 2)
        icc21, icc31 = icc(pairs)
        out["count_icc"][region] = {"icc_3_1": float(icc31), "icc_2_1": float(icc21),
                                    "true_mean": float(pairs[:, 0].mean()), "detected_mean": float(pairs[:, 1].mean())}
    # lacunes at the threshold: detections labelled lacune matched to lacune references on their own
    tp = n_det = n_lac = 0
    agreed, heads = [], []
    for s in scans:
        cls = [r["class"] for r in s["ref"]]
        n_lac += cls.count("lacune")
        dets = [p for p in np.flatnonzero(s["scores"] >= threshold) if s["labels"][p] == "lacune"]
        n_det += len(dets)
        tp += lacune_hits(s["ref_mm"][[c == "lacune" for c in cls]], s["pred_mm"][dets], s["scores"][dets])
        for p in np.flatnonzero(s["scores"] >= threshold):
            lab = s["labels"][p]
            if s["match"][p] < 0:
                continue
            rec = s["ref"][s["match"][p]]
            answers = rec.get("raters", [])
            top = max(("lacune", "epvs"), key=answers.count)
            if answers.count(top) >= 4:
                agreed.append(lab == top)
            heads.append((answers, s["heads"][p], s["head_probs"][p]))
    prec, rec_ = (tp / n_det if n_det else float("nan")), (tp / n_lac if n_lac else float("nan"))
    out["lacune"] = {"n": n_lac, "detected": n_det, "tp": tp, "precision": prec, "recall": rec_,
                     "f1": 2 * prec * rec_ / (prec + rec_) if n_det and n_lac and prec + rec_ else float("nan")}
    out["class_accuracy_4_of_6"] = {"n": len(agreed), "accuracy": float(np.mean(agreed)) if agreed else float("nan")}
    if not any(x is not None for _, h, _ in heads for x in h):  # no rater heads, or no object found
        out["rater_heads"] = None
        return out
    agree = np.full((6, 6), np.nan)
    for k in range(6):  # head k against rater j, on found objects
        for j in range(6):
            pairs = [(a[j], h[k]) for a, h, _ in heads if len(a) == 6]
            agree[k, j] = np.mean([x == y for x, y in pairs]) if pairs else np.nan
    out["rater_heads"] = {"agreement": np.round(agree, 3).tolist(),
                          "own_rater_highest": [bool(agree[k, k] >= np.nanmax(agree[k])) for k in range(6)]}
    probs = [(a, p) for a, _, p in heads if len(a) == 6 and all(x is not None for q in p for x in q)]
    if probs:  # heads with answer probabilities: does each rater's own head explain their answers best?
        out["rater_heads"]["profiles"] = rater_profiles(np.array([[ANSWERS.index(x) for x in a] for a, _ in probs]),
                                                        np.array([p for _, p in probs], float))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--method", choices=sorted(METHODS), default="rcnn")
    ap.add_argument("--overlay", default=None, help="config added after the method's training configs (default: "
                    "configs/rcnn/shipped.yaml for the RCNN, none for the U-Net)")
    ap.add_argument("--cohorts_only", action="store_true", help="make the cohorts and OUT/train.json, then stop")
    ap.add_argument("--n_train", type=int, default=40)
    ap.add_argument("--n_val", type=int, default=8)
    ap.add_argument("--n_test", type=int, default=3)
    ap.add_argument("--test_seed", type=int, default=900)
    ap.add_argument("--max_val_fp", type=float, default=5.0)
    ap.add_argument("--subset_settings", default="in_distribution,thick_slices,other_contrast")
    ap.add_argument("--validation_only", action="store_true", help="stop after the validation scans' figures")
    ap.add_argument("--result", default="result.json", help="file name of the figures inside OUT")
    ap.add_argument("--override", nargs="*", default=[], help="key=value pairs for every bundle run")
    args = ap.parse_args()
    if Path(args.result).name != args.result:
        ap.error(f"--result is a file name inside OUT, not a path: {args.result}")
    args.out.mkdir(parents=True, exist_ok=True)
    groups = make_cohorts(args.out, args.n_train, args.n_val, args.n_test, args.test_seed)
    write_datalist(args.out / "train.json", groups["training"], [], groups["validation"])
    if args.cohorts_only:
        return
    method = METHODS[args.method]
    default_overlay = "configs/rcnn/shipped.yaml" if args.method == "rcnn" else ""
    overlay = args.overlay if args.overlay is not None else default_overlay
    configs = [*method["train"], *([overlay] if overlay else [])]
    extra = [x for kv in args.override for x in (f"--{kv.split('=', 1)[0]}", kv.split("=", 1)[1])]
    result: dict = {"settings": vars(args) | {"out": str(args.out), "checkpoint": str(args.checkpoint)}}
    ckpt = args.checkpoint
    if args.train:
        run = args.out / "train_run"
        result["training_seconds"] = run_bundle([method["ids"][0], "--config_file", json.dumps(configs), "--datalist",
                                                 str(args.out / "train.json"), "--output_dir", str(run),
                                                 *method["args"], *extra])  # fmt: skip
        ckpt = run / method["checkpoint"]
    evaluate = configs + method["infer"]
    code = hashlib.sha256(b"".join(p.read_bytes() for p in sorted((REPO / "bundle").rglob("*.py")))).hexdigest()
    models = hashlib.sha256(b"".join(p.read_bytes() for p in sorted((REPO / "models").glob("*.pt")))).hexdigest()

    def detect(name: str, entries: list[dict]) -> list[dict]:
        dl = write_datalist(args.out / f"{name}.json", [], entries)
        folder = args.out / "eval" / name
        key = {"checkpoint_sha256": hashlib.sha256(Path(ckpt).read_bytes()).hexdigest(), "configs": evaluate,
               "models_sha256": models,  # the configs' other weights (e.g. the rater heads)
               "configs_sha256": [hashlib.sha256((REPO / c).read_bytes()).hexdigest() for c in evaluate],
               "bundle_sha256": code, "overrides": extra,  # a cached run of other code or configs runs again
               "subjects": [e["subject"] for e in entries]}  # fmt: skip
        done = folder / "bench_key.json"
        if not (folder / "detections.csv").is_file() or not done.is_file() or json.loads(done.read_text()) != key:
            start = time.time()
            run_bundle([method["ids"][1], "--config_file", json.dumps(evaluate), "--datalist", str(dl), "--output_dir",
                        str(folder), "--checkpoint", str(ckpt), *method["args"], "--overwrite", "true", *extra])
            done.write_text(json.dumps(key))
            result.setdefault("inference_seconds", {})[name] = round(time.time() - start, 1)
        from bundle.inference import read_detections

        table = read_detections(str(folder / "detections.csv"))
        return [scan_figures(e, table.get(e["subject"], [])) for e in entries]

    validation = {"all": detect("validation", groups["validation"])}
    threshold = threshold_at(validation["all"], args.max_val_fp)
    result["threshold"] = threshold
    for subset in [s for s in SUBSETS if s != "all"]:
        validation[subset] = detect(f"validation_{subset}", with_subset(groups["validation"], subset))
    result["validation"] = {s: figures(v, threshold) for s, v in validation.items()}
    result["validation_pooled"] = figures([scan for v in validation.values() for scan in v], threshold)
    result["validation_mean_epvs_sensitivity_at_5fp"] = float(
        np.mean([f["epvs"]["sensitivity_at_5fp"] for f in result["validation"].values()]))
    for subset, f in [*result["validation"].items(), ("pooled", result["validation_pooled"])]:
        print("validation", subset, json.dumps({k: v for k, v in f.items() if k != "rater_heads"}), flush=True)
    if args.validation_only:
        (args.out / args.result).write_text(json.dumps(result, indent=1, default=float))
        return
    per, pooled = {}, {s: [] for s in SUBSETS}
    subset_settings = set(args.subset_settings.split(",")) if args.subset_settings else set()
    for setting in [g for g in groups if g not in ("training", "validation")]:
        for subset in SUBSETS:
            if subset != "all" and setting not in subset_settings:
                continue
            scans = detect(f"{setting}_{subset}", with_subset(groups[setting], subset))
            per[f"{setting}/{subset}"] = figures(scans, threshold)
            if setting != "in_distribution":
                pooled[subset] += scans
            print(setting, subset, json.dumps({k: v for k, v in per[f"{setting}/{subset}"].items()
                                               if k != "rater_heads"}), flush=True)  # fmt: skip
    result["per_setting"] = per
    result["pooled_held_out"] = {s: figures(v, threshold) for s, v in pooled.items() if v}
    (args.out / args.result).write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps(result["pooled_held_out"], indent=1, default=float))


if __name__ == "__main__":
    main()
