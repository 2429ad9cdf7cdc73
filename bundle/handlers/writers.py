# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Ignite handlers writing a run's outputs, one per output kind (``docs/outputs.md``): the detections table, the
counts per subject, NIfTI maps and instance maps. Each is given a reader of :mod:`bundle.inference.outputs` (or a
method's own) that says what to take from the network's output; a method declares what it produces by the writers
it lists in its ``inference.yaml``."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from ignite.engine import Engine, Events

from ..data.datalist import check_subject_id
from ..data.io import atomic_path, write_nifti
from ..inference.detections import subject_of, write_detections
from ..inference.isolation import FAILED

UNLABELLED = "objects"  # the counts.csv column of class-agnostic detections (empty label)


class SubjectWriter:
    """Base of the writers: :meth:`reset` when the run starts, :meth:`write_subject` for every subject of every
    iteration (``engine.state.batch`` / ``output`` decollated, as after MONAI's evaluator), :meth:`finish` when
    it completes. ``subjects`` lists the subjects written, in order; a subject that failed
    (:mod:`bundle.inference.isolation`) goes to :meth:`write_failure` instead."""

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.output_dir = Path(output_dir)
        self.subjects: list[str] = []

    @property
    def maps_dir(self) -> Path:
        return self.output_dir / "maps"

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, lambda _: self.finish())

    def __call__(self, engine: Engine) -> None:
        for batch, output in zip(engine.state.batch, engine.state.output):
            subject = subject_of(batch)
            if FAILED in output:
                self.write_failure(subject, str(output[FAILED]))
                continue
            self.subjects.append(subject)
            self.write_subject(subject, batch["image"], output)

    def reset(self) -> None:
        self.subjects = []

    def write_subject(self, subject: str, image, output: dict) -> None:
        """Handle one subject (``image``: its preprocessed image, ``output``: its post-processed output)."""

    def write_failure(self, subject: str, reason: str) -> None:
        """Handle a subject that failed (``reason``: one line); nothing by default."""

    def finish(self) -> None:
        """Write what is written once per run."""


class DetectionsTableWriter(SubjectWriter):
    """``output_dir/detections.csv``, written atomically when the run completes (the header only when nothing was
    detected): the rows ``detections(subject, image, output)`` gives for every subject, with the reader's
    ``choices`` and ``raters`` columns."""

    def __init__(self, output_dir: str | os.PathLike, detections: Callable) -> None:
        super().__init__(output_dir)
        self.detections = detections
        self.rows: list[dict] = []

    @property
    def path(self) -> Path:
        return self.output_dir / "detections.csv"

    def reset(self) -> None:
        super().reset()
        self.rows = []

    def write_subject(self, subject: str, image, output: dict) -> None:
        self.rows += self.detections(subject, image, output)

    def finish(self) -> None:
        d = self.detections
        write_detections(self.rows, self.path, getattr(d, "choices", ()), getattr(d, "raters", ()))


class CountsWriter:
    """``output_dir/counts.csv`` of the table writer ``table`` (in its folder), written when the run completes: one
    row per subject seen, subjects without detections included, with the number of detections per class of
    ``classes`` and their ``total`` (:func:`write_counts`; default classes: the table reader's ``label``, then
    every other label written; ``objects`` for detections without a label)."""

    def __init__(self, table: DetectionsTableWriter, classes: Sequence[str] = ()) -> None:
        self.table, self.classes = table, tuple(classes)

    @property
    def path(self) -> Path:
        return self.table.output_dir / "counts.csv"

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, lambda _: self.finish())

    def columns(self) -> tuple[str, ...]:
        if self.classes:
            return self.classes
        own = getattr(self.table.detections, "label", "") or UNLABELLED
        return (own, *sorted({str(r["label"]) or UNLABELLED for r in self.table.rows} - {own}))

    def finish(self) -> None:
        write_counts(self.table.rows, self.table.subjects, self.path, self.columns())


class MapWriter(SubjectWriter):
    """``output_dir/maps/<subject>_<name>.nii.gz`` per subject (atomically): the ``(array, affine)`` that
    ``map(subject, image, output)`` gives (e.g. :class:`bundle.inference.outputs.OutputMap`), as ``dtype``."""

    dtype = np.float32

    def __init__(self, output_dir: str | os.PathLike, map: Callable, name: str = "prob") -> None:
        super().__init__(output_dir)
        self.map, self.name = map, name

    def write_subject(self, subject: str, image, output: dict) -> None:
        check_subject_id(subject, "output maps")  # it becomes a file name
        array, affine = self.map(subject, image, output)
        self.check(subject, np.asarray(array))
        write_nifti(array, affine, self.maps_dir / f"{subject}_{self.name}.nii.gz", self.dtype)

    def check(self, subject: str, array: np.ndarray) -> None:
        """Raise if ``array`` cannot be written as ``dtype``."""


class InstanceMapWriter(MapWriter):
    """:class:`MapWriter` of an instance map (int16, voxel value = the detection's ``lesion_id``, 0 = background),
    e.g. :class:`bundle.inference.outputs.ComponentInstances`; raises if an id does not fit int16."""

    dtype = np.int16

    def __init__(self, output_dir: str | os.PathLike, map: Callable, name: str = "objects") -> None:
        super().__init__(output_dir, map, name)

    def check(self, subject: str, array: np.ndarray) -> None:
        if array.size and (array.min() < 0 or array.max() > np.iinfo(np.int16).max):
            raise ValueError(f"subject {subject!r}: instance ids {array.min()}..{array.max()} do not fit int16")


class FailuresWriter(SubjectWriter):
    """``output_dir/failed.csv`` (atomically, when the run completes; the header only when none failed): one row
    per subject that failed, ``subject, reason`` (one line naming the file and the problem)."""

    def __init__(self, output_dir: str | os.PathLike) -> None:
        super().__init__(output_dir)
        self.failures: list[tuple[str, str]] = []

    def reset(self) -> None:
        super().reset()
        self.failures = []

    def write_failure(self, subject: str, reason: str) -> None:
        self.failures.append((subject, reason))

    def finish(self) -> None:
        with atomic_path(self.output_dir / "failed.csv") as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(["subject", "reason"])
                writer.writerows(self.failures)


class Writers:
    """The writers of one run as one handler (the configs' ``writer``): attaches each of ``writers`` in order, then
    ``failures`` (the subjects that failed), so a method lists what it produces in ``writer#writers`` and the
    handlers list stays the same for every method."""

    def __init__(self, writers: Sequence, failures: FailuresWriter | None = None) -> None:
        self.writers = [*writers, *([failures] if failures is not None else [])]

    def attach(self, engine: Engine) -> None:
        for w in self.writers:
            w.attach(engine)


def write_counts(rows: list[dict], subjects: Sequence[str], path: str | os.PathLike, classes: Sequence[str]) -> Path:
    """``counts.csv`` (atomically): per subject of ``subjects`` (in order, once each), the number of ``rows`` of
    each class and the ``total``; a subject without detections gets zeros. Raises if a row's label is not one of
    ``classes`` (the table and the counts must agree). Rows without a label count under ``objects``."""
    classes = list(dict.fromkeys(c or UNLABELLED for c in classes))
    per = {s: dict.fromkeys(classes, 0) for s in dict.fromkeys(subjects)}
    for r in rows:
        label = str(r["label"]) or UNLABELLED
        if label not in classes:
            raise ValueError(f"detection of class {label!r} in subject {r['subject']!r}; counts.csv has {classes}")
        per.setdefault(str(r["subject"]), dict.fromkeys(classes, 0))[label] += 1
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["subject", *classes, "total"])
            for subject, c in per.items():
                writer.writerow([subject, *c.values(), sum(c.values())])
    return Path(path)
