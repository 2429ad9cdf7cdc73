# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""How well the loader brings a subject's scans onto one grid (issue 21; not a test).

    python tests/benchmarks/bench_alignment.py --out /work/bench_align [--n 2] [--seed 960]

``--n`` subjects of the structural simulator per setting (the training distribution and every held-out setting,
seed ``--seed`` + setting index), T1, T2 and FLAIR of one session on one grid. Per subject, the loader
(:class:`bundle.data.LoadSubjectd`) reads:

1. **aligned**: the three as simulated (T1 the reference). Any flag here is a false alarm.
2. **oblique T1**: T2 the reference, T1 resliced to 1 mm with its axes turned by 10 degrees (the affine says so).
   Reported: the head overlap and the correlation inside the brain of the T1 brought back onto T2's grid with the
   T1 as simulated (two linear resamplings).
3. **motion**: T1 the reference, T2 with the head turned by 5-15 degrees about a random axis and shifted by 2-6 mm
   (no affine says so). Reported: the overlap through the affines alone (is it flagged?), and with ``auto``: whether
   it was registered, the error of the registration's motion against the one applied (rotation of the difference,
   degrees; shift of the brain's centre, mm), the overlap after, and the seconds of the load.

Writes ``OUT/alignment.json`` and prints a table per setting.
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
from bench_utils import cohort_entries  # noqa: E402

from bundle.data import LoadSubjectd  # noqa: E402
from bundle.data.align import rigid_transform  # noqa: E402
from bundle.data.synth.regrid import move, reslice, rigid  # noqa: E402

NAMES = ["t1", "t2", "flair"]


def load(images, names, align, mask=None):
    entry = {"subject": "s", "image": images, "modalities": names, **({"mask": mask} if mask else {})}
    out = LoadSubjectd(keys=["image", "mask"], align=align, lesions_key=None)(entry)
    return out, json.loads(out["image"].meta["alignment"])


def motion_error(found: np.ndarray, applied: np.ndarray, centre: np.ndarray) -> tuple[float, float]:
    diff = found @ np.linalg.inv(applied)
    angle = np.degrees(np.arccos(np.clip((np.trace(diff[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)))
    return float(angle), float(np.linalg.norm(diff[:3, :3] @ centre + diff[:3, 3] - centre))


def subject_figures(e: dict, work: Path, rng: np.random.Generator) -> dict:
    import nibabel as nib

    t1, t2, flair = e["image"]
    same, aligned = load(e["image"], NAMES, "affine", e["mask"])
    brain = same["mask"][0].numpy() > 0
    oblique = reslice(t1, work / "t1_oblique.nii.gz", (1.0, 1.0, 1.0), (10.0, 0.0, 0.0))
    obl, obl_rec = load([t2, str(oblique), flair], ["t2", "t1", "flair"], "affine")
    axis = rng.normal(size=3)
    angles = axis / np.linalg.norm(axis) * rng.uniform(5.0, 15.0)  # small angles: Euler ~ axis-angle
    shift = rng.normal(size=3)
    shift = shift / np.linalg.norm(shift) * rng.uniform(2.0, 6.0)
    moved_t2 = move(t2, work / "t2_moved.nii.gz", angles, shift)
    img = nib.load(t2)
    centre = (img.affine @ np.r_[(np.array(img.shape[:3]) - 1) / 2.0, 1.0])[:3]
    applied = rigid(angles, shift, centre)
    plain = load([t1, str(moved_t2), flair], NAMES, "affine")[1][0]
    start = time.perf_counter()
    fixed, auto = load([t1, str(moved_t2), flair], NAMES, "auto")
    seconds = time.perf_counter() - start
    found = rigid_transform(load([str(moved_t2)], ["t2"], "affine")[0]["image"], same["image"][:1])  # as auto's
    brain_centre = same["image"].affine.double().numpy() @ np.r_[np.argwhere(brain).mean(0), 1.0]
    rot_err, shift_err = motion_error(found, applied, brain_centre[:3])
    corr = float(np.corrcoef(obl["image"][1].numpy()[brain], same["image"][0].numpy()[brain])[0, 1])
    return {"subject": e["subject"], "aligned_overlap": [r["overlap"] for r in aligned],
            "aligned_flagged": sum(r["flagged"] for r in aligned), "oblique_overlap": obl_rec[0]["overlap"],
            "oblique_flagged": obl_rec[0]["flagged"], "oblique_t1_correlation": round(corr, 4),
            "motion_deg": round(float(np.linalg.norm(angles)), 2), "motion_mm": round(float(np.linalg.norm(shift)), 2),
            "motion_overlap_affine": plain["overlap"], "motion_flagged_affine": plain["flagged"],
            "motion_registered": auto[0]["registered"], "motion_overlap_auto": auto[0]["overlap"],
            "motion_flagged_auto": auto[0]["flagged"], "rotation_error_deg": round(rot_err, 3),
            "shift_error_mm": round(shift_err, 3), "auto_seconds": round(seconds, 2),
            "spacing": [round(float(s), 3) for s in same["image"].pixdim]}  # fmt: skip


def main() -> None:
    from bundle.data.synth.structural import HELD_OUT, generate_structural_cohort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--seed", type=int, default=960)
    args = ap.parse_args()
    results = {}
    for k, setting in enumerate(("train", *HELD_OUT)):
        folder = args.out / setting
        generate_structural_cohort(folder, {"testing": (setting, args.n)}, seed=args.seed + k, progress=False)
        rng = np.random.default_rng(args.seed + k)
        results[setting] = [subject_figures(e, folder, rng) for e in cohort_entries(folder, setting)]
        r = results[setting]
        print(f"{setting:15s} aligned min overlap {min(min(x['aligned_overlap']) for x in r):.3f} "
              f"false flags {sum(x['aligned_flagged'] for x in r)} | oblique T1 overlap "
              f"{min(x['oblique_overlap'] for x in r):.3f} corr {min(x['oblique_t1_correlation'] for x in r):.3f} | "
              f"motion flagged {sum(x['motion_flagged_affine'] for x in r)}/{len(r)}, registered "
              f"{sum(x['motion_registered'] for x in r)}, still flagged {sum(x['motion_flagged_auto'] for x in r)}, "
              f"error max {max(x['rotation_error_deg'] for x in r):.2f} deg {max(x['shift_error_mm'] for x in r):.2f}"
              f" mm, {max(x['auto_seconds'] for x in r):.1f} s", flush=True)  # fmt: skip
    (args.out / "alignment.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
