# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""One bad subject never loses the others: a subject whose reading, preprocessing, network or post-processing
fails is carried through the run as a failure (``{"failed": "<one line>"}``) instead of stopping it. The writers
skip it, :class:`bundle.handlers.FailuresWriter` lists it in ``failed.csv``, and :func:`finish_run` ends the run
with exit status 3 when any subject failed.
"""

from __future__ import annotations

import sys
import tempfile
import traceback
from pathlib import Path

import ignite.distributed as idist
import torch
from ignite.engine import Events
from monai.data import Dataset
from monai.engines import SupervisedEvaluator

from ..utils import as_bool
from .run_folder import FAILED, close_run, read_failed

__all__ = ["FAILED", "SKIPPED", "IsolatedDataset", "IsolatingEvaluator", "failure_reason", "finish_run", "short_errors"]

SKIPPED = "skipped"  # the key of a subject whose outputs are complete from an earlier run
EXIT_SOME_FAILED = 3


def failure_reason(err: BaseException, subject: str = "", files=()) -> str:
    """One line for a user: the bundle's own message in the chain of ``err`` (it starts with the subject), else the
    innermost error that carries a message (MONAI wraps transform errors in ``RuntimeError("applying transform
    ...")``) prefixed by the subject and its type, with the subject's files appended when it names none of them."""
    chain, e = [], err
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    own = [c for c in chain if subject and str(c).startswith(f"{subject}:")]  # the bundle's own messages
    useful = [c for c in chain if str(c).strip() and not str(c).startswith("applying transform")] or chain
    inner = own[0] if own else useful[-1]
    text = " ".join(str(inner).split()) or type(inner).__name__
    if not text.startswith(f"{subject}:"):  # the bundle's own messages start with the subject
        text = f"{subject}: {type(inner).__name__}: {text}" if subject else f"{type(inner).__name__}: {text}"
    names = [str(f) for f in files if f]
    if names and not any(Path(n).name in text for n in names):
        text += f" (files: {', '.join(names)})"
    return text


def _files(entry: dict) -> list[str]:
    """The files of a datalist entry (paths), or of a loaded batch (its image's ``filename_or_obj``)."""
    image = entry.get("image", [])
    if hasattr(image, "meta"):
        names = image.meta.get("filename_or_obj", [])
        return [names] if isinstance(names, str) else [str(n) for n in names]
    paths = [*(image if isinstance(image, (list, tuple)) else [image]), *(entry.get(k) for k in ("mask", "roi"))]
    return [p for p in paths if isinstance(p, (str, Path))]


class IsolatedDataset(Dataset):
    """MONAI ``Dataset`` whose items never raise: a subject whose transform fails becomes
    ``{"subject": ..., "failed": <one line>}`` (:func:`failure_reason`), which :class:`IsolatingEvaluator` passes
    on without running the network. Use with ``batch_size`` 1 (a failed item does not collate with good ones).
    A subject for which ``skip(subject)`` is true (e.g. ``SubjectRecords.complete``: written by an earlier run)
    becomes ``{"subject": ..., "skipped": True}`` without being read."""

    def __init__(self, data, transform=None, skip=None) -> None:
        super().__init__(data, transform)
        self.skip = skip

    def _transform(self, index: int):
        entry = self.data[index]
        if self.skip is not None and isinstance(entry, dict) and self.skip(str(entry.get("subject", ""))):
            return {"subject": str(entry["subject"]), SKIPPED: True}
        try:
            return super()._transform(index)
        except Exception as err:  # noqa: BLE001 - every failure of one subject is recorded, not raised
            subject = str(entry.get("subject", f"entry {index}")) if isinstance(entry, dict) else f"entry {index}"
            files = _files(entry) if isinstance(entry, dict) else []
            return {"subject": subject, FAILED: failure_reason(err, subject, files)}


class IsolatingEvaluator(SupervisedEvaluator):
    """MONAI ``SupervisedEvaluator`` that records a failure instead of stopping the run: a batch carrying a
    failure from :class:`IsolatedDataset`, or one whose network or post-processing raises, ends its iteration
    with ``engine.state.batch = [{"subject", "image": None, "failed"}]`` and the output ``[{"failed": ...}]``
    per subject. Handlers see such items and skip them (``bundle.handlers.writers`` do). Once every handler has
    seen an iteration, its batch and output are released, so that one subject's images and maps are not held
    while the next subject is read and run (memory stays flat over a cohort)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_event_handler(Events.ITERATION_COMPLETED, self._release)  # after the handlers attached above

    @staticmethod
    def _release(engine) -> None:
        engine.state.batch = engine.state.output = None

    def _iteration(self, engine, batchdata):
        subjects = batchdata.get("subject", []) if isinstance(batchdata, dict) else []
        subjects = ([subjects] if isinstance(subjects, str) else list(subjects)) or ["batch"]
        if isinstance(batchdata, dict) and SKIPPED in batchdata:
            engine.state.batch = [{"subject": s, "image": None, SKIPPED: True} for s in subjects]
            engine.state.output = [{SKIPPED: True} for _ in subjects]
            return engine.state.output
        if isinstance(batchdata, dict) and FAILED in batchdata:
            reasons = batchdata[FAILED]
            return self._failed(engine, subjects, [reasons] if isinstance(reasons, str) else list(reasons))
        try:
            return super()._iteration(engine, batchdata)
        except Exception as err:  # noqa: BLE001
            if isinstance(err, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
            files = _files(batchdata) if len(subjects) == 1 else []
            return self._failed(engine, subjects, [failure_reason(err, s, files) for s in subjects])

    @staticmethod
    def _failed(engine, subjects, reasons):
        engine.state.batch = [{"subject": s, "image": None, FAILED: r} for s, r in zip(subjects, reasons)]
        engine.state.output = [{FAILED: r} for r in reasons]
        return engine.state.output


def finish_run(output_dir) -> None:
    """After a run: complete its ``run.json`` (:func:`bundle.inference.run_folder.close_run`) where there is one,
    print the failed subjects of ``output_dir/failed.csv``, one line each, and exit with status 3 when there are
    any (the other subjects' outputs are written). Only rank 0 of a ``torch.distributed`` group does this."""
    if idist.get_rank() != 0:
        return
    if (Path(output_dir) / "run.json").is_file():
        close_run(output_dir)
    failed = read_failed(output_dir)
    if failed:
        path = Path(output_dir) / "failed.csv"
        print(f"{len(failed)} subject(s) failed (listed in {path}); the others' outputs are written:", file=sys.stderr)
        for _, reason in failed:
            print(f"  {reason}", file=sys.stderr)
        sys.exit(EXIT_SOME_FAILED)


def short_errors(debug=False) -> None:
    """Make an error that ends the command print one line, ``error: <the innermost message>`` and where the full
    traceback was saved (a file in the temporary folder), instead of MONAI's chained traceback; ``debug`` true
    keeps Python's traceback. For a config's ``initialize`` (``--debug true`` on the command line)."""
    if as_bool(debug, "debug"):
        return

    def hook(kind, err, tb):
        if not isinstance(err, Exception):  # Ctrl-C and the like: as Python prints them
            return sys.__excepthook__(kind, err, tb)
        fd, log = tempfile.mkstemp(prefix="eso_error_", suffix=".log")
        with open(fd, "w") as f:
            f.write("".join(traceback.format_exception(kind, err, tb)))
        print(f"error: {failure_reason(err)} (traceback: {log}; --debug true prints it)", file=sys.stderr)

    sys.excepthook = hook
