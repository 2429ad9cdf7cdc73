# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Memory and time of whole-volume lesion-wise validation on 1 mm brains (not part of the test suite).

    python tests/benchmarks/bench_whole_volume_validation.py [--n 4] [--out /tmp/wholevol]

Builds the segmentation config's validation evaluator (quick network) on N simulated 1 mm subjects, runs it, and
prints after each volume the process's resident memory next to the size of one volume's logits: if the evaluator
kept logits of earlier volumes, memory would grow by about that much per volume.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ignite.engine import Events
from monai.bundle import ConfigParser

from bundle.data.synth import generate_cohort

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ["configs/common.yaml", "configs/unet/train.yaml", "configs/unet/quick.yaml"]


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--out", default="/tmp/wholevol")
    a = p.parse_args()
    src = generate_cohort("cmb", a.n, Path(a.out) / "cohort", seed=31, progress=False)
    data = json.loads(src.read_text())
    everyone = [e for s in ("training", "validation", "testing") for e in data.get(s, [])]
    data.update(training=everyone[:1], validation=everyone, testing=[])  # validate on all N volumes
    datalist = Path(a.out) / "cohort" / "all_validation.json"
    datalist.write_text(json.dumps(data))
    parser = ConfigParser()
    parser.read_config([str(REPO / c) for c in CONFIGS])
    parser.update({"datalist": str(datalist), "output_dir": str(Path(a.out) / "run")})
    evaluator = parser.get_parsed_content("validate#evaluator")
    rows = []

    @evaluator.on(Events.ITERATION_COMPLETED)
    def _record(engine):
        pred = engine.state.output[0]["pred"]
        rows.append(
            (tuple(pred.shape[1:]), pred.numel() * pred.element_size() / 2**20, _rss_mib(), time.perf_counter())
        )

    base = _rss_mib()
    start = time.perf_counter()
    evaluator.run()
    print(f"before validation (network + {a.n} cached preprocessed volumes): {base:.0f} MiB resident")
    previous = start
    for n, (shape, logits_mib, rss, t) in enumerate(rows, 1):
        print(f"volume {n}: shape {shape}, logits {logits_mib:.1f} MiB, resident {rss:.0f} MiB, {t - previous:.1f} s")
        previous = t
    growth = rows[-1][2] - rows[0][2]
    print(
        f"growth of resident memory from volume 1 to volume {len(rows)}: {growth:+.0f} MiB "
        f"(one volume's logits: {rows[0][1]:.1f} MiB)"
    )
    m = evaluator.state.metrics
    print(
        f"figures: sensitivity {m['val_lesion_sensitivity']:.3f}, FP per scan {m['val_lesion_fp_per_scan']:.1f} "
        "(untrained network)"
    )


if __name__ == "__main__":
    main()
