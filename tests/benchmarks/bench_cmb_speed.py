# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Speed benchmark of the two-stage microbleed detector on a 512 x 512 x 150 scan (issue 4; not a test).

    python tests/benchmarks/bench_cmb_speed.py --checkpoint models/model.pt [--out /tmp/cmb_speed]

Simulates (once, in a child process, cached in ``--out``) one microbleed subject on a fine grid (0.31 x 0.38 x
1.07 mm, so the head fills the field of view: a pessimistic case, since the brain's bounding box is what the
detector computes) and pads it to 512 x 512 x 150.
Then, in this one process on this machine's threads:

* preprocessing (N4 at ``--n4_shrink_factor`` + histogram peak) time;
* whole-scan detection (both U-Nets on tiles, candidates, both CNNs) time and the process's peak resident memory;
* on one cropped brain region, stage 1 with tiles vs the paper's 20 x 20 x 16 windows at stride 3, timed on the
  same region; their ratio, and the whole-scan time that ratio implies for the windows.

The detector comes from ``--checkpoint`` (trained weights matter: the candidate count drives stage 2) built by the
main job's config (``configs/inference.yaml``), so the networks are the shipped detector's.
It works on the scan's own grid: the main job first resamples to its 1 mm working grid, so for the main job's
time use ``bench_profile.py`` (docs/benchmarks.md#profile-of-the-main-job-version-0350-2026-12-05).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
SHAPE = (512, 512, 150)
SPACING = (0.31, 0.38, 1.07)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _simulate(out: Path) -> None:
    """Simulate the subject and write the padded 512 x 512 x 150 volumes as NIfTI (run in a child process)."""
    import nibabel as nib

    from bundle.data.synth.cohort import generate_subject

    entry = generate_subject("cmb", 0, out, seed=7, spacing=SPACING)
    for key in ("image", "mask", "label"):
        path = entry[key][0] if isinstance(entry[key], list) else entry[key]
        img = nib.load(str(out / path))
        arr = np.asarray(img.dataobj, dtype=np.float32)
        padded = np.zeros(SHAPE, np.float32)
        sl = tuple(slice(0, min(a, b)) for a, b in zip(arr.shape, SHAPE))
        padded[sl] = arr[sl]
        nib.save(nib.Nifti1Image(padded, img.affine), str(out / f"scan512_{key}.nii.gz"))


def _volume(out: Path):
    import subprocess

    import nibabel as nib

    if not (out / "scan512_label.nii.gz").exists():
        subprocess.run([sys.executable, __file__, "--simulate_only", "--out", str(out)], check=True, cwd=REPO)
    vols = {k: nib.load(str(out / f"scan512_{k}.nii.gz")) for k in ("image", "mask", "label")}
    return {k: np.asarray(v.dataobj, dtype=np.float32) for k, v in vols.items()}, vols["image"].affine


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint")
    p.add_argument("--simulate_only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default="/tmp/cmb_speed")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--n4_shrink_factor", type=int, default=4, help="4: the configs' default; 8 for sub-0.5 mm scans")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    if a.simulate_only:
        return _simulate(out)
    if not a.checkpoint:
        p.error("--checkpoint is required")
    t = time.time()
    vols, affine = _volume(out)
    load_s = time.time() - t
    base_mib = _peak_mib()

    from monai.bundle import ConfigParser

    from bundle.transforms import HistogramPeakNormalize, N4BiasFieldCorrection

    raw, mask = vols["image"][None], vols["mask"][None]
    from monai.data import MetaTensor

    raw = MetaTensor(torch.as_tensor(raw), affine=torch.as_tensor(affine))
    t = time.time()
    image = N4BiasFieldCorrection(shrink_factor=a.n4_shrink_factor)(raw, mask)
    image = HistogramPeakNormalize()(image, mask)
    pre_s = time.time() - t

    parser = ConfigParser()
    parser.read_config(str(REPO / "configs" / "inference.yaml"))  # the main job's detector: its ensemble sizes
    parser.update({"bundle_root": str(REPO), "device": "cpu"})
    det = parser.get_parsed_content("network_def")
    state = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    det.load_state_dict(state.get("network", state) if isinstance(state, dict) else state)
    det.eval()
    x = torch.as_tensor(np.asarray(image, np.float32))[None]
    m = torch.as_tensor(mask)[None]
    t = time.time()
    with torch.no_grad():
        res = det(x, m)
    table = (res["table"] if isinstance(res, dict) else res)[0]  # the main job's detector also returns its map
    det_s = time.time() - t
    table = table[torch.isfinite(table[:, 3])]
    peak = _peak_mib()
    t = time.time()
    with torch.no_grad():
        det.stage1_map(x[0], m[0])
    stage1_s = time.time() - t

    # tiles vs the paper's stride-3 windows on one cropped region inside the brain
    nz = np.argwhere(vols["mask"] > 0)
    c = ((nz.min(0) + nz.max(0)) // 2).astype(int)
    size = np.array([96, 96, 48])
    lo = c - size // 2
    crop = x[0, :, lo[0] : lo[0] + size[0], lo[1] : lo[1] + size[1], lo[2] : lo[2] + size[2]]
    times = {}
    for mode in ("tiles", "windows"):
        det.stage1_mode = mode
        t = time.time()
        with torch.no_grad():
            det.stage1_map(crop)
        times[mode] = time.time() - t
    det.stage1_mode = "tiles"
    ratio = times["windows"] / times["tiles"]
    result = {
        "shape": list(SHAPE),
        "spacing_mm": list(SPACING),
        "threads": torch.get_num_threads(),
        "brain_bbox_voxels": int(np.prod(nz.max(0) - nz.min(0) + 1)),
        "simulate_once_and_load_seconds": round(load_s, 1),
        "preprocessing_seconds": round(pre_s, 1),
        "n4_shrink_factor": a.n4_shrink_factor,
        "detection_seconds": round(det_s, 1),
        "preprocessing_plus_detection_seconds": round(pre_s + det_s, 1),
        "peak_rss_mib_after_loading": round(base_mib),
        "peak_rss_mib": round(peak),
        "candidates": int(len(table)),
        "detections_score_ge_0.5": int((table[:, 3] >= 0.5).sum()),
        "region": [int(s) for s in size],
        "region_stage1_seconds": {k: round(v, 2) for k, v in times.items()},
        "windows_over_tiles_ratio": round(ratio, 1),
        "whole_scan_stage1_tiles_seconds": round(stage1_s, 1),
        "implied_whole_scan_stage1_windows_seconds": round(ratio * stage1_s, 0),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
