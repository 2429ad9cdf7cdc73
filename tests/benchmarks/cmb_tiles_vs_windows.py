# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Figures of docs/twostage.md's equivalence section: tiled stage 1 vs the paper's stride-3 windows (not a test).

    python tests/benchmarks/cmb_tiles_vs_windows.py [--seeds 2 3 4 5 6 7]

Uses the toy data and the trained U-Net of tests/methods/twostage/test_twostage_detector.py, and prints per toy volume the
voxel-wise differences of the two stage-1 maps, the objects each finds and their false candidates.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS.parent), str(TESTS)]
spec = importlib.util.spec_from_file_location("tcd", TESTS / "methods" / "twostage" / "test_twostage_detector.py")
tcd = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tcd)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="*", default=[2, 3, 4, 5, 6, 7])
    a = p.parse_args()
    from bundle.methods.twostage import TwoStageCMBDetector
    from bundle.transforms import object_centres

    net = tcd.train_toy_unet()
    totals = {"objects": 0, "tiles": 0, "windows": 0, "fp_tiles": 0, "fp_windows": 0}
    for seed in a.seeds:
        img, lab = tcd._toy((56, 56, 44), 6, seed, 12)
        x = torch.as_tensor(img)
        tiles = TwoStageCMBDetector([net], stage1_mode="tiles", tile_size=(32, 32, 32))
        windows = TwoStageCMBDetector([net], stage1_mode="windows", window_stride=3)
        t = time.time()
        ma = tiles.stage1_map(x)
        ta = time.time() - t
        t = time.time()
        mb = windows.stage1_map(x)
        tb = time.time() - t
        d = (ma - mb).abs().flatten()
        centres = object_centres(lab)
        ca, cb = tiles.detect(x).numpy(), windows.detect(x).numpy()
        fa, fb = tcd._found(ca, centres), tcd._found(cb, centres)
        xa, xb = tcd._false(ca, centres), tcd._false(cb, centres)
        totals["objects"] += len(centres)
        totals["tiles"] += len(fa)
        totals["windows"] += len(fb)
        totals["fp_tiles"] += xa
        totals["fp_windows"] += xb
        print(
            f"seed {seed}: |diff| mean {float(d.mean()):.4f} p99 {float(d.quantile(0.99)):.3f} "
            f"max {float(d.max()):.3f}; "
            f"objects {len(centres)}, found by tiles {len(fa)}, by windows {len(fb)}, found by one only "
            f"{len(fa ^ fb)}; false candidates tiles {xa}, windows {xb}; "
            f"time tiles {ta:.2f} s, windows {tb:.2f} s"
        )
    print("total", totals)


if __name__ == "__main__":
    main()
