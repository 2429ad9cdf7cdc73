# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Where the main job's time goes, per step, next to each step's floor (docs/benchmarks.md#profile; not a test).

    python tests/benchmarks/bench_profile.py --input DIR --out OUT [--flops]

Runs the main job (``configs/inference.yaml``, shipped weights, ``--progress false``) in this process under
``cProfile`` on the folder of subjects ``--input`` into ``OUT/run`` and prints, per step, the time summed over
every call (both detectors together; a step inside another is not counted twice) and the number of calls: start-up
(imports, timed before the run), reading, the brain-mask network, template registration, the working grid, N4,
intensity normalisation, the networks (the evaluator's iterations: inferer, detector, post-processing), the
writers, the QC report and the rest; and the time of the EPVS and lacune detector (``run_part``) against the rest
(the microbleed detector, merging, cohort page). Floors: reading every NIfTI file under ``--input`` once with
nibabel; for the networks, their multiply-adds counted by ``torch.utils.flop_counter`` (``--flops``: a second run
of the job, whose times are not used) over this machine's measured throughput on a 3D convolution; writing, the
time to gzip the written NIfTI files again. Writes ``OUT/profile.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _steps() -> dict[str, list]:
    from bundle.data.subject import LoadSubjectd
    from bundle.handlers.qc_report import QCReport
    from bundle.handlers.writers import Writers
    from bundle.inference.isolation import IsolatingEvaluator
    from bundle.transforms.array import HistogramPeakNormalize, N4BiasFieldCorrection
    from bundle.transforms.dictionary import WorkingGridd
    from bundle.transforms.regions import BrainMaskd, TemplateMapd

    return {"read": [LoadSubjectd.__call__], "brain-mask network": [BrainMaskd.__call__],
            "template registration": [TemplateMapd.__call__], "working grid (resample)": [WorkingGridd.__call__],
            "N4 bias correction": [N4BiasFieldCorrection.__call__],
            "intensity normalisation": [HistogramPeakNormalize.__call__],
            "networks (inferer, detector, post-processing)": [IsolatingEvaluator._iteration],
            "writers (tables, maps on the input grids)": [Writers.__call__],
            "QC report": [QCReport._report]}  # fmt: skip


def _read_floor(files: list[Path]) -> float:
    import nibabel as nib
    import numpy as np

    start = time.perf_counter()
    for f in files:
        np.asarray(nib.load(str(f)).dataobj)
    return time.perf_counter() - start


def _write_floor(folder: Path) -> float:
    import gzip

    start = time.perf_counter()
    for f in folder.rglob("*.nii.gz"):
        gzip.compress(gzip.decompress(f.read_bytes()), compresslevel=1)
    return time.perf_counter() - start


def _throughput() -> float:
    """Multiply-adds per second of a 32 -> 32 channel 3 x 3 x 3 convolution on a 64^3 block, float32."""
    import torch

    conv, x = torch.nn.Conv3d(32, 32, 3, padding=1), torch.randn(1, 32, 64, 64, 64)
    with torch.inference_mode():
        conv(x)
        start = time.perf_counter()
        for _ in range(3):
            conv(x)
    return 3 * 27 * 32 * 32 * 64**3 / (time.perf_counter() - start)


def _flops(args) -> float:
    """Multiply-adds of the networks in one run of the job (the evaluator's iterations only)."""
    from torch.utils.flop_counter import FlopCounterMode

    from bundle.inference.isolation import IsolatingEvaluator

    total, inner = [0], IsolatingEvaluator._iteration

    def counted(self, engine, batch):
        with FlopCounterMode(display=False) as counter:
            out = inner(self, engine, batch)
        total[0] += counter.get_total_flops()
        return out

    IsolatingEvaluator._iteration = counted
    try:
        _run(args.input, args.out / "flops_run")
    finally:
        IsolatingEvaluator._iteration = inner
    return total[0] / 2  # FlopCounterMode counts a multiply-add as 2


def _run(input_path: Path, out: Path) -> None:
    from monai.bundle.scripts import run

    run(config_file=str(REPO / "configs" / "inference.yaml"), bundle_root=str(REPO), datalist=str(input_path),
        output_dir=str(out), progress=False)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", type=Path, required=True, help="a folder of subjects")
    ap.add_argument("--out", type=Path, required=True, help="a new folder")
    ap.add_argument("--flops", action="store_true", help="also count the networks' multiply-adds (a second run)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=False)
    start = time.perf_counter()
    import monai.bundle.scripts  # noqa: F401  (start-up: what every run pays before its first subject)

    steps = _steps()
    startup = time.perf_counter() - start
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.runcall(_run, args.input, args.out / "run")
    total = time.perf_counter() - start
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (calls, primitive calls, own s, cumulative s, callers)
    rows = {"start-up (imports, before the first subject)": {"seconds": round(startup, 2), "calls": 1}}
    for name, funcs in steps.items():
        keys = [(f.__code__.co_filename, f.__code__.co_firstlineno, f.__code__.co_name) for f in funcs]
        hit = [stats[k] for k in keys if k in stats]
        rows[name] = {"seconds": round(sum(h[3] for h in hit), 2), "calls": sum(h[1] for h in hit)}
    rows["rest (config parsing, other transforms, merging, cohort page)"] = {
        "seconds": round(total - sum(r["seconds"] for k, r in rows.items() if not k.startswith("start")), 2)
    }
    rows["read"]["floor_seconds"] = round(_read_floor(sorted(args.input.rglob("*.nii*"))), 2)
    rows["writers (tables, maps on the input grids)"]["floor_seconds"] = round(_write_floor(args.out / "run"), 2)
    from bundle.inference.cohort import run_part

    code = run_part.__code__
    part = stats.get((code.co_filename, code.co_firstlineno, code.co_name), (0, 0, 0, 0.0))[3]
    per_detector = {"EPVS and lacunes (run_part)": round(part, 2), "microbleeds and the rest": round(total - part, 2)}
    result = {"input": str(args.input), "run_seconds": round(total, 2), "steps": rows, "detectors": per_detector}
    if args.flops:
        macs, rate = _flops(args), _throughput()
        result.update({"network_multiply_adds": macs, "conv3d_multiply_adds_per_second": rate})
        rows["networks (inferer, detector, post-processing)"]["floor_seconds"] = round(macs / rate, 2)
    (args.out / "profile.json").write_text(json.dumps(result, indent=1))
    print("| step | seconds | calls | floor (s) |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['seconds']:.1f} | {r.get('calls', '')} | {r.get('floor_seconds', '')} |")
    print(f"run (after start-up): {total:.1f} s; " + ", ".join(f"{k} {v:.1f} s" for k, v in per_detector.items()))


if __name__ == "__main__":
    main()
