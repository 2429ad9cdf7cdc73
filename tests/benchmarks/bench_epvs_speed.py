# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Seconds of EPVS and lacune inference on one 1 mm scan: the shipped RCNN and the shipped structural U-Net (with and
without its lacune cavity rule), side by side in one run (issue 20; not a test).

    python tests/benchmarks/bench_epvs_speed.py --out /tmp/bench_epvs_speed [--seed 11] [--repeats 2]

One simulated 1 mm EPVS/lacune subject (T1, T2, FLAIR; the subject of ``bench_rcnn_speed.py``). Each detector's
inference config runs end to end as a user runs it (``python -m monai.bundle run``: process start, reading,
preprocessing, the network, writing every output), alternating between them, ``--repeats`` times each. Prints
the wall seconds of every run and writes ``--out/epvs_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import REPO, one_scan_datalist, run_bundle  # noqa: E402

DETECTORS = {
    "rcnn": (["configs/common.yaml", "configs/rcnn/train.yaml", "configs/rcnn/shipped.yaml",
              "configs/rcnn/inference.yaml"], "models/rcnn_detector.pt", ["--progress", "false"]),
    "unet": (["configs/common.yaml", "configs/unet/train.yaml", "configs/unet/structural.yaml",
              "configs/unet/inference.yaml", "configs/unet/structural_inference.yaml"], "models/structural_unet.pt",
             ["--progress", "false"]),
}  # fmt: skip
DETECTORS["unet_no_cavity_rule"] = (DETECTORS["unet"][0], DETECTORS["unet"][1],
                                    ["--progress", "false", "--cavity_class", "None"])  # fmt: skip


def main() -> None:
    from bundle.inference import read_detections

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    datalist = one_scan_datalist(args.out / "data", args.seed)
    result: dict = {"seconds": {k: [] for k in DETECTORS}, "detections": {}}
    for n in range(args.repeats):
        for name, (configs, checkpoint, quiet) in DETECTORS.items():
            out = args.out / f"{name}_{n}"
            seconds = run_bundle(["--config_file", json.dumps([str(REPO / c) for c in configs]), "--datalist",
                                  str(datalist), "--output_dir", str(out), "--checkpoint",
                                  str(REPO / checkpoint), "--overwrite", "true", *quiet])  # fmt: skip
            result["seconds"][name].append(round(seconds, 1))
            result["detections"][name] = sum(len(v) for v in read_detections(str(out / "detections.csv")).values())
            print(f"{name} run {n + 1}: {seconds:.1f} s", flush=True)
    print(json.dumps(result, indent=1))
    (args.out / "epvs_speed.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
