# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""One run per output folder: ``run.json`` records what made the outputs beside it (bundle version, the weights'
checksum, the input's and the settings' fingerprint, start and end, the subjects written and failed).

A run into a folder that holds another run's outputs (another fingerprint, or outputs without ``run.json``) stops
with one line before writing anything, unless ``overwrite``: then the earlier run's outputs (only the files this
bundle writes) are removed first. A rerun with the same fingerprint first removes the hidden temporary files an
interrupted atomic write can leave; the main job then skips the subjects whose outputs are complete (its dataset's
``skip``) and redoes the rest (the method configs redo every subject: their fingerprints hold only thresholds).

Each subject's outputs form a unit: its maps, then ``subjects/<subject>.json`` (:class:`SubjectRecords`), written
last and atomically, with its table rows (or its failure) and the files written. The run's tables are merged from
these records in the order of ``run.json``, so a run split across processes (:func:`shard`, ``torchrun``) or
resumed after a kill writes the same tables, byte for byte, as one uninterrupted process.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Sequence

import ignite.distributed as idist
from monai.data import partition_dataset

from .. import __version__
from ..data.datalist import check_subject_id
from ..data.io import fingerprint, write_json
from ..utils import as_bool, is_null

logger = logging.getLogger(__name__)

__all__ = ["OUTPUTS", "SubjectRecords", "claim_output", "close_run", "match_itk_threads", "read_failed", "shard"]

#: what a run writes into its folder (files and folders); nothing else is ever removed
OUTPUTS = ("detections.csv", "counts.csv", "failed.csv", "alignment.csv", "count_predictions.csv", "plan.csv",
           "index.html", "logs", "maps", "report", "subjects", "structural", "run.json")  # fmt: skip
FAILED = "failed"  # the key of a failure in a record (as in a batch item, bundle.inference.isolation)
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
    for sub in (folder, folder / "maps", folder / "report", folder / "subjects"):
        for p in sub.glob(".*") if sub.is_dir() else []:
            if p.is_file() and TEMPORARY.fullmatch(p.name):
                p.unlink()
                gone.append(p)
    return gone


def claim_output(
    output_dir,
    entries: Sequence[dict],
    checkpoint,
    settings: dict | None = None,
    overwrite: bool = False,
    shard_spec: str | None = None,
) -> dict:
    """Make ``output_dir`` this run's (see the module's docstring) and write its ``run.json``; returns the record.
    In a ``torch.distributed`` group rank 0 claims, the others wait for it and stop too when it fails. With a
    ``shard_spec`` (one of several processes started separately, e.g. a SLURM array) temporary files are left
    alone (another shard may be writing them) and ``overwrite`` is refused.

    Raises:
        SystemExit: the weights file is missing, or the folder holds another run's outputs and ``overwrite`` is not
            set (one line naming it).
    """
    if shard_spec and as_bool(overwrite, "overwrite"):
        raise SystemExit("error: --overwrite true removes the outputs other shards are writing; not with --shard")
    if idist.get_world_size() == 1:
        return _claim(output_dir, entries, checkpoint, settings, overwrite, clean=not shard_spec)
    refusal = ""
    if idist.get_rank() == 0:
        try:
            record = _claim(output_dir, entries, checkpoint, settings, overwrite, clean=True)
        except SystemExit as stop:
            refusal = str(stop.code)
        except Exception as err:  # noqa: BLE001 - the other ranks must hear of it, not wait for ever
            refusal = f"error: rank 0 could not claim {output_dir}: {type(err).__name__}: {err}"
    refusal = idist.broadcast(refusal, src=0)  # every rank learns whether rank 0 claimed the folder, and why not
    if refusal:
        raise SystemExit(refusal)
    return record if idist.get_rank() == 0 else json.loads((Path(output_dir) / "run.json").read_text())


def _claim(output_dir, entries, checkpoint, settings, overwrite, clean: bool) -> dict:
    folder = Path(output_dir)
    if not Path(checkpoint).is_file():
        raise SystemExit(f"error: the weights file {checkpoint} does not exist (--checkpoint)")
    record = {
        "bundle_version": __version__,
        "weights": str(checkpoint),
        "weights_sha256": _weights_sha256(checkpoint),
        "fingerprint": fingerprint(entries, {**(settings or {}), "version": __version__}),
        "subjects": len(entries),
        "order": [str(e["subject"]) for e in entries],  # the order of the merged tables
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
    if clean:
        _remove_temporary(folder)
    record.update(started=_now(), status="running")
    write_json(record, manifest)
    return record


def close_run(output_dir) -> dict:
    """Complete ``output_dir/run.json`` after the run: end time, each subject's status from its record (``written``,
    ``failed``, ``pending``: not run yet, e.g. another shard's) and the run's status: ``done``, ``failed`` when a
    subject failed, else ``incomplete`` when one is pending."""
    folder = Path(output_dir)
    record = json.loads((folder / "run.json").read_text())
    records = SubjectRecords(folder)
    status = {}
    for subject in record.get("order", []):
        r = records.load(subject) or {}
        status[subject] = "failed" if FAILED in r else "written" if r and records.complete(subject, r) else "pending"
    written, failed, pending = ([s for s, v in status.items() if v == k] for k in ("written", "failed", "pending"))
    state = "failed" if failed else "incomplete" if pending else "done"
    record.update(ended=_now(), status=state, written=written, failed=failed, pending=pending)
    write_json(record, folder / "run.json")
    return record


def shard(entries: Sequence[dict], spec: str | None = None, order: Sequence[str] | None = None) -> list[dict]:
    """This process's share of ``entries``: every n-th from the i-th for ``spec`` ``"i/n"`` (e.g. a SLURM array's
    ``$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``), else every ``world_size``-th from this rank's in a
    ``torch.distributed`` group, else all of them. With a ``spec`` and an ``order`` (every subject of the input, in
    its order), a subject's place in ``order`` counts instead of its place in ``entries``: the main job's two
    detectors, each on the subjects it can run, then give a subject to the same shard, and a detector's share may
    be empty (logged). When a subject of ``entries`` is not in ``order`` (a warning), all count by their places in
    ``entries``.

    Raises:
        SystemExit: ``spec`` is not ``i/n`` with 0 <= i < n, or the input has fewer subjects than shares (one line).
    """
    if is_null(spec):
        i, n, name = idist.get_rank(), idist.get_world_size(), "this process"
    else:
        parts = str(spec).split("/")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or not 0 <= int(parts[0]) < int(parts[1]):
            raise SystemExit(f"error: --shard {spec!r} must be i/n with 0 <= i < n (e.g. 0/4)")
        i, n, name = int(parts[0]), int(parts[1]), f"--shard {spec}"
    place = {str(s): k for k, s in enumerate(order or [])}
    by_place = not is_null(spec) and n > 1 and not is_null(order)
    if by_place and not all(str(e["subject"]) in place for e in entries):
        logger.warning("%s: a subject is not in the input's order; sharding by the detector's own list", name)
        by_place = False
    total = len(place) if by_place else len(entries)
    if total < n:
        raise SystemExit(f"error: {name} gets no subject: the input has {total}, split {n} ways; use at most "
                         f"{total} shards or processes")  # fmt: skip
    if not by_place:
        return partition_dataset(list(entries), num_partitions=n)[i]  # every n-th from the i-th
    mine = [e for e in entries if place[str(e["subject"])] % n == i]
    if not mine:
        logger.info("%s: no subject of this share for this detector", name)
    return mine


def match_itk_threads() -> int:
    """SimpleITK's default number of threads (bias correction, registration) set to torch's, unless
    ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` sets it: processes that share a CPU (torchrun gives each one torch
    thread unless ``OMP_NUM_THREADS`` says otherwise) then share its cores instead of each running ITK on all of
    them. Returns SimpleITK's number of threads."""
    import SimpleITK as sitk
    import torch

    if not os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(torch.get_num_threads())
    return sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()


class SubjectRecords:
    """``output_dir/subjects/<subject>.json``: one subject's unit of outputs, written last (after its maps) and
    atomically: ``subject``, its table rows (``detections``) and other writers' values, the ``files`` it wrote
    (relative to ``output_dir``) and its input ``image``; or ``failed`` with the one-line reason."""

    def __init__(self, output_dir) -> None:
        self.output_dir = Path(output_dir)

    def path(self, subject: str) -> Path:
        return self.output_dir / "subjects" / f"{check_subject_id(subject, 'subject records')}.json"

    def save(self, record: dict) -> Path:
        return write_json(record, self.path(str(record["subject"])), strict=False)  # NaN stays: tables print it

    def load(self, subject: str) -> dict | None:
        """The record of ``subject``, or None when there is none (or it cannot be read)."""
        try:
            record = json.loads(self.path(subject).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("subject") == subject else None

    def complete(self, subject: str, record: dict | None = None) -> bool:
        """True when ``subject`` was written (not failed) and every file its record lists exists."""
        record = self.load(subject) if record is None else record
        if record is None or FAILED in record:
            return False
        return all((self.output_dir / f).is_file() for f in record.get("files", []))

    def order(self) -> list[str] | None:
        """The subjects of the run in ``run.json``, in order (None without one)."""
        try:
            return list(json.loads((self.output_dir / "run.json").read_text())["order"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def merged(self, seen: Sequence[str]) -> list[dict]:
        """The records to merge into the run's tables: of every subject of ``run.json`` that has one, in its order
        (subjects run by other processes or earlier included), else of the subjects ``seen`` by this process."""
        found = (self.load(s) for s in (self.order() or list(dict.fromkeys(seen))))
        return [r for r in found if r is not None]


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
