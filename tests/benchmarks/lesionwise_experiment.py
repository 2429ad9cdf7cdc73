# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The small experiment of docs/unet.md (not part of the test suite).

    python tests/benchmarks/lesionwise_experiment.py [--out /tmp/lesionwise] [--losses dice ce dice_ce]

Simulates a 1 mm microbleed cohort, trains the segmentation config under the `quick` budget once per loss with
whole-volume lesion-wise validation (validation and training volumes), then plots loss, lesion-wise sensitivity
and FP per scan against iterations from the TensorBoard logs and prints the last figures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ["configs/common.yaml", "configs/unet/train.yaml", "configs/unet/quick.yaml"]


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(logdir))
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def _plot(runs: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for n, (loss, sc) in enumerate(runs.items()):
        c = f"C{n}"
        steps, values = zip(*sc["train_loss"])
        k = max(1, len(values) // 30)
        smooth = np.convolve(values, np.ones(k) / k, mode="valid")
        axes[0].plot(steps[k - 1 :], smooth, color=c, label=loss)
        for ax, fig_name in ((axes[1], "sensitivity"), (axes[2], "fp_per_scan")):
            for prefix, style in (("val", "-"), ("train", "--")):
                tag = f"{prefix}_lesion_{fig_name}"
                if tag in sc:
                    s, v = zip(*sc[tag])
                    ax.plot(s, v, style, color=c, marker="o", ms=3, label=f"{loss} ({prefix} volumes)")
    axes[0].set_title("training loss (moving mean)")
    axes[1].set_title("lesion-wise sensitivity (whole volumes)")
    axes[2].set_title("false positives per scan (whole volumes)")
    axes[2].set_yscale("symlog")
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="/tmp/lesionwise")
    p.add_argument("--losses", nargs="+", default=["dice", "ce", "dice_ce"])
    p.add_argument("--n", type=int, default=10, help="subjects (60/20/20 split)")
    p.add_argument("--iterations", type=int, default=600)
    p.add_argument("--val_interval", type=int, default=60)
    p.add_argument("--png", default=str(REPO / "docs" / "images" / "lesionwise_validation.png"))
    a = p.parse_args()
    out = Path(a.out)
    from bundle.data.synth import generate_cohort

    datalist = generate_cohort("cmb", a.n, out / "cohort", seed=21, progress=False)
    runs = {}
    for loss in a.losses:
        run_dir = out / f"run_{loss}"
        cmd = [
            sys.executable, "-m", "monai.bundle", "run", "--config_file", str([str(REPO / c) for c in CONFIGS]),
            "--datalist", str(datalist), "--output_dir", str(run_dir), "--loss_name", loss,
            "--max_iterations", str(a.iterations), "--val_interval", str(a.val_interval),
            "--validate_training_volumes", "true",
        ]  # fmt: skip
        start = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        (out / f"log_{loss}.txt").write_text(res.stdout + res.stderr)
        if res.returncode:
            raise SystemExit(f"{loss}: training failed, see {out}/log_{loss}.txt")
        runs[loss] = _scalars(run_dir / "tensorboard")
        sc = runs[loss]
        last = {t: sc[t][-1][1] for t in sc if t != "train_loss"}
        best = max(sc["val_lesion_sensitivity"], key=lambda x: x[1])
        val = f"sensitivity {last['val_lesion_sensitivity']:.3f}, FP/scan {last['val_lesion_fp_per_scan']:.1f}"
        trn = f"sensitivity {last['train_lesion_sensitivity']:.3f}, FP/scan {last['train_lesion_fp_per_scan']:.1f}"
        print(
            f"{loss}: {time.perf_counter() - start:.0f} s; final train loss {sc['train_loss'][-1][1]:.3f}; "
            f"last validation: {val}; training volumes: {trn}; "
            f"best validation sensitivity {best[1]:.3f} at iteration {best[0]}",
            flush=True,
        )
    _plot(runs, Path(a.png))
    print(f"plot: {a.png}")


if __name__ == "__main__":
    main()
