# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Helpers shared by the benchmark scripts: simulated cohorts as datalist entries, timed bundle runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

__all__ = ["REPO", "cohort_entries", "one_scan_datalist", "overrides", "run_bundle"]


def cohort_entries(folder: Path, prefix: str) -> list[dict]:
    """Every subject of a simulated cohort (all splits) with absolute paths and ``<prefix>-<subject>`` ids."""
    d = json.loads((folder / "datalist.json").read_text())
    out = []
    for e in d["training"] + d["validation"] + d["testing"]:
        e = dict(e)
        for k in ("image", "label", "lesions", "mask", "roi", "mimics", "regions"):
            if k in e:
                e[k] = [str(folder / p) for p in e[k]] if isinstance(e[k], list) else str(folder / e[k])
        e["subject"] = f"{prefix}-{e['subject']}"
        out.append(e)
    return sorted(out, key=lambda e: e["subject"])


def one_scan_datalist(out: Path, seed: int) -> Path:
    """``out/bench.json``: one simulated 1 mm EPVS/lacune subject (T1, T2, FLAIR; made in ``out`` once) as the
    testing list, the speed benchmarks' scan."""
    from bundle.data.synth import generate_cohort

    if not (out / "datalist.json").is_file():
        generate_cohort("epvs_lacune", 1, out, seed=seed, modalities=("t1", "t2", "flair"), progress=False)
    datalist = json.loads((out / "datalist.json").read_text())
    datalist["testing"] = datalist["training"][:1]
    (out / "bench.json").write_text(json.dumps(datalist))
    return out / "bench.json"


def overrides(pairs: list[str]) -> list[str]:
    """``key=value`` strings as ``--key value`` arguments of ``python -m monai.bundle run``."""
    return [x for kv in pairs for x in (f"--{kv.split('=', 1)[0]}", kv.split("=", 1)[1])]


def run_bundle(args: list[str]) -> float:
    """Run ``python -m monai.bundle run ARGS`` from the repository root; exit with its stderr on failure; seconds."""
    t = time.time()
    res = subprocess.run([sys.executable, "-m", "monai.bundle", "run", *args], cwd=REPO, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"failed: {' '.join(args)}\n{res.stderr[-4000:]}")
    return time.time() - t
