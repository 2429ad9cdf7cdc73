# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Do the main job's detections depend on how a scan is stored? (issue 19; not a test)

    python tests/benchmarks/bench_orientation.py --out /tmp/bench_orientation \
        [--datalist /work/data/swi_val_extra/datalist.json --split validation --n 10] \
        [--orientations RAS,null] [--order 1] [--reuse]

Each scan (and its brain mask) is written three ways, all the same head in world space:
- ``stored``: as the simulator wrote it;
- ``lps``: the first two array axes flipped and the affine flipped with them (exact, no interpolation);
- ``rot20``: resampled (``--order``: 1 trilinear, 3 cubic B-spline; the mask nearest) onto a grid rotated by 20
  degrees about the left-right axis through the scan's centre, large enough to hold the whole scan;
- ``shift``: resampled the same way onto the stored grid moved by half a voxel along each axis, not rotated (what
  resampling alone changes).

The main job runs on each copy (one process per copy, ``--report false``) with each ``--working_orientation`` of
``--orientations`` (``null``: the stored order, as before version 0.20.0). Each copy's detections are matched
one-to-one to the ``stored`` copy's (same orientation setting; nearest world position first, within 3 mm):
``same`` when within 1 mm and 0.05 in score (issue 19's criterion). Prints a table and writes
``--out/orientation.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import map_coordinates

REPO = Path(__file__).resolve().parents[2]


def flipped(img: nib.Nifti1Image, axes=(0, 1)) -> nib.Nifti1Image:
    data, affine = np.asanyarray(img.dataobj), img.affine.copy()
    for a in axes:
        data = np.flip(data, a)
        affine[:3, 3] += affine[:3, a] * (img.shape[a] - 1)
        affine[:3, a] *= -1
    return nib.Nifti1Image(np.ascontiguousarray(data), affine)


def rotated(img: nib.Nifti1Image, degrees: float, order: int, offset: float = 0.0) -> nib.Nifti1Image:
    """``img`` resampled onto a grid rotated by ``degrees`` about the world x axis through its centre and moved by
    ``offset`` voxels along each of its axes."""
    t = np.deg2rad(degrees)
    rot = np.eye(4)
    rot[1:3, 1:3] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    centre = img.affine @ np.array([*(np.array(img.shape[:3]) - 1) / 2, 1.0])
    shift = np.eye(4)
    shift[:3, 3] = centre[:3]
    affine = shift @ rot @ np.linalg.inv(shift) @ img.affine
    corners = np.array([[i, j, k, 1.0] for i in (0, img.shape[0] - 1) for j in (0, img.shape[1] - 1)
                        for k in (0, img.shape[2] - 1)]).T  # fmt: skip
    inside = np.linalg.solve(affine, img.affine @ corners)[:3]  # the old grid's corners in the new grid's voxels
    low, high = np.floor(inside.min(1)), np.ceil(inside.max(1))
    affine[:3, 3] = (affine @ np.array([*(low + offset), 1.0]))[:3]
    shape = (high - low + 1).astype(int)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), 0).reshape(3, -1)
    src = np.linalg.solve(img.affine, affine @ np.vstack([grid, np.ones(grid.shape[1])]))[:3]
    data = map_coordinates(np.asanyarray(img.dataobj).astype(np.float32), src, order=order, cval=0.0)
    return nib.Nifti1Image(data.reshape(shape).astype(np.float32), affine)


def write_copies(datalist: Path, split: str, n: int, out: Path, order: int = 1) -> dict[str, Path]:
    data = json.loads(datalist.read_text())
    entries = data[split][:n]
    lists = {}
    for copy in ("stored", "lps", "rot20", "shift"):
        folder = out / "input" / copy
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for e in entries:
            s = e["subject"]
            for key, spline in (("image", order), ("mask", 0)):
                path = folder / f"{s}_{key}.nii.gz"
                if not path.exists():
                    src = e["image"][0] if key == "image" else e["mask"]
                    img = nib.load(str(datalist.parent / src))
                    img = nib.Nifti1Image(np.asanyarray(img.dataobj).astype(np.float32), img.affine)
                    if copy == "lps":
                        img = flipped(img)
                    elif copy == "rot20":
                        img = rotated(img, 20.0, spline)
                    elif copy == "shift":
                        img = rotated(img, 0.0, spline, offset=0.5)
                    nib.save(img, str(path))
            rows.append({"subject": s, "image": [f"{s}_image.nii.gz"], "mask": f"{s}_mask.nii.gz"})
        lists[copy] = folder / "datalist.json"
        lists[copy].write_text(json.dumps({"testing": rows}))
    return lists


def run_job(datalist: Path, out: Path, orientation: str) -> float:
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.yaml", "--datalist",
           str(datalist), "--output_dir", str(out), "--report", "false", "--progress", "false",
           "--working_orientation", orientation, "--overwrite", "true"]  # fmt: skip
    start = time.time()
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    return time.time() - start


def detections(path: Path) -> dict[str, list[tuple[np.ndarray, float]]]:
    import csv

    rows: dict[str, list] = {}
    for r in csv.DictReader(path.open()):
        rows.setdefault(r["subject"], []).append((np.array([float(r[a]) for a in "xyz"]), float(r["score"])))
    return rows


def compare(ref: dict, other: dict, subjects) -> dict:
    """Greedy one-to-one matching within 3 mm, nearest first."""
    dist, dscore, unmatched = [], [], 0
    for s in subjects:
        a, b = ref.get(s, []), other.get(s, [])
        pairs = sorted((float(np.linalg.norm(p - q)), i, j) for i, (p, _) in enumerate(a) for j, (q, _) in enumerate(b))
        used_a, used_b = set(), set()
        for d, i, j in pairs:
            if d <= 3.0 and i not in used_a and j not in used_b:
                used_a.add(i)
                used_b.add(j)
                dist.append(d)
                dscore.append(abs(a[i][1] - b[j][1]))
        unmatched += len(a) - len(used_a) + len(b) - len(used_b)
    same = sum(d <= 1.0 and ds <= 0.05 for d, ds in zip(dist, dscore))
    return {
        "reference": sum(len(ref.get(s, [])) for s in subjects),
        "copy": sum(len(other.get(s, [])) for s in subjects),
        "matched": len(dist),
        "same": int(same),
        "unmatched": int(unmatched),
        "max_mm": round(max(dist, default=0.0), 3),
        "max_score_diff": round(max(dscore, default=0.0), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--datalist", type=Path, default=Path("/work/data/swi_val_extra/datalist.json"))
    ap.add_argument("--split", default="validation")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--orientations", default="RAS,null")
    ap.add_argument("--order", type=int, default=1, help="spline order of the resampled copies (1: trilinear)")
    ap.add_argument("--reuse", action="store_true", help="keep the runs already in --out (same code and inputs)")
    args = ap.parse_args()
    lists = write_copies(args.datalist, args.split, args.n, args.out, args.order)
    subjects = [e["subject"] for e in json.loads(lists["stored"].read_text())["testing"]]
    results = {}
    for orientation in args.orientations.split(","):
        found = {}
        for copy, datalist in lists.items():
            run_dir = args.out / f"run_{orientation}_{copy}"
            if not (args.reuse and (run_dir / "detections.csv").is_file()):
                seconds = run_job(datalist, run_dir, orientation)
                print(f"{orientation} {copy}: {seconds:.0f} s", flush=True)
            found[copy] = detections(run_dir / "detections.csv")
        for copy in ("lps", "rot20", "shift"):
            results[f"{orientation} {copy}"] = compare(found["stored"], found[copy], subjects)
    first = args.orientations.split(",")
    if len(first) > 1:  # the stored copies under each setting (near-RAS scans: the orientation step changes nothing)
        a, b = (detections(args.out / f"run_{o}_stored" / "detections.csv") for o in first[:2])
        results[f"stored {first[0]} vs {first[1]}"] = compare(a, b, subjects)
    print(f"{'copy vs stored':<22} {'ref':>4} {'copy':>5} {'matched':>8} {'same':>5} {'unmatched':>9} {'max mm':>7} "
          f"{'max dscore':>10}")  # fmt: skip
    for name, r in results.items():
        print(f"{name:<22} {r['reference']:>4} {r['copy']:>5} {r['matched']:>8} {r['same']:>5} {r['unmatched']:>9} "
              f"{r['max_mm']:>7} {r['max_score_diff']:>10}")  # fmt: skip
    (args.out / "orientation.json").write_text(json.dumps({"scans": subjects, "results": results}, indent=2))


if __name__ == "__main__":
    main()
