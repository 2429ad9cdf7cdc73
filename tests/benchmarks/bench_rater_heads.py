# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""How the structural U-Net's rater heads are fitted, chosen on validation scans only (not a test).

    python tests/benchmarks/bench_rater_heads.py --out /work/bench_epvs

1. Features: the shipped detector at its operating point with ``--rater_features true`` on the 40 training scans of
   ``bench_epvs_generalisation.py`` (OUT/train.json; half with all three modalities, the other half cycling through
   T1 + FLAIR, T2 + FLAIR, T2 and T1), through ``configs/unet/rater_heads.yaml`` (OUT/heads_run), and on the 6
   validation scans with each of the five inputs (OUT/heads_val_run). A folder that holds a detections table is
   reused. No test scan is read.
2. Fits each variant of ``VARIANTS`` on the training detections and measures
   :func:`bundle.metrics.rater_profiles` on the validation scans' found objects (detections matched to an object).
3. The rule, written before the first comparison: the variant whose own heads best explain more raters' answers
   (``own_head_best``) wins; a tie goes to the higher mean own-head margin. Writes OUT/rater_heads.json and each
   variant's heads to OUT/rater_heads_<variant>.pt (copy the winner to models/structural_rater_heads.pt).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_epvs_generalisation import SUBSETS, with_subset  # noqa: E402
from bench_utils import run_bundle  # noqa: E402

from bundle.data.synth.raters import PROFILES  # noqa: E402
from bundle.data.vocabulary import ANSWERS  # noqa: E402

INFER = ["configs/common.yaml", "configs/unet/train.yaml", "configs/unet/structural.yaml",
         "configs/unet/inference.yaml", "configs/unet/structural_inference.yaml"]  # fmt: skip
FIT = {"hidden": 32, "steps": 3000, "lr": 3e-3, "weight_decay": 1e-4, "seed": 0}
VARIANTS = {"unmatched_nothing": {"unmatched": True}, "objects_only": {"unmatched": False},
            "ability_unmatched_nothing": {"unmatched": True, "kind": "ability"},
            "ability_objects_only": {"unmatched": False, "kind": "ability"}}  # fmt: skip
ORDER = ["all", "t1_flair", "all", "t2_flair", "all", "t2", "all", "t1"]  # training scan k gets ORDER[k % 8]


def features_run(out: Path, name: str, entries: list[dict], configs: list[str]) -> Path:
    folder, datalist = out / name, out / f"{name}.json"
    datalist.write_text(json.dumps({"modalities": list(SUBSETS["all"]), "classes": ["epvs", "lacune"],
                                    "testing": entries}))  # fmt: skip
    if not (folder / "detections.csv").is_file():
        run_bundle(["run", "--config_file", json.dumps(configs), "--datalist", str(datalist), "--output_dir",
                    str(folder), "--progress", "false", "--rater_features", "true", "--rater_heads", "None"])
    return folder / "detections.csv"


def wrong_answers(answers: np.ndarray, probs: np.ndarray, truth: np.ndarray) -> dict:
    """Per rater, how their wrong answers (not the object's class) split among nothing / the other class /
    undecided, and how each rater's head splits its probability of a wrong answer the same way."""
    other = np.where(truth == ANSWERS.index("epvs"), ANSWERS.index("lacune"), ANSWERS.index("epvs"))
    cols = np.stack([np.full_like(truth, ANSWERS.index("nothing")), other,
                     np.full_like(truth, ANSWERS.index("undecided"))], 1)  # fmt: skip
    out = {"order": ["nothing", "other class", "undecided"], "raters": [], "heads": []}
    for r in range(answers.shape[1]):
        said = (answers[:, r, None] == cols).sum(0)
        head = np.take_along_axis(probs[:, r], cols, 1).sum(0)
        out["raters"].append(np.round(said / max(said.sum(), 1), 3).tolist())
        out["heads"].append(np.round(head / max(head.sum(), 1e-9), 3).tolist())
    return out


def main() -> None:
    from bundle.data.datalist import load_datalist
    from bundle.inference import read_detections
    from bundle.methods.unet import feature_names, fit_rater_heads, load_rater_heads
    from bundle.methods.unet.raters import training_pairs
    from bundle.metrics import rater_profiles

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    d = json.loads((args.out / "train.json").read_text())
    train = [with_subset([e], ORDER[k % len(ORDER)])[0] for k, e in enumerate(d["training"])]
    val = [e for s in SUBSETS for e in with_subset(d["validation"], s)]
    train_csv = features_run(args.out, "heads_run", train, INFER + ["configs/unet/rater_heads.yaml"])
    val_csv = features_run(args.out, "heads_val_run", val, INFER)
    names = feature_names(["epvs", "lacune"], 3)
    table = read_detections(val_csv)
    pairs = [training_pairs(e, table.get(e["subject"], []), names, unmatched=False)
             for e in load_datalist(args.out / "heads_val_run.json", "testing")]  # fmt: skip
    x, y, truth = (np.concatenate([p[k] for p in pairs]) for k in range(3))
    result = {"fit": FIT, "validation_objects": len(x), "variants": {}}
    import torch

    for name, extra in VARIANTS.items():
        path = args.out / f"rater_heads_{name}.pt"
        path.unlink(missing_ok=True)
        fitted = fit_rater_heads(str(args.out / "heads_run.json"), str(train_csv), str(path), split="testing",
                                 features=names, **FIT, **extra)  # fmt: skip
        with torch.no_grad():
            probs = torch.softmax(load_rater_heads(path, names)(torch.as_tensor(x)), -1).numpy()
        f = rater_profiles(y, probs)
        result["variants"][name] = {"training_objects": fitted["objects"], "profiles": f,
                                    "own_best": int(sum(f["own_head_best"])),
                                    "mean_margin": float(np.mean(f["own_head_margin"])),
                                    "wrong_answers": wrong_answers(y, probs, truth)}  # fmt: skip
        if extra.get("kind") == "ability":
            ability = torch.load(path, weights_only=True)["state_dict"]["ability"].numpy()
            result["variants"][name]["ability"] = np.round(ability, 3).tolist()
            rho = spearmanr(ability, [p[0] for p in PROFILES]).statistic  # the simulator's skill centres, ties kept
            result["variants"][name]["ability_rank_vs_simulated_skill"] = round(float(rho), 3)
        print(name, json.dumps({k: result["variants"][name][k] for k in ("own_best", "mean_margin")}),
              "best head per rater", f["best_head"], flush=True)
    result["chosen"] = max(result["variants"], key=lambda v: (result["variants"][v]["own_best"],
                                                              result["variants"][v]["mean_margin"]))  # fmt: skip
    (args.out / "rater_heads.json").write_text(json.dumps(result, indent=1))
    print("chosen:", result["chosen"])


if __name__ == "__main__":
    main()
