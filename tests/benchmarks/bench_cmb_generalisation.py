# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Generalisation benchmark of the main job's microbleed detector (issue 16; not part of the test suite).

    python tests/benchmarks/bench_cmb_generalisation.py --out /work/bench_gen [--train | --checkpoint models/model.pt]
        [--n_test 4] [--test_seed 500] [--train_dir DIR] [--max_val_fp 0.5] [--compare_with OLD_CHECKOUT]

1. Cohorts of the physics SWI simulator (``bundle.data.synth.swi_physics``): training and validation scans from
   the ``train`` preset (reused from ``--train_dir`` when given), and ``--n_test`` test scans per setting: the
   training distribution itself (``in_distribution``, reported apart) and every setting held out from training
   (``HELD_OUT`` plus ``field_7t``: long TE, 3 mm slices, 0.35-0.45 mm in-plane, dense veins, strongly oblique
   heads, no microbleeds, 25-30 microbleeds, low SNR, 7 T); plus scans of the project's older simulator (task
   ``cmb``, 1 mm and 0.5 x 0.5 x 2 mm), which the detector never saw. Test seeds start at ``--test_seed``: the
   300 and 500 series were used to study the misses of 0.10.0 and 0.12.0 (they informed the next weights), so
   new weights are measured on a fresh series (700 and 720 for 0.13.0, 740 for 0.14.0, 760 for 0.15.0, 780 for
   0.16.0; 740 was then the development set that chose 0.15.0; 800 is made and not yet looked at).
2. ``--train``: trains the main job's recipe (``configs/train.yaml``) on the training scans (timed).
3. Runs the main job's evaluation config (every candidate kept) on the validation and the test scans.
4. Chooses the operating threshold on the **validation scans only**: the lowest two-stage score at which they
   have at most ``--max_val_fp`` false positives per scan.
5. Prints and writes ``OUT/result.json``: per setting and pooled over the held-out settings, sensitivity and FP
   per scan at that threshold, CPM, sensitivity at 1 FP per scan, microbleeds under 3 mm found (labelled ones
   are 2-10 mm, the raters' definition), count ICC(3,1), false positives on unlabelled microbleeds visible over
   under 2 mm, on veins, on calcifications and elsewhere, FP on the scans without microbleeds.

``--extra_val N``: N more validation scans of the same distribution (seed 120, ``--extra_val_dir``; comma-separated
lists ``--extra_val 16,24 --extra_val_dir A,B`` give that many per folder, seeds 120, 130, ...), for a
steadier threshold and comparison of checkpoints. ``--only_validation --tag NAME``: evaluates one checkpoint on
the validation scans only (``OUT/result{NAME}.json``), to choose between checkpoints without looking at test scans.
``--reuse_eval``: keeps an evaluation folder made from the same checkpoint bytes and subjects. ``--mean_of
_A,_B --only_validation --tag _AB``: scores, on validation, the ensemble of checkpoints already evaluated under those
tags that share their stage 1 (so their candidates are the same rows): its score is the mean of their scores.

``--compare_with DIR``: also times the main job (``configs/inference.yaml``) of this checkout and of the checkout
in ``DIR`` (e.g. a ``git worktree`` of the previous release, with its own shipped weights) on the same 1 mm scans,
alternating, three times each.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import REPO, cohort_entries, run_bundle  # noqa: E402

TEST_SETTINGS = ("in_distribution", "long_te", "thick_slices", "fine_inplane", "dense_veins", "oblique", "no_cmb",
                 "high_load", "low_snr", "field_7t")  # fmt: skip
OLD_SIM = {"oldsim_1mm": ((1.0, 1.0, 1.0), 401), "oldsim_aniso": ((0.5, 0.5, 2.0), 402)}


def make_cohorts(out: Path, train_dir: Path, n_train: int, n_val: int, n_test: int, test_seed: int = 500,
                 extra_val: list[int] = (), extra_val_dirs: list[Path] = ()) -> dict[str, list[dict]]:
    from bundle.data.synth import generate_cohort
    from bundle.data.synth.swi_physics import generate_swi_cohort

    generate_swi_cohort(train_dir, {"training": ("train", n_train), "validation": ("validation", n_val)}, seed=100)
    d = json.loads((train_dir / "datalist.json").read_text())
    groups = {"training": _absolute(d["training"], train_dir, "train"),
              "validation": _absolute(d["validation"], train_dir, "val")}  # fmt: skip
    for k, (n, folder) in enumerate(zip(extra_val, extra_val_dirs)):  # seeds 120, 130, ...: a steadier threshold
        if not n:
            continue
        generate_swi_cohort(folder, {"validation": ("validation", n)}, seed=120 + 10 * k)
        groups["validation"] += _absolute(json.loads((folder / "datalist.json").read_text())["validation"],
                                          folder, f"val{k + 2}")
    for k, name in enumerate(TEST_SETTINGS):
        folder = out / f"test_{name}"
        preset = "train" if name == "in_distribution" else name
        generate_swi_cohort(folder, {"testing": (preset, n_test)}, seed=test_seed + k)
        groups[name] = cohort_entries(folder, name)
    for name, (spacing, seed) in OLD_SIM.items():
        generate_cohort("cmb", n_test, out / name, seed=seed, spacing=spacing, progress=False)
        groups[name] = cohort_entries(out / name, name)
    return groups


def _absolute(entries: list[dict], folder: Path, prefix: str) -> list[dict]:
    out = []
    for e in entries:
        e = dict(e)
        for k in ("image", "label", "lesions", "mask", "mimics"):
            if k in e:
                e[k] = [str(folder / p) for p in e[k]] if isinstance(e[k], list) else str(folder / e[k])
        e["subject"] = f"{prefix}-{e['subject']}"
        out.append(e)
    return out


def _datalist(path: Path, testing: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"modalities": ["swi"], "classes": ["cmb"], "testing": testing}, indent=1))
    return path


def choose_threshold(entries: list[dict], detections: Path, max_fp: float) -> float:
    """Lowest score whose rows give at most ``max_fp`` false positives per validation scan. Matching is greedy by
    descending score, so a row's hit or miss does not depend on the rows below it: one matching serves every
    threshold."""
    from bundle.evaluation.evaluate import _reference
    from bundle.metrics import evaluate_scan, objects_from_table

    table = _table(detections)
    scores, hits = [], []
    for e in entries:
        ref = _reference(e)[0]
        rows = table.get(e["subject"], [])
        res = evaluate_scan(ref, objects_from_table(rows, ref.spacing), "distance_mm")
        scores += [float(r["score"]) for r in rows]
        hits += list(res["hits"])
    scores, fp = np.asarray(scores), ~np.asarray(hits, bool)
    for t in np.unique(scores):
        if fp[scores >= t].sum() / len(entries) <= max_fp:
            return float(t)
    return 1.01


def _table(path: Path) -> dict:
    from bundle.inference import read_detections

    return read_detections(str(path))


def fp_kinds(entries: list[dict], detections: Path, threshold: float) -> dict:
    """False positives at ``threshold`` by what they lie on: an unlabelled microbleed visible over under 2 mm
    (within 2.5 mm), a vein (within its radius + 2 mm of its centre line), a calcification (within half its
    extent + 2 mm of its centre), or something else."""
    from bundle.evaluation.evaluate import _reference
    from bundle.metrics import evaluate_scan, objects_from_table

    table = _table(detections)
    kinds = {"vein": 0, "calcification": 0, "subvisible_cmb": 0, "cmb_over_10mm": 0, "other": 0}
    for e in entries:
        ref = _reference(e)[0]
        rows = [r for r in table.get(e["subject"], []) if float(r["score"]) >= threshold]
        res = evaluate_scan(ref, objects_from_table(rows, ref.spacing), "distance_mm")
        mimics = json.loads(Path(e["mimics"]).read_text()) if e.get("mimics") else []
        for r, m in zip(rows, res["match"]):
            if m >= 0:
                continue
            p = np.array([float(r["x"]), float(r["y"]), float(r["z"])])
            kinds[_kind(p, mimics)] += 1
    return kinds


def _kind(p: np.ndarray, mimics: list[dict]) -> str:
    for m in mimics:  # a microbleed visible outside 2-10 mm (unlabelled, as raters leave it) comes first
        unlabelled = m.get("kind") in ("subvisible_cmb", "cmb_over_10mm")
        if unlabelled and np.linalg.norm(p - np.asarray(m["centre_mm"])) <= 2.5:
            return m["kind"]
    for m in mimics:
        if m.get("kind") == "vein" and "points_mm" in m:
            pts = np.asarray(m["points_mm"], float)
            a, b = pts[:-1], pts[1:]
            ab = b - a
            t = np.clip(((p - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-9), 0, 1)
            if np.linalg.norm(a + t[:, None] * ab - p, axis=1).min() <= m["radius_mm"] + 2.0:
                return "vein"
        if m.get("kind") == "vein" and "extent_mm" in m:  # the older simulator's veins: a bounding extent
            if np.linalg.norm(p - np.asarray(m["centre_mm"])) <= 0.5 * max(m["extent_mm"]) + 2.0:
                return "vein"
        if m.get("kind") == "calcification":
            if np.linalg.norm(p - np.asarray(m["centre_mm"])) <= 0.5 * max(m["extent_mm"]) + 2.0:
                return "calcification"
    return "other"


def _sens_at_fp(froc: dict, max_fp: float) -> float:
    fps, sens = np.asarray(froc["fp_per_scan"]), np.asarray(froc["sensitivity"])
    ok = fps <= max_fp
    return float(sens[ok].max()) if ok.any() else 0.0


def figures(datalist: Path, detections: Path, entries: list[dict], threshold: float, out: Path) -> dict:
    from bundle.evaluation import evaluate

    m = evaluate(str(datalist), str(out), "testing", detections=str(detections), score_threshold=threshold,
                 subjects=[e["subject"] for e in entries])  # fmt: skip
    p = m["pooled"]
    zero = [s["fp"] for s in m["per_scan"] if s["n_ref"] == 0]
    by_contrast = {}  # SWI or magnitude (the simulator's swi.contrast): microbleeds under 3 mm found, and how many
    for c in ("swi", "magnitude"):
        sub = [e["subject"] for e in entries if (e.get("swi") or {}).get("contrast") == c]
        if sub:
            mc = evaluate(str(datalist), str(out / f"contrast_{c}"), "testing", detections=str(detections),
                          score_threshold=threshold, subjects=sub)["pooled"]  # fmt: skip
            by_contrast[c] = [mc["sensitivity_by_size_mm"].get("0-3"), mc["references_by_size_mm"].get("0-3")]
    return {
        "scans": p["scans"], "microbleeds": int(p["tp"] + p["fn"]), "tp": p["tp"], "fp": p["fp"], "fn": p["fn"],
        "sensitivity": p["sensitivity"], "fp_per_scan": p["fp_per_scan"], "cpm": p["cpm"],
        "sensitivity_at_1fp": _sens_at_fp(p["froc"], 1.0),
        "sensitivity_under_3mm": p["sensitivity_by_size_mm"].get("0-3"),
        "microbleeds_under_3mm": p["references_by_size_mm"].get("0-3"),
        "under_3mm_by_contrast": by_contrast,
        "icc_3_1": p["icc_3_1"], "fp_kinds": fp_kinds(entries, detections, threshold),
        "fp_per_scan_without_cmb": (sum(zero) / len(zero)) if zero else None,
        "max_fp_scan_without_cmb": max(zero) if zero else None,
    }  # fmt: skip


def time_main_job(checkouts: dict[str, Path], datalist: Path, out: Path, repeats: int = 3) -> dict:
    """Seconds of ``configs/inference.yaml`` per checkout on ``datalist`` (alternating, ``repeats`` each)."""
    import subprocess

    times: dict[str, list[float]] = {k: [] for k in checkouts}
    for r in range(repeats):
        for name, root in checkouts.items():
            t = time.time()
            args = ["run", "--config_file", "configs/inference.yaml", "--datalist", str(datalist), "--output_dir",
                    str(out / f"{name}_{r}"), "--report", "false", "--progress", "false"]  # fmt: skip
            res = subprocess.run([sys.executable, "-m", "monai.bundle", *args], cwd=root, capture_output=True, text=True)
            if res.returncode:
                sys.exit(f"{name}: main job failed\n{res.stderr[-3000:]}")
            times[name].append(round(time.time() - t, 2))
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="/tmp/bench_gen")
    p.add_argument("--train_dir", default=None, help="training/validation cohort folder (default OUT/train)")
    p.add_argument("--n_train", type=int, default=40)
    p.add_argument("--n_val", type=int, default=8)
    p.add_argument("--n_test", type=int, default=4)
    p.add_argument("--test_seed", type=int, default=500,
                   help="seed of the first test setting (300: the scans 0.10.0's failures were studied on)")
    p.add_argument("--train", action="store_true", help="train the main job's recipe on the training scans")
    p.add_argument("--checkpoint", default=str(REPO / "models" / "model.pt"))
    p.add_argument("--max_val_fp", type=float, default=0.5)
    p.add_argument("--compare_with", default=None, help="another checkout whose main job is timed beside this one")
    p.add_argument("--cohorts_only", action="store_true")
    p.add_argument("--extra_val", default="0", help="more validation scans, per folder: N or N1,N2 (seeds 120, ...)")
    p.add_argument("--extra_val_dir", default=None, help="their folder(s), comma-separated (default OUT/val_extra)")
    p.add_argument("--only_validation", action="store_true", help="evaluate the validation scans only")
    p.add_argument("--tag", default="", help="suffix of the evaluation folders and of result.json (one per checkpoint)")
    p.add_argument("--mean_of", default=None, help="comma-separated tags whose validation tables are averaged")
    p.add_argument("--reuse_eval", action="store_true",
                   help="reuse an evaluation folder made with the same checkpoint and subjects (every candidate kept)")
    a = p.parse_args()
    out = Path(a.out)
    train_dir = Path(a.train_dir) if a.train_dir else out / "train"
    extra_dirs = [Path(d) for d in a.extra_val_dir.split(",")] if a.extra_val_dir else [out / "val_extra"]
    counts = [int(n) for n in str(a.extra_val).split(",")]  # a 0 skips its folder but keeps the next one's seed
    if counts != [0] and len(counts) != len(extra_dirs):
        sys.exit(f"--extra_val gives {len(counts)} counts for {len(extra_dirs)} --extra_val_dir folders")
    groups = make_cohorts(out, train_dir, a.n_train, a.n_val, a.n_test, a.test_seed, counts, extra_dirs)
    if a.cohorts_only:
        return
    result: dict = {"settings": {k: len(v) for k, v in groups.items()}}
    ckpt = Path(a.checkpoint)
    if a.train:
        dl = out / "train_datalist.json"
        dl.write_text(json.dumps({"modalities": ["swi"], "classes": ["cmb"], "training": groups["training"]}))
        run_dir = out / "run"
        result["training_seconds"] = round(run_bundle(["training", "--config_file", "configs/train.yaml", "--datalist",
                                                       str(dl), "--output_dir", str(run_dir), "--progress", "false"]), 1)
        ckpt = run_dir / "models" / "cmb_detector.pt"
    result["checkpoint"] = str(ckpt)
    tests = [e for name, es in groups.items() if name not in ("training", "validation") for e in es]
    dl_val = _datalist(out / f"val_datalist{a.tag}.json", groups["validation"])
    dl_test = _datalist(out / "test_datalist.json", tests)
    if a.mean_of:  # an ensemble of evaluated checkpoints with one stage 1, scored on validation only
        tags = a.mean_of.split(",")
        mean_tables([out / f"eval_validation{t}" / "detections.csv" for t in tags], out / f"eval_validation{a.tag}")
        result["checkpoint"], a.only_validation = f"mean of {tags}", True
    for name, dl in (("validation", dl_val), ("testing", dl_test))[: 0 if a.mean_of else 1 if a.only_validation else 2]:
        result[f"inference_seconds_per_scan_{name}"] = evaluate_once(dl, out / f"eval_{name}{a.tag}", ckpt, a.reuse_eval)
    det_val = out / f"eval_validation{a.tag}" / "detections.csv"
    thr = choose_threshold(groups["validation"], det_val, a.max_val_fp)
    result["threshold_chosen_on_validation"] = thr
    result["validation"] = figures(dl_val, det_val, groups["validation"], thr, out / f"fig_validation{a.tag}")
    if a.only_validation:
        return _write(out / f"result{a.tag}.json", result)
    det = out / f"eval_testing{a.tag}" / "detections.csv"
    held = [e for name in TEST_SETTINGS[1:] for e in groups[name]]
    result["held_out_pooled"] = figures(dl_test, det, held, thr, out / f"fig_held_out{a.tag}")
    for name in (*TEST_SETTINGS, *OLD_SIM):
        result[name] = figures(dl_test, det, groups[name], thr, out / f"fig_{name}{a.tag}")
    old = [e for name in OLD_SIM for e in groups[name]]
    result["old_simulator_pooled"] = figures(dl_test, det, old, thr, out / f"fig_oldsim{a.tag}")
    if a.compare_with:
        timing_dl = _datalist(out / "timing_datalist.json", groups["oldsim_1mm"][:2])
        result["main_job_seconds_2_scans_1mm"] = time_main_job({"this": REPO, "other": Path(a.compare_with)},
                                                               timing_dl, Path(tempfile.mkdtemp(prefix="timing_", dir=out)))  # fresh: runs never mix
    _write(out / f"result{a.tag}.json", result)


def evaluate_once(datalist: Path, folder: Path, ckpt: Path, reuse: bool) -> float | None:
    """Seconds per scan of the evaluation config (every candidate kept) on ``datalist`` into ``folder``; with
    ``reuse``, an existing folder made from the same checkpoint bytes and subjects is kept (``None`` returned)."""
    import hashlib

    stamp = {"checkpoint_sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest(),
             "subjects": sorted(e["subject"] for e in json.loads(datalist.read_text())["testing"])}  # fmt: skip
    if reuse and (folder / "detections.csv").is_file() and (folder / "made_from.json").is_file():
        if json.loads((folder / "made_from.json").read_text()) != stamp:
            sys.exit(f"{folder}: made from another checkpoint or other subjects; remove it or drop --reuse_eval")
        return None
    t = run_bundle(["evaluation", "--config_file", "configs/evaluate.yaml", "--datalist", str(datalist),
                    "--output_dir", str(folder), "--checkpoint", str(ckpt), "--progress", "false"])  # fmt: skip
    (folder / "made_from.json").write_text(json.dumps(stamp))
    return round(t / max(len(stamp["subjects"]), 1), 2)


def mean_tables(tables: list[Path], folder: Path) -> Path:
    """``folder/detections.csv``: the first table with each row's score the mean of that row's score in every table;
    the tables must hold the same candidates in the same order (checkpoints sharing their stage 1)."""
    import csv

    rows = []
    for t in tables:
        with open(t, newline="") as f:
            rows.append(list(csv.DictReader(f)))
    if any(len(r) != len(rows[0]) for r in rows) or any(
        (a["subject"], a["x"], a["y"], a["z"]) != (b["subject"], b["x"], b["y"], b["z"])
        for other in rows[1:] for a, b in zip(rows[0], other)
    ):  # fmt: skip
        sys.exit(f"the tables {[str(t) for t in tables]} hold different candidates: their stage 1 differs")
    out = [dict(r, score=repr(float(np.mean([float(t[i]["score"]) for t in rows])))) for i, r in enumerate(rows[0])]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "detections.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(out[0]))
        w.writeheader()
        w.writerows(out)
    return folder / "detections.csv"


def _write(path: Path, result: dict) -> None:
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
