# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Dice of the brain-mask network against the simulators' brain masks, per contrast and setting (issue 21; not a
test).

    python tests/benchmarks/bench_brain_mask.py --out /work/bench_mask_eval [--checkpoint models/brain_mask.pt]
        [--structural /work/bench_align] [--n 1] [--seed 1800] [--baseline OTHER.pt]

Scans none of which the network was trained on (its training: ``scripts/brainmask_cohort.py``, seeds 800 and
1700):

- **structural** (T1, T2, FLAIR): the cohorts of ``bench_alignment.py`` under ``--structural`` (2 subjects per
  setting of the structural simulator: its training distribution and the 7 held-out settings; seeds 960-967),
  simulated there when absent.
- **SWI, physics simulator**: ``--n`` subjects of each held-out preset (``swi_physics.HELD_OUT`` and ``field_7t``),
  seed ``--seed`` + preset index.
- **SWI, the first simulator** (``generate_cohort("cmb")``): 2 subjects at 1 mm and 2 at 0.5 x 0.5 x 2 mm.
- **With a head** (skull, scalp, neck and the air's noise around the brain, ``head=True``): 1 structural subject
  per setting (seed 970 + setting index) and 2 SWI subjects of the first simulator at 1 mm, 0.5 x 0.5 x 2 mm and
  0.8 x 0.8 x 3 mm (seed ``--seed`` + 60).

The simulators write skull-stripped scans by default (nothing outside the brain mask), so only the scans with a
head test what a skull stripper is for.

Per scan: Dice of :class:`bundle.transforms.BrainMaskd` on the scan's own grid with the simulator's mask, and for
comparison that of the Otsu head mask the main job used before (:func:`bundle.transforms.head_mask`), and the
seconds of the network. Writes ``OUT/brain_mask.json`` and prints min / mean per contrast and setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import REPO, cohort_entries  # noqa: E402


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2.0 * (a & b).sum() / max(int(a.sum()) + int(b.sum()), 1))


def named(folder: Path, prefix: str) -> list[dict]:
    """:func:`cohort_entries` with each entry's ``modalities`` (the datalist's where the entry has none)."""
    mods = json.loads((folder / "datalist.json").read_text())["modalities"]
    return [{**e, "modalities": e.get("modalities") or mods} for e in cohort_entries(folder, prefix)]


def cohorts(args) -> list[tuple[str, list[dict]]]:
    """(setting, entries with absolute paths) of every test cohort, simulated where absent."""
    from bundle.data.synth import generate_cohort
    from bundle.data.synth.structural import HELD_OUT, generate_structural_cohort
    from bundle.data.synth.swi_physics.physics import HELD_OUT as SWI_HELD_OUT
    from bundle.data.synth.swi_physics.subject import generate_swi_cohort

    out = []
    for k, setting in enumerate(("train", *HELD_OUT)):  # the folders and seeds of bench_alignment.py
        folder = args.structural / setting
        generate_structural_cohort(folder, {"testing": (setting, 2)}, seed=960 + k, progress=False)
        out.append((f"structural {setting}", named(folder, setting)))
    for k, preset in enumerate((*SWI_HELD_OUT, "field_7t")):
        folder = args.out / "swi" / preset
        generate_swi_cohort(folder, {"testing": (preset, args.n)}, seed=args.seed + k, progress=False)
        out.append((f"swi physics {preset}", named(folder, preset)))
    for name, spacing in (("1mm", (1.0, 1.0, 1.0)), ("0.5x0.5x2mm", (0.5, 0.5, 2.0))):
        folder = args.out / "cmb" / name
        generate_cohort("cmb", 2, folder, seed=args.seed + 50, spacing=spacing, progress=False)
        out.append((f"swi first simulator {name}", named(folder, name)))
    for k, setting in enumerate(("train", *HELD_OUT)):
        folder = args.out / "structural_head" / setting
        generate_structural_cohort(folder, {"testing": (setting, 1)}, seed=970 + k, progress=False, head=True)
        out.append((f"head: structural {setting}", named(folder, setting)))
    for name, spacing in (("1mm", (1.0, 1.0, 1.0)), ("0.5x0.5x2mm", (0.5, 0.5, 2.0)), ("0.8x0.8x3mm", (0.8, 0.8, 3.0))):
        folder = args.out / "cmb_head" / name
        generate_cohort("cmb", 2, folder, seed=args.seed + 60, spacing=spacing, progress=False, head=True)
        out.append((f"head: swi first simulator {name}", named(folder, name)))
    return out


def main() -> None:
    from monai.bundle import ConfigParser

    from bundle.data import LoadSubjectd
    from bundle.transforms import BrainMaskd, head_mask

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, default=REPO / "models" / "brain_mask.pt")
    ap.add_argument("--structural", type=Path, default=Path("/work/bench_align"))
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1800)
    ap.add_argument("--baseline", type=Path, default=None, help="another checkpoint scored on the same scans")
    args = ap.parse_args()
    parser = ConfigParser()
    parser.read_config(str(REPO / "configs" / "common.yaml"))
    masker = BrainMaskd("image", parser.get_parsed_content("brainmask_network_def"), str(args.checkpoint))
    base = args.baseline and BrainMaskd("image", parser.get_parsed_content("brainmask_network_def", lazy=False),
                                        str(args.baseline))  # its own network (the parser caches the first)
    results = {}
    for setting, entries in cohorts(args):
        rows = []
        for e in entries:
            for name, path in zip(e["modalities"], e["image"]):
                d = LoadSubjectd(keys=["image", "mask"], lesions_key=None)({"subject": e["subject"], "image": [path],
                                                                          "mask": e["mask"]})  # fmt: skip
                truth = d["mask"][0].numpy() > 0
                start = time.perf_counter()
                ours = masker({"subject": e["subject"], "image": d["image"]})["mask"][0].numpy() > 0
                seconds = time.perf_counter() - start
                rows.append({"subject": e["subject"], "contrast": name, "dice": round(dice(ours, truth), 4),
                             "head_mask_dice": round(dice(head_mask(d["image"]), truth), 4),
                             "seconds": round(seconds, 2), "spacing": [round(float(s), 3) for s in d["image"].pixdim]})
                if base:
                    theirs = base({"subject": e["subject"], "image": d["image"]})["mask"][0].numpy() > 0
                    rows[-1]["baseline_dice"] = round(dice(theirs, truth), 4)
        results[setting] = rows
        for name in dict.fromkeys(r["contrast"] for r in rows):
            dices = [r["dice"] for r in rows if r["contrast"] == name]
            heads = [r["head_mask_dice"] for r in rows if r["contrast"] == name]
            older = [r["baseline_dice"] for r in rows if r["contrast"] == name and "baseline_dice" in r]
            print(f"{setting:32s} {name:6s} Dice min {min(dices):.3f} mean {np.mean(dices):.3f} | Otsu head mask "
                  f"min {min(heads):.3f} | " + (f"baseline min {min(older):.3f} | " if older else "")
                  + f"{max(r['seconds'] for r in rows):.1f} s", flush=True)  # fmt: skip
    every = [r for rows in results.values() for r in rows]
    print(f"pooled: {len(every)} scans, Dice min {min(r['dice'] for r in every):.3f}, "
          f"mean {np.mean([r['dice'] for r in every]):.3f}; below 0.95: {sum(r['dice'] < 0.95 for r in every)}"
          + (f"; baseline below 0.95: {sum(r['baseline_dice'] < 0.95 for r in every)}" if base else ""))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "brain_mask.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
