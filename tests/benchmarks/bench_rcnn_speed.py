# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Seconds of multirater RCNN inference on one 1 mm scan, this version's detector against the one before it
(issue 20; not a test).

    python tests/benchmarks/bench_rcnn_speed.py --out /tmp/bench_rcnn_speed [--seed 11] [--checkpoint FILE]

One simulated 1 mm EPVS/lacune subject (T1, T2, FLAIR; 155 x 191 x 160), preprocessed once with the RCNN
inference config's preprocessing (timed). The detector (the config's network, the paper's width; random weights,
seeded, unless ``--checkpoint``: speed does not depend on them, and random weights propose far more, the worst
case) then runs three times in one process on that input: as before version 0.20.0 (greedy NMS comparing each row
with every kept row), as now (one distance row per kept row: the same table), and as now with the opt-in
channels-last convolutions (``network_def#channels_last``). Each table is compared with the first. Prints the
seconds and writes ``--out/rcnn_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import REPO, one_scan_datalist  # noqa: E402


def old_nms(self, table: torch.Tensor, spacing: torch.Tensor, score_column: int = 3) -> torch.Tensor:
    """The NMS before version 0.20.0: every row against every kept row."""
    if not len(table):
        return table
    table = table[torch.argsort(table[:, score_column], descending=True)]
    xyz = table[:, :3] * spacing
    keep: list[int] = []
    for n in range(len(table)):
        if not keep or torch.cdist(xyz[n : n + 1], xyz[keep]).min() >= self.nms_mm:
            keep.append(n)
    return table[keep]


def main() -> None:
    from monai.bundle import ConfigParser

    from bundle.methods.rcnn import MultiraterRCNN

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--checkpoint", type=Path, default=None)
    args = ap.parse_args()
    datalist = one_scan_datalist(args.out / "data", args.seed)
    parser = ConfigParser()
    parser.read_config([str(REPO / "configs" / f"{c}.yaml") for c in ("common", "rcnn/train", "rcnn/inference")])
    parser.update({"datalist": str(datalist), "output_dir": str(args.out / "run"), "preprocess_workers": 0})
    dataset = parser.get_parsed_content("dataset")
    start = time.time()
    item = dataset.transform(dataset.data[0])
    seconds = {"preprocessing": time.time() - start}
    torch.manual_seed(0)
    net = parser.get_parsed_content("network").eval()
    if args.checkpoint:
        net.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=True))
    image, mask = item["image"][None], item["mask"][None]
    tables = {}
    variants = {"before": (False, True), "now": (False, False), "channels_last": (True, False)}
    for name in variants:
        net.channels_last, old = variants[name]
        if old:
            net._nms = old_nms.__get__(net, MultiraterRCNN)
        elif "_nms" in vars(net):
            del net._nms
        start = time.time()
        tables[name] = net.detect(image, mask)[0]
        tables[name] = tables[name][torch.isfinite(tables[name][:, 0])]
        seconds[f"detector_{name}"] = time.time() - start
        print(f"{name}: detector {seconds[f'detector_{name}']:.1f} s, {len(tables[name])} detections", flush=True)
    result = {"shape": list(item["image"].shape), "threads": torch.get_num_threads(), "seconds": seconds}
    for name in tables:
        a, b = tables["before"], tables[name]
        near = torch.cdist(b[:, :3].double(), a[:, :3].double()).min(1) if len(a) and len(b) else None
        result[f"{name}_vs_before"] = {
            "rows": [len(a), len(b)],
            "equal": bool(a.shape == b.shape and torch.equal(a, b)),
            "farthest_centre_from_a_row_before_voxels": None if near is None else float(near.values.max()),
            "max_score_diff_of_nearest_rows": None if near is None else float(
                (b[:, 3] - a[near.indices, 3]).abs().max()),  # fmt: skip
        }
    print(json.dumps(result, indent=1))
    (args.out / "rcnn_speed.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
