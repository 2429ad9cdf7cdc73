# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Speed of the lesion-wise figures (not part of the test suite).

    python tests/benchmarks/bench_lesion_metrics.py

A 256^3 volume with 1,000 reference and 1,000 predicted objects (balls of radius 1-3 voxels, predictions shifted by
up to 2 voxels from half the references plus 500 elsewhere); times every step for each matching rule.
"""

from __future__ import annotations

import time

import numpy as np

from bundle.metrics import evaluate_scan, objects_from_instances, objects_from_map, summarise_scans

SHAPE = (256, 256, 256)


def _balls(rng, centres, radii):
    inst = np.zeros(SHAPE, np.int32)
    for n, (c, r) in enumerate(zip(centres, radii), 1):
        lo = np.maximum(c - r, 0)
        hi = np.minimum(c + r + 1, SHAPE)
        g = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        ball = sum((gi - ci) ** 2 for gi, ci in zip(g, c)) <= r * r
        inst[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][ball] = n
    return inst


def main() -> None:
    rng = np.random.default_rng(0)
    ref_c = rng.integers(4, 252, (1000, 3))
    ref = _balls(rng, ref_c, rng.integers(1, 4, 1000))
    pred_c = np.concatenate([ref_c[:500] + rng.integers(-2, 3, (500, 3)), rng.integers(4, 252, (500, 3))])
    prob = (_balls(rng, pred_c, rng.integers(1, 3, 1000)) > 0) * rng.uniform(0.5, 1.0, SHAPE).astype(np.float32)
    for rule in ("overlap", "distance_mm", "distance_voxels"):
        t0 = time.perf_counter()
        r = objects_from_instances(ref)
        t1 = time.perf_counter()
        p = objects_from_map(prob, threshold=0.5)
        t2 = time.perf_counter()
        s = summarise_scans([evaluate_scan(r, p, rule)])
        t3 = time.perf_counter()
        print(
            f"{rule}: {len(r)} reference / {len(p)} predicted objects; reference objects {t1 - t0:.2f} s, "
            f"predicted components {t2 - t1:.2f} s, matching + all figures {t3 - t2:.2f} s, total {t3 - t0:.2f} s "
            f"(sensitivity {s['sensitivity']:.3f}, FP/scan {s['fp_per_scan']:.0f}, CPM {s['cpm']:.3f})"
        )


if __name__ == "__main__":
    main()
