# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""One run per output folder: ``run.json`` records what made the outputs beside it (bundle version, the weights'
checksum, the input's and the settings' fingerprint, start and end, the subjects written and failed).

A run into a folder that holds another run's outputs (another fingerprint, or outputs without ``run.json``) stops
with one line before writing anything, unless ``overwrite``: then the earlier run's outputs (only the files this
bundle writes) are removed first. A rerun with the same fingerprint redoes the run in place (e.g. after a kill)
and first removes the hidden temporary files an interrupted atomic write can leave.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Sequence

from .. import __version__
from ..data.io import fingerprint, write_json
from ..utils import as_bool

__all__ = ["OUTPUTS", "claim_output", "close_run", "read_failed"]

#: what a run writes into its folder (files and folders); nothing else is ever removed
OUTPUTS = ("detections.csv", "counts.csv", "failed.csv", "count_predictions.csv", "maps", "report", "run.json")
#: the temporary files of :func:`bundle.data.io.atomic_path` (``.<stem>.<8 random characters><suffix>``)
TEMPORARY = re.compile(r"\.[^.]+\.[a-z0-9_]{8}(\.[A-Za-z0-9]+)+")


def _weights_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _ours(folder: Path) -> list[Path]:
    return [folder / n for n in OUTPUTS if (folder / n).exists()]


def _remove_temporary(folder: Path) -> list[Path]:
    gone = []
    for sub in (folder, folder / "maps", folder / "report"):
        for p in sub.glob(".*") if sub.is_dir() else []:
            if p.is_file() and TEMPORARY.fullmatch(p.name):
                p.unlink()
                gone.append(p)
    return gone


def claim_output(
    output_dir, entries: Sequence[dict], checkpoint, settings: dict | None = None, overwrite: bool = False
) -> dict:
    """Make ``output_dir`` this run's (see the module's docstring) and write its ``run.json``; returns the record.

    Raises:
        SystemExit: the weights file is missing, or the folder holds another run's outputs and ``overwrite`` is not
            set (one line naming it).
    """
    folder = Path(output_dir)
    if not Path(checkpoint).is_file():
        raise SystemExit(f"error: the weights file {checkpoint} does not exist (--checkpoint)")
    record = {
        "bundle_version": __version__,
        "weights": str(checkpoint),
        "weights_sha256": _weights_sha256(checkpoint),
        "fingerprint": fingerprint(entries, {**(settings or {}), "version": __version__}),
        "subjects": len(entries),
    }
    manifest = folder / "run.json"
    earlier = json.loads(manifest.read_text()) if manifest.is_file() else None
    same = earlier is not None and all(earlier.get(k) == record[k] for k in ("fingerprint", "weights_sha256"))
    if _ours(folder) and not same:
        if not as_bool(overwrite, "overwrite"):
            why = "another input, weights or settings" if earlier else "outputs without a run.json"
            raise SystemExit(
                f"error: {folder} holds the outputs of another run ({why}); use another --output_dir, or "
                "--overwrite true to replace them"
            )
        for p in _ours(folder):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    _remove_temporary(folder)
    record.update(started=_now(), status="running")
    write_json(record, manifest)
    return record


def close_run(output_dir) -> dict:
    """Complete ``output_dir/run.json`` after the run: end time, the subjects written (``counts.csv``) and failed
    (``failed.csv``) and the status (``done``, or ``failed`` when a subject failed)."""
    folder = Path(output_dir)
    record = json.loads((folder / "run.json").read_text())
    written = [r["subject"] for r in _rows(folder / "counts.csv")]
    failed = [subject for subject, _ in read_failed(folder)]
    record.update(ended=_now(), status="failed" if failed else "done", written=written, failed=failed)
    write_json(record, folder / "run.json")
    return record


def read_failed(output_dir) -> list[tuple[str, str]]:
    """``(subject, reason)`` of each row of ``output_dir/failed.csv`` (none when there is no such file)."""
    return [(r["subject"], r["reason"]) for r in _rows(Path(output_dir) / "failed.csv")]


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
