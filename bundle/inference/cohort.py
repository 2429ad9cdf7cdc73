# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The main job's second detector and its merged tables (docs/outputs.md#every-marker-of-a-cohort).

The main job runs the EPVS and lacune detector first: :func:`run_part` runs its own config
(``configs/unet/structural_inference.yaml``) over the input into ``<folder>/structural`` (its own ``run.json``,
tables, maps and QC report); then the microbleed detector runs over the subjects with SWI (or T2*) into the folder
itself, and :func:`merge_parts` writes the cohort's tables at the top: ``detections.csv`` (every class, ``label``
cmb, epvs or lacune, with its ``region``), ``counts.csv`` (per subject, class and region; empty where a detector
did not run on the subject) and ``plan.csv`` (per subject and detector: run or not, and why).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Sequence

from ..data.io import atomic_path
from ..utils import is_null

__all__ = ["PARTS", "merge_parts", "run_part"]

logger = logging.getLogger(__name__)

#: the parts of a main-job folder besides its own: sub-folder -> the configs (under configs/) of its detector
PARTS = {"structural": ("common.yaml", "unet/train.yaml", "unet/structural.yaml", "unet/inference.yaml",
                        "unet/structural_inference.yaml")}  # fmt: skip
#: the classes of each detector, in counts.csv's order
CLASSES = {"": ("cmb",), "structural": ("epvs", "lacune")}


def run_part(part: str, bundle_root: str | os.PathLike, input, output_dir: str | os.PathLike,
             settings: dict | None = None, shard: str | None = None,
             plan: list[dict] | None = None) -> int:  # fmt: skip
    """Run the detector of ``part`` (:data:`PARTS`) on ``input`` into ``output_dir/part`` with its own config, the
    main job's ``settings`` (e.g. device, overwrite) overriding its defaults. A detector that has no subject to run
    on, or stops on an error, is logged and returns its exit status (0: it ran, 3: some subjects failed, they are
    in its ``failed.csv``); the main job's own outputs are never lost to it. With a ``shard`` (``i/n``) it runs on
    the subjects of the main job's share, by their place in ``settings["subject_order"]`` (the main job's
    ``subject_order``; :func:`bundle.inference.shard`), so both detectors of a subject run in the same process.
    Not run in a ``torch.distributed`` group (returns 0 with one log line: run the part's config itself there), nor
    when the ``plan`` (:func:`bundle.data.input_plan`) has no subject for it (in this shard)."""
    import ignite.distributed as idist
    from monai.bundle import ConfigWorkflow

    from .run_folder import shard as share

    if idist.get_world_size() > 1:
        logger.warning("%s detector not run by a distributed main job; run configs/%s on the input",
                       part, PARTS[part][-1])  # fmt: skip
        return 0
    mine = [r["subject"] for r in plan or [] if r["detector"] == part and r["run"] == "yes"]
    if plan is not None and not mine:
        logger.info("%s detector: no subject has its inputs (plan.csv says why)", part)
        return 0
    overrides = {k: v for k, v in (settings or {}).items() if v is not None}
    if not is_null(shard):
        if not share([{"subject": s} for s in mine], shard, overrides.get("subject_order")):
            logger.info("%s detector: no subject of --shard %s has its inputs", part, shard)
            return 0
        overrides["shard"] = shard
    files = [str(Path(bundle_root) / "configs" / f) for f in PARTS[part]]
    out = Path(output_dir) / part
    try:
        configs = Path(bundle_root) / "configs"
        wf = ConfigWorkflow(config_file=files, meta_file=str(configs / "metadata.json"),
                            logging_file=str(configs / "logging.conf"), workflow_type="infer", datalist=input,
                            output_dir=str(out), bundle_root=str(bundle_root), **overrides)  # fmt: skip
        wf.initialize()
        wf.run()
        wf.finalize()
    except SystemExit as stop:  # the part's one-line errors and its "some subjects failed" status
        code = stop.code if isinstance(stop.code, int) else 1
        if code != 3:
            logger.warning("%s detector not run: %s", part, stop.code)
        return code
    return 0


def _read(path: Path) -> tuple[list[str], list[dict]]:
    if not path.is_file():
        return [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _write(path: Path, header: Sequence[str], rows: list[dict]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, list(header), restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def merge_parts(output_dir: str | os.PathLike, parts: Sequence[str] = tuple(PARTS), plan: list[dict] | None = None,
                ) -> list[str]:  # fmt: skip
    """Merge the tables of the main job's folder and of its ``parts`` into the folder's ``detections.csv`` and
    ``counts.csv`` (and ``plan.csv`` from ``plan``, rows of :func:`bundle.data.plan.plan_rows`); returns the parts
    merged (those with a ``counts.csv``). A subject a detector did not run on has empty cells for its classes."""
    import ignite.distributed as idist

    if idist.get_rank() != 0:
        return []
    out = Path(output_dir)
    found = [p for p in parts if (out / p / "counts.csv").is_file()]
    own_header, own_rows = _read(out / "detections.csv")
    theirs = {c for p in found for c in CLASSES[p]}  # rows an earlier merge brought in are read from their part again
    tables = [(own_header, [r for r in own_rows if r.get("label") not in theirs])]
    tables += [_read(out / p / "detections.csv") for p in found]
    header = list(dict.fromkeys(c for h, _ in tables for c in h))
    rows = [r for _, rs in tables for r in rs]
    if found:
        _write(out / "detections.csv", header, rows)
    counts = [("", _read(out / "counts.csv"))] + [(p, _read(out / p / "counts.csv")) for p in found]
    subjects = list(dict.fromkeys(r["subject"] for _, (_, rs) in counts for r in rs))
    order = {s: n for n, s in enumerate(dict.fromkeys(r["subject"] for r in plan or []))}
    subjects.sort(key=lambda s: order.get(s, len(order)))  # the input's order (stable for subjects not in it)
    merged = {s: {"subject": s} for s in subjects}
    columns = ["subject"]
    for _, (head, rs) in counts:
        columns += [c for c in head if c not in ("subject", "total") and c not in columns]
        for r in rs:
            merged[r["subject"]].update({k: v for k, v in r.items() if k != "total"})
    classes = [c for p in ("", *found) for c in CLASSES[p]]
    regional = [c for k in classes for c in columns if c.startswith(f"{k}_") and not c.endswith("_grade")]
    columns = ["subject", *[c for c in classes if c in columns], *regional,
               *[c for c in columns if c.endswith("_grade")],
               *[c for c in columns if c not in classes and c not in regional and not c.endswith("_grade")
                 and c != "subject"]]  # fmt: skip
    for r in merged.values():
        r["total"] = sum(int(r[c]) for c in classes if r.get(c, "") != "")
    if found:
        _write(out / "counts.csv", [*columns, "total"], list(merged.values()))
    if plan is not None:
        _write(out / "plan.csv", ["subject", "detector", "run", "inputs", "why", "notes"], plan)
    failed = {(r["subject"], r["reason"]): r for p in ("", *found) for r in _read(out / p / "failed.csv")[1]}
    if found:  # finish_run reports every detector's failed subjects (once each)
        _write(out / "failed.csv", ["subject", "reason"], list(failed.values()))
    return found
