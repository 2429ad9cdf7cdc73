# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Seconds of multirater RCNN inference on one 1 mm scan for several backbone widths and patch sizes, side by side
in one process (issue 20: which width can ship at <= 60 s per scan on 2 cores; not a test).

    python tests/benchmarks/bench_rcnn_width.py --out /tmp/bench_rcnn_width \
        [--variants "paper:16,16,32,64,80:3:64;quick:8,8,16,24,32:2:32"] [--checkpoint models/rcnn_detector.pt]

Variants are separated by ``;``, each ``name:widths:blocks per level:patch side``; the patch margin is an eighth
of the side. One simulated 1 mm EPVS/lacune subject (seed 11, T1, T2, FLAIR; 155 x 191 x 160) is preprocessed
once with the RCNN inference config's preprocessing (timed); each detector (random weights, seeded: random
weights propose far more than trained ones, the worst case for the NMS) then runs on it. Prints and writes
``--out/rcnn_width.json``: seconds, detections, parameters and the size of the saved state dict per variant.
``--checkpoint``: also trained weights, with the network of ``--overlay`` (default the shipped one).
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
DEFAULT = "paper:16,16,32,64,80:3:64;quick:8,8,16,24,32:2:32;quick64:8,8,16,24,32:2:64;mid64:12,12,24,32,48:2:64"


def main() -> None:
    from monai.bundle import ConfigParser

    from bundle.data.synth import generate_cohort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", default=DEFAULT)
    ap.add_argument("--checkpoint", type=Path, default=None, help="also run these weights, with --overlay's network")
    ap.add_argument("--overlay", default="configs/rcnn/shipped.yaml")
    args = ap.parse_args()
    data = args.out / "data"
    if not (data / "datalist.json").is_file():
        generate_cohort("epvs_lacune", 1, data, seed=11, modalities=("t1", "t2", "flair"), progress=False)
    datalist = json.loads((data / "datalist.json").read_text())
    datalist["testing"] = datalist["training"][:1]
    (data / "bench.json").write_text(json.dumps(datalist))
    configs = [str(REPO / "configs" / f"{c}.yaml") for c in ("common", "rcnn/train", "rcnn/inference")]
    parser = ConfigParser()
    parser.read_config(configs)
    parser.update({"datalist": str(data / "bench.json"), "output_dir": str(args.out / "run"), "preprocess_workers": 0})
    dataset = parser.get_parsed_content("dataset")
    start = time.time()
    item = dataset.transform(dataset.data[0])
    result = {"shape": list(item["image"].shape), "threads": torch.get_num_threads(),
              "preprocessing_seconds": round(time.time() - start, 1), "variants": {}}
    print(f"preprocessing {result['preprocessing_seconds']} s, image {result['shape']}", flush=True)
    image, mask = item["image"][None], item["mask"][None]
    specs = [s.split(":") for s in args.variants.split(";") if s] + ([["checkpoint"]] if args.checkpoint else [])
    for spec in specs:
        name = spec[0]
        p = ConfigParser()
        if name == "checkpoint":
            p.read_config(configs[:2] + [str(REPO / args.overlay)] + configs[2:])
            p.update({"datalist": str(data / "bench.json")})
        else:
            widths, blocks, side = [int(w) for w in spec[1].split(",")], int(spec[2]), int(spec[3])
            p.read_config(configs)
            p.update({"datalist": str(data / "bench.json"), "highres_features": widths, "highres_repeat": blocks,
                      "patch_size": [side] * 3, "patch_margin": side // 8})
        torch.manual_seed(0)
        net = p.get_parsed_content("network_def").eval()
        if name == "checkpoint":
            net.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=True))
            widths, blocks, side = p["highres_features"], p["highres_repeat"], net.patch_size[0]
        buf = io.BytesIO()
        torch.save(net.state_dict(), buf)
        start = time.time()
        with torch.inference_mode():
            table = net.detect(image, mask)[0]
        seconds = time.time() - start
        table = table[torch.isfinite(table[:, 0])]
        result["variants"][name] = {
            "widths": widths, "blocks": blocks, "patch": side, "detector_seconds": round(seconds, 1),
            "total_seconds": round(seconds + result["preprocessing_seconds"], 1), "detections": len(table),
            "parameters": sum(x.numel() for x in net.parameters()),
            "state_dict_mb": round(len(buf.getvalue()) / 1e6, 2),
        }  # fmt: skip
        print(name, result["variants"][name], flush=True)
    (args.out / "rcnn_width.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
