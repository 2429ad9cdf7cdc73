# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Simulator of extremely small objects on real brain anatomy (see ``docs/data.md``).

CLI: ``python -m bundle.data.synth --task {cmb,epvs_lacune} --n N --out DIR --seed S [--montage]``.

The simulator itself (``generate_cohort``, ``generate_subject``: torch, MONAI) loads on first use
(:mod:`bundle._lazy`), so ``--help`` imports neither.
"""

from __future__ import annotations

from pathlib import Path

from ..._lazy import lazy_exports
from .montage import montage
from .summary import format_summary, summarise
from .tasks import TASKS

__getattr__, __dir__, _lazy = lazy_exports(__name__, {"cohort": ("generate_cohort", "generate_subject")})
__all__ = ["TASKS", "demo", "demo_input", "format_summary", *_lazy, "montage", "summarise"]


def demo(task: str = "cmb", n: int = 4, out_dir: str = "eso_demo", seed: int = 0, spacing=(1.0, 1.0, 1.0)) -> dict:
    """Simulate a small cohort, write its montage, print and return its summary (the bundle's demo job)."""
    from .cohort import generate_cohort

    datalist = generate_cohort(task, int(n), out_dir, int(seed), tuple(float(s) for s in spacing))
    summary = summarise(datalist)
    summary["montage"] = str(montage(datalist, Path(out_dir) / "montage.png"))
    print(format_summary(summary))
    print(f"montage: {summary['montage']}")
    return summary


def demo_input(out_dir: str | Path, n: int = 2, seed: int = 13, task: str = "all", overwrite=False) -> Path:
    """The main job's embedded default input: simulate ``n`` subjects into ``out_dir`` (reused when present) and
    return ``out_dir/input.json``, a datalist with all of them in ``testing`` (their labels kept, so the run can
    also be evaluated). The default task, ``all``, gives every marker and every modality (SWI, T1, T2, FLAIR, named
    by the datalist's ``modalities``), so the main job runs both detectors. A folder holding another demo (an
    earlier version's) raises unless ``overwrite`` (the main job's ``--overwrite true``)."""
    import json

    from ...utils import as_bool
    from ..io import write_json
    from .cohort import generate_cohort

    cohort = generate_cohort(task, int(n), Path(out_dir), int(seed), progress=False,
                             overwrite=as_bool(overwrite, "overwrite"))  # fmt: skip
    data = json.loads(Path(cohort).read_text())
    entries = [e for split in ("training", "validation", "testing") for e in data.get(split, [])]
    data.update(training=[], validation=[], testing=entries)
    return write_json(data, Path(out_dir) / "input.json")
