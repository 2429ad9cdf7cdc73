# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Ignite handlers writing a run's outputs, one per output kind (``docs/outputs.md``): the detections table, the
counts per subject, NIfTI maps and instance maps. Each is given a reader of :mod:`bundle.inference.outputs` (or a
method's own) that says what to take from the network's output; a method declares what it produces by the writers
it lists in its ``inference.yaml``."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import ignite.distributed as idist
import numpy as np
from ignite.engine import Engine, Events

from ..data.datalist import check_subject_id
from ..data.io import atomic_path, image_file, write_nifti
from ..inference.detections import subject_of, write_detections
from ..inference.isolation import FAILED, SKIPPED
from ..inference.outputs import SubjectReader

UNLABELLED = "objects"  # the counts.csv column of class-agnostic detections (empty label)


class SubjectWriter:
    """Base of the writers: :meth:`reset` when the run starts, :meth:`record` for every subject of every iteration
    (``engine.state.batch`` / ``output`` decollated, as after MONAI's evaluator), :meth:`finish` with the records
    of the run's subjects when it completes. :meth:`write_subject` writes one subject's outputs and returns what
    its record keeps under ``key`` (e.g. the table rows, merged into the table when the run completes); a subject
    that failed (:mod:`bundle.inference.isolation`) is recorded as ``{"subject", "failed"}`` instead. Attached
    alone a writer keeps its records in memory; :class:`Writers` combines the records of a run's writers and
    stores them per subject (:class:`bundle.inference.run_folder.SubjectRecords`)."""

    key = ""  # the record's key of what write_subject returns ("": nothing kept)

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.output_dir = Path(output_dir)
        self.records: list[dict] = []

    @property
    def maps_dir(self) -> Path:
        return self.output_dir / "maps"

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, lambda _: self.finish(self.records))

    def __call__(self, engine: Engine) -> None:
        for batch, output in zip(engine.state.batch, engine.state.output):
            self.records.append(self.record(subject_of(batch), batch, output))

    def record(self, subject: str, batch: dict, output: dict) -> dict:
        """Write ``subject``'s outputs; returns its record (``{"subject", "failed"}`` for a failed subject)."""
        if FAILED in output:
            return {"subject": subject, FAILED: str(output[FAILED])}
        value = self.write_subject(subject, batch["image"], output)
        return {"subject": subject, **({self.key: value} if self.key and value is not None else {})}

    def reset(self) -> None:
        self.records = []

    def write_subject(self, subject: str, image, output: dict):
        """Write one subject (``image``: its preprocessed image, ``output``: its post-processed output); returns the
        value its record keeps under ``key`` (None: nothing)."""

    def finish(self, records: list[dict]) -> None:
        """Write what is written once per run from ``records`` (every subject of the run, in the run's order)."""


def written(records: Sequence[dict]) -> list[dict]:
    """The records of the subjects that did not fail."""
    return [r for r in records if FAILED not in r]


class DetectionsTableWriter(SubjectWriter):
    """``output_dir/detections.csv``, written atomically when the run completes (the header only when nothing was
    detected): the rows ``detections(subject, image, output)`` gives for every subject, with the reader's
    ``choices``, ``raters`` and ``extra_columns`` columns."""

    key = "detections"

    def __init__(self, output_dir: str | os.PathLike, detections: Callable) -> None:
        super().__init__(output_dir)
        self.detections = detections
        self.rows: list[dict] = []  # the table's rows, once finished

    @property
    def path(self) -> Path:
        return self.output_dir / "detections.csv"

    def write_subject(self, subject: str, image, output: dict) -> list[dict]:
        return list(self.detections(subject, image, output))

    def finish(self, records: list[dict]) -> None:
        self.rows = [row for r in written(records) for row in r.get(self.key, [])]
        d = self.detections
        extra = (*getattr(d, "raters", ()), *getattr(d, "extra_columns", ()))
        write_detections(self.rows, self.path, getattr(d, "choices", ()), extra)


class CountsWriter(SubjectWriter):
    """``output_dir/counts.csv`` of the table writer ``table`` (in its folder; list it after the table), written
    when the run completes: one row per subject written, subjects without detections included, with the number of
    detections per class of ``classes`` and their ``total`` (:func:`write_counts`; default classes: the table
    reader's ``label``, then every other label written; ``objects`` for detections without a label). ``regions``:
    also per class and region of the table's ``region`` column (:data:`bundle.data.atlas.REGIONS_OF`, zeros
    included) and the EPVS grades (:func:`region_counts`)."""

    def __init__(self, table: DetectionsTableWriter, classes: Sequence[str] = (), regions: bool = False) -> None:
        super().__init__(table.output_dir)
        self.table, self.classes, self.regions = table, tuple(classes), bool(regions)

    @property
    def path(self) -> Path:
        return self.table.output_dir / "counts.csv"

    def columns(self) -> tuple[str, ...]:
        if self.classes:
            return self.classes
        own = getattr(self.table.detections, "label", "") or UNLABELLED
        return (own, *sorted({str(r["label"]) or UNLABELLED for r in self.table.rows} - {own}))

    def finish(self, records: list[dict]) -> None:
        write_counts(self.table.rows, [r["subject"] for r in written(records)], self.path, self.columns(),
                     self.regions)


class MapWriter(SubjectWriter):
    """``output_dir/maps/<subject>_<name>.nii.gz`` per subject (atomically): the ``(array, affine)`` that
    ``map(subject, image, output)`` gives (e.g. :class:`bundle.inference.outputs.OutputMap`), as ``dtype``."""

    dtype = np.float32

    def __init__(self, output_dir: str | os.PathLike, map: Callable, name: str = "prob") -> None:
        super().__init__(output_dir)
        self.map, self.name = map, name

    def record(self, subject: str, batch: dict, output: dict) -> dict:
        record = super().record(subject, batch, output)
        return record if FAILED in record else {"subject": subject, "files": [f"maps/{subject}_{self.name}.nii.gz"]}

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


class LabelMapWriter(MapWriter):
    """:class:`MapWriter` of a label map (uint8, e.g. :class:`bundle.inference.outputs.RegionMap`'s regions or a
    brain mask); raises if a value does not fit uint8."""

    dtype = np.uint8

    def check(self, subject: str, array: np.ndarray) -> None:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"subject {subject!r}: label values {array.min()}..{array.max()} do not fit uint8")


class TemplateMapWriter(SubjectWriter):
    """``output_dir/maps/<subject>_template.json`` per subject (atomically): the map from the subject's world (RAS
    mm) to template millimetres that :class:`bundle.transforms.TemplateMapd` put in the image's metadata
    (``affine``, ``bspline``, the ``image`` file registered); nothing for a subject without one. The main job's
    microbleed detector reuses the EPVS and lacune detector's (``TemplateMapd(maps_from=...)``)."""

    def record(self, subject: str, batch: dict, output: dict) -> dict:
        record = super().record(subject, batch, output)
        name = f"maps/{subject}_template.json"
        return {**record, "files": [name]} if (self.output_dir / name).is_file() and FAILED not in record else record

    def write_subject(self, subject: str, image, output: dict) -> None:
        text = getattr(image, "meta", {}).get("template_map")
        text = text[0] if isinstance(text, (list, tuple)) else text  # a batch of one, not decollated
        check_subject_id(subject, "output maps")  # it becomes a file name
        path = self.maps_dir / f"{subject}_template.json"
        if not text:
            path.unlink(missing_ok=True)  # an earlier run's map must not stand for this one's
            return
        with atomic_path(path) as tmp:
            tmp.write_text(text)


def alignment_of(image) -> list[dict]:
    """The loader's alignment records of an image (``image.meta["alignment"]``, :class:`bundle.data.LoadSubjectd`;
    none where it has one channel or was not read by it)."""
    text = getattr(image, "meta", {}).get("alignment", "[]")
    text = text[0] if isinstance(text, (list, tuple)) else text  # a batch of one, not decollated
    return json.loads(text) if text else []


class AlignmentWriter(SubjectWriter):
    """``output_dir/alignment.csv`` (atomically, when the run completes; the header only when no subject had a
    second image): per subject and image after the first, how it was brought onto the first's grid and how well
    their heads overlap (:func:`bundle.data.align.align_onto`); ``flagged`` subjects are listed in the QC report."""

    key = "alignment"
    columns = ("subject", "modality", "onto", "resampled", "registered", "rotation_deg", "shift_mm", "overlap",
               "flagged", "file")  # fmt: skip

    def write_subject(self, subject: str, image, output: dict) -> list[dict]:
        return alignment_of(image)

    def finish(self, records: list[dict]) -> None:
        rows = [[r["subject"], *(a.get(c, "") for c in self.columns[1:])] for r in written(records)
                for a in r.get(self.key, [])]  # fmt: skip
        write_csv(self.output_dir / "alignment.csv", self.columns, rows)


class FailuresWriter(SubjectWriter):
    """``output_dir/failed.csv`` (atomically, when the run completes; the header only when none failed): one row
    per subject that failed, ``subject, reason`` (one line naming the file and the problem)."""

    def finish(self, records: list[dict]) -> None:
        write_csv(self.output_dir / "failed.csv", ["subject", "reason"], [[r["subject"], r[FAILED]] for r in records
                                                                            if FAILED in r])  # fmt: skip


class Writers:
    """The writers of one run as one handler (the configs' ``writer``), so a method lists what it produces in
    ``writer#writers`` and the handlers list stays the same for every method.

    Per subject it calls each of ``writers`` in order, then the ``checks`` every method writes (e.g.
    :class:`AlignmentWriter`), then ``failures``, and combines their records (with the
    input ``image``); with ``records`` it saves that record as the subject's last output (the unit a rerun skips:
    :class:`bundle.inference.run_folder.SubjectRecords`). A subject the dataset skipped (complete from an earlier
    run) is not written again. When the run completes every process of a ``torch.distributed`` group waits for
    the others; then rank 0 merges the records of the whole run (every subject of ``run.json``, whichever
    process wrote it) into the tables."""

    def __init__(self, writers: Sequence, failures: FailuresWriter | None = None, records=None,
                 checks: Sequence = ()) -> None:  # fmt: skip
        self.writers = [*writers, *checks, *([failures] if failures is not None else [])]
        self.store = records
        self.records: list[dict] = []  # kept in memory only without a store
        self.seen: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, lambda _: self.finish())

    def reset(self) -> None:
        self.records, self.seen = [], []
        for w in self.writers:
            w.reset()

    def __call__(self, engine: Engine) -> None:
        for batch, output in zip(engine.state.batch, engine.state.output):
            subject = subject_of(batch)
            self.seen.append(subject)
            if SKIPPED in output:
                continue
            record: dict = {"subject": subject}
            for w in self.writers:
                part = w.record(subject, batch, output)
                record.update({k: v for k, v in part.items() if k != "files"})
                record["files"] = record.get("files", []) + part.get("files", [])
            if FAILED not in record:
                record["image"] = image_file(batch["image"])
            if self.store is not None:
                self.store.save(record)
            else:
                self.records.append(record)
        SubjectReader.forget()  # the readers' results of this iteration are written

    def finish(self) -> None:
        idist.barrier()
        if idist.get_rank() != 0:
            return
        records = self.store.merged(self.seen) if self.store is not None else self.records
        for w in self.writers:
            w.finish(records)


def write_csv(path: str | os.PathLike, header: Sequence[str], rows) -> Path:
    """A CSV file (atomically; ``\\n`` line ends) of ``header`` and ``rows`` (sequences of values)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
    return Path(path)


def write_counts(rows: list[dict], subjects: Sequence[str], path: str | os.PathLike, classes: Sequence[str],
                 regions: bool = False) -> Path:  # fmt: skip
    """``counts.csv`` (atomically): per subject of ``subjects`` (in order, once each), the number of ``rows`` of
    each class (with ``regions``: then its :func:`region_counts`) and the ``total``; a subject without detections
    gets zeros. Raises if a row's label is not one of ``classes`` (the table and the counts must agree). Rows
    without a label count under ``objects``."""
    classes = list(dict.fromkeys(c or UNLABELLED for c in classes))
    per = {s: dict.fromkeys(classes, 0) for s in dict.fromkeys(subjects)}
    for r in rows:
        label = str(r["label"]) or UNLABELLED
        if label not in classes:
            raise ValueError(f"detection of class {label!r} in subject {r['subject']!r}; counts.csv has {classes}")
        per.setdefault(str(r["subject"]), dict.fromkeys(classes, 0))[label] += 1
    header = ["subject", *classes]
    extra = {s: {} for s in per}
    if regions:
        for s in per:
            extra[s] = region_counts([r for r in rows if str(r["subject"]) == s], classes)
        header += list(region_counts([], classes))
    return write_csv(path, [*header, "total"],
                     [[s, *c.values(), *extra[s].values(), sum(c.values())] for s, c in per.items()])  # fmt: skip


def region_counts(rows: list[dict], classes: Sequence[str]) -> dict[str, int]:
    """``<class>_<region>`` counts of one subject's rows for every class of ``classes`` that has atlas regions
    (zeros included), then ``epvs_<region>_grade`` (0-4, :func:`bundle.data.atlas.epvs_grade`) for the basal
    ganglia and the centrum semiovale."""
    from ..data.atlas import REGIONS_OF, epvs_grade

    out = {}
    for c in classes:
        for region in REGIONS_OF.get(c, ()):
            out[f"{c}_{region}"] = sum(str(r["label"]) == c and r.get("region") == region for r in rows)
    if "epvs" in classes:
        for region in ("basal_ganglia", "centrum_semiovale"):
            out[f"epvs_{region}_grade"] = epvs_grade(out[f"epvs_{region}"])
    return out
