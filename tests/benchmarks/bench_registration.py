# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""How far the registered template is from the truth, in millimetres (docs/regions.md#atlas-regions; not a test).

The structural simulator knows the template coordinate of every voxel of its subjects. Per subject (scanner frame
moved at random by up to 20 degrees and 40 mm, as bench_regions.py; contrast T1, T2, FLAIR in turn; image and
brain mask resampled to 1 mm): :func:`bundle.data.atlas.template_transform` is run per mode, 5000 random brain
voxels and every EPVS and lacune centre are sent to template space, and the distance to their true template
position is measured, with the share of points whose atlas group (lobar, deep, infratentorial) is right. Also the
volume factor of the best affine map from the registered to the true coordinates (1: no scale error).

    python tests/benchmarks/bench_registration.py --out /work/bench_registration [--preset train] [--n 8]
        [--seed 4100] [--modes affine deformable]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bundle.data import atlas as A  # noqa: E402
from bundle.data.synth.regrid import rigid  # noqa: E402

MODES = {"affine": False, "deformable": True}


def subject(i: int, seed: int, preset: str) -> dict:
    """One simulated subject, moved, on a 1 mm grid, with points in its world and their true template mm."""
    import SimpleITK as sitk

    from bundle.data.align import LPS, sitk_image
    from bundle.data.synth.structural.subject import simulate

    s = simulate(i, seed, preset)
    anat, mod = s["anat"], ("t1", "t2", "flair")[i % 3]
    rng = np.random.default_rng([seed + i, 77])
    move = rigid(rng.uniform(-20, 20, 3), rng.uniform(-40, 40, 3), [0.0, 0.0, 0.0])
    aff = move @ anat.affine
    img = A._isotropic(sitk_image(np.asarray(s["images"][mod], np.float32), aff), 1.0)
    msk = A._isotropic(sitk_image(anat.brain.astype(np.float32), aff), 1.0)
    lps = np.eye(4)
    lps[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    vox = np.argwhere(anat.brain > 0)
    vox = vox[np.random.default_rng(i).choice(len(vox), 5000, replace=False)]
    centres = np.array([o["centre_mm"] for o in s["records"] if o["class"] in ("lacune", "epvs")], float).reshape(-1, 3)
    ovox = np.rint((centres - anat.affine[:3, 3]) @ np.linalg.inv(anat.affine[:3, :3]).T).astype(int)
    vox = np.concatenate([vox, np.clip(ovox, 0, np.array(anat.brain.shape) - 1)])
    world = vox @ anat.affine[:3, :3].T + anat.affine[:3, 3]
    return {"image": sitk.GetArrayFromImage(img).transpose(2, 1, 0), "affine": LPS @ lps, "contrast": mod,
            "mask": sitk.GetArrayFromImage(msk).transpose(2, 1, 0) > 0.5,
            "points": world @ move[:3, :3].T + move[:3, 3], "mni": anat.mni[:, vox[:, 0], vox[:, 1], vox[:, 2]].T}


def measure(d: dict, deformable: bool) -> dict:
    start = time.perf_counter()
    tmap = A.template_transform(d["image"], d["affine"], d["mask"], deformable=deformable)
    seconds = time.perf_counter() - start
    got = A.to_template(d["points"], tmap)
    err = np.linalg.norm(got - d["mni"], axis=1)
    fit, *_ = np.linalg.lstsq(np.c_[got, np.ones(len(got))], d["mni"], rcond=None)
    ident = {"affine": np.eye(4).tolist()}
    right = [a["group"] == b["group"] for a, b in zip(A.regions_at(d["points"], tmap), A.regions_at(d["mni"], ident))]
    return {"median_mm": float(np.median(err)), "p90_mm": float(np.percentile(err, 90)),
            "group_right": float(np.mean(right)), "volume_factor": float(np.linalg.det(fit[:3])),
            "seconds": round(seconds, 2)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="train")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=4100)
    ap.add_argument("--modes", nargs="+", choices=tuple(MODES), default=["affine"])
    args = ap.parse_args()
    rows = []
    for i in range(args.n):
        d = subject(i, args.seed, args.preset)
        rows.append({"subject": i, "contrast": d["contrast"], **{m: measure(d, MODES[m]) for m in args.modes}})
        print(json.dumps(rows[-1]), flush=True)
    for m in args.modes:
        mean = {k: np.mean([r[m][k] for r in rows]) for k in rows[0][m]}
        print(f"{args.preset} {m}: median error {mean['median_mm']:.2f} mm, 90th percentile {mean['p90_mm']:.2f} mm, "
              f"group right {100 * mean['group_right']:.1f} %, volume factor {mean['volume_factor']:.3f}, "
              f"{mean['seconds']:.1f} s per registration")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"registration_{args.preset}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
