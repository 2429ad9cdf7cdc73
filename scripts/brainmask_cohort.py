# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The brain-mask network's training data (docs/brain_mask.md; developer tooling, not shipped):

    python -m scripts.brainmask_cohort --out /work/bench_mask [--structural /work/bench_epvs/train]

Simulates (or reuses), skull-stripped as the simulators write them by default: 40 training and 6 validation scans of
the structural simulator (preset ``train``/``validation``, seed 800: the EPVS benchmark's training cohort) and 12
training (``train_wide``) and 3 validation scans of the physics SWI simulator (seed 1700); with a head around the
brain (``head=True``): 24 training and 4 validation structural scans (seed 810) and 2 x 6 SWI scans of the first
simulator at 1 mm and 0.5 x 0.5 x 2 mm (seeds 1710, 1711; its validation split validates, the rest trains); of the
structural preset ``train_wide`` (head pose to 35 degrees, atrophy to 1, slices to 5 mm), 12 training and 2
validation scans skull-stripped (seed 820) and as many with a head (seed 830). Writes ``OUT/datalist.json``: every
scan with its own contrasts (T1, T2, FLAIR or SWI), absolute paths, and the simulator's brain mask.

``cut``: 12 training and 2 validation structural scans (seed 840) and 6 + 1 physics-SWI scans (seed 1720) whose
field of view cuts the brain (:func:`cut_field_of_view`).

``--parts`` makes and lists only some of these cohorts (the second stage tried in docs/brain_mask.md, not
shipped, used ``wide swi swi_heads``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PARTS = ("structural", "swi", "heads", "swi_heads", "wide", "cut")


def cut_field_of_view(folder: Path, seed: int) -> None:
    """Crop every subject of ``folder`` as a scan whose field of view cuts the brain: on 1-3 random faces of the
    volume, 5-25 % of the brain's extent along that axis is cut off. Every NIfTI of the subject on the brain mask's
    grid (images, mask, label maps) is cut with the same box, so the affines stay right. Done once per subject
    (``fov_cut.json`` records each subject's box as it is done; each file is replaced atomically). Lesion records
    and counts are left as they were: these cohorts train the brain-mask network only."""
    import nibabel as nib
    import numpy as np

    from bundle.data.io import atomic_path, write_json

    record = folder / "fov_cut.json"
    boxes = json.loads(record.read_text()) if record.exists() else {}
    d, rng = json.loads((folder / "datalist.json").read_text()), np.random.default_rng(seed)
    for e in [e for split in ("training", "validation", "testing") for e in d.get(split, [])]:
        mask = nib.load(folder / e["mask"])
        inside = np.nonzero(np.asarray(mask.dataobj) > 0)
        lo, hi = [int(i.min()) for i in inside], [int(i.max()) + 1 for i in inside]
        box = [[0, n] for n in mask.shape[:3]]
        for face in rng.choice(6, size=int(rng.integers(1, 4)), replace=False):
            axis, depth = int(face) // 2, int(round(rng.uniform(0.05, 0.25) * (hi[face // 2] - lo[face // 2])))
            box[axis][face % 2] = lo[axis] + depth if face % 2 == 0 else hi[axis] - depth
        if e["subject"] in boxes:
            continue
        for path in sorted((folder / e["mask"]).parent.glob("*.nii.gz")):
            img = nib.load(path)
            if img.shape[:3] == mask.shape[:3]:
                cut = img.slicer[box[0][0]:box[0][1], box[1][0]:box[1][1], box[2][0]:box[2][1]]
                with atomic_path(path) as tmp:
                    nib.save(nib.Nifti1Image(np.asarray(cut.dataobj), cut.affine, cut.header), tmp)
        boxes[e["subject"]] = box
        write_json(boxes, record)


def entries(folder: Path, split: str) -> list[dict]:
    d = json.loads((folder / "datalist.json").read_text())
    mods = d["modalities"]
    out = []
    for e in (d.get("training", []) + d.get("testing", []) if split == "training+testing" else d.get(split, [])):
        out.append({"subject": f"{folder.name}-{e['subject']}", "image": [str(folder / p) for p in e["image"]],
                    "modalities": list(e.get("modalities", mods)), "mask": str(folder / e["mask"])})  # fmt: skip
    return out


def main() -> None:
    from bundle.data.io import write_json
    from bundle.data.synth import generate_cohort
    from bundle.data.synth.structural import generate_structural_cohort
    from bundle.data.synth.swi_physics.subject import generate_swi_cohort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--structural", type=Path, default=None, help="a folder holding that structural cohort already")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    args = ap.parse_args()
    train, val = [], []  # (folder, split) whose entries train / validate
    if "structural" in args.parts:
        structural = args.structural or args.out / "structural"
        generate_structural_cohort(structural, {"training": ("train", 40), "validation": ("validation", 6)}, seed=800)
        train, val = train + [(structural, "training")], val + [structural]
    if "swi" in args.parts:
        swi = args.out / "swi_train"
        generate_swi_cohort(swi, {"training": ("train_wide", 12), "validation": ("validation", 3)}, seed=1700)
        train, val = train + [(swi, "training")], val + [swi]
    if "heads" in args.parts:
        heads = args.out / "structural_head"
        generate_structural_cohort(heads, {"training": ("train", 24), "validation": ("validation", 4)}, seed=810,
                                   head=True)  # fmt: skip
        train, val = train + [(heads, "training")], val + [heads]
    if "swi_heads" in args.parts:
        for name, spacing, seed in (("1mm", (1.0, 1.0, 1.0), 1710), ("05x05x2mm", (0.5, 0.5, 2.0), 1711)):
            folder = args.out / f"swi_head_{name}"
            generate_cohort("cmb", 6, folder, seed=seed, spacing=spacing, head=True)
            train, val = train + [(folder, "training+testing")], val + [folder]
    if "wide" in args.parts:
        for name, seed, head in (("structural_wide", 820, False), ("structural_head_wide", 830, True)):
            folder = args.out / name
            generate_structural_cohort(folder, {"training": ("train_wide", 12), "validation": ("train_wide", 2)},
                                       seed=seed, head=head)  # fmt: skip
            train, val = train + [(folder, "training")], val + [folder]
    if "cut" in args.parts:
        structural, swi = args.out / "structural_cut", args.out / "swi_cut"
        generate_structural_cohort(structural, {"training": ("train", 12), "validation": ("validation", 2)}, seed=840)
        generate_swi_cohort(swi, {"training": ("train_wide", 6), "validation": ("validation", 1)}, seed=1720)
        for folder, seed in ((structural, 840), (swi, 1720)):
            cut_field_of_view(folder, seed)  # the same boxes as before: the draws run before the skip
            train, val = train + [(folder, "training")], val + [folder]
    datalist = {"modalities": ["t1", "t2", "flair", "swi"], "classes": ["brain"],
                "training": [e for f, split in train for e in entries(f, split)],
                "validation": [e for f in val for e in entries(f, "validation")]}
    print(write_json(datalist, args.out / "datalist.json"))


if __name__ == "__main__":
    main()
