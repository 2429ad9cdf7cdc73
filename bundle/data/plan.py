# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Which detectors each subject's scans allow, and the inference configs' input.

:func:`plan` says per subject (:func:`bundle.data.discover.discover`) which detectors run on which of its images,
and why not the others; :func:`detector_entries` turns the subjects a detector runs on into datalist entries;
:func:`inference_entries` is every inference config's input: a datalist, a folder of NIfTI files, a BIDS dataset or
a folder of subject folders. Command line, the plan of an input without running anything::

    python -m bundle.data.plan INPUT [--out plan.csv]

Decisions: docs/data.md#subjects-as-users-have-them-bids-and-subject-folders.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from .datalist import (
    DatalistError,
    _check_required,
    _missing,
    check_unique_subjects,
    folder_entries,
    inference_split,
    load_datalist,
    load_inference_list,
    read_datalist,
)
from .discover import discover, layout

__all__ = ["DETECTORS", "STRUCTURAL_SUBSETS", "cohort_entries", "detector_entries", "inference_entries", "input_plan",
           "plan", "plan_rows"]

logger = logging.getLogger(__name__)

#: the structural detector's trained inputs (configs/unet/structural.yaml ``modality_subsets``), in the order they
#: are preferred: a subject gets the first one it has all of
STRUCTURAL_SUBSETS = (("t1", "t2", "flair"), ("t1", "flair"), ("t2", "flair"), ("t2",), ("t1",))
#: detector -> what it is called in the plan
DETECTORS = {"cmb": "microbleed detector", "structural": "EPVS and lacune detector"}


def plan(subject: dict, subsets: Sequence[Sequence[str]] = STRUCTURAL_SUBSETS) -> dict[str, dict]:
    """Per detector of :data:`DETECTORS`: ``run`` (bool), ``inputs`` (the modalities it reads, in order) and
    ``why`` (what it reads, or why it does not run). ``subsets``: the structural detector's trained inputs, most
    preferred first."""
    have = subject.get("modalities", {})
    if subject.get("problem"):
        return {d: {"run": False, "inputs": [], "why": subject["problem"]} for d in DETECTORS}
    out = {}
    if "swi" in have:
        out["cmb"] = {"run": True, "inputs": ["swi"], "why": "SWI"}
    elif "t2star" in have:
        out["cmb"] = {"run": True, "inputs": ["t2star"], "why": "T2*-weighted image read as SWI (no SWI)"}
    else:
        out["cmb"] = {"run": False, "inputs": [], "why": "no SWI or T2*-weighted image"}
    structural = [m for m in ("t1", "t2", "flair") if m in have]
    chosen = next((list(s) for s in subsets if set(s) <= set(structural)), None)
    trained = ", ".join(" + ".join(m.upper() for m in s) for s in subsets)
    if chosen is None:
        why = f"{' + '.join(m.upper() for m in structural)} alone is not a trained input ({trained})" if structural \
            else "no T1, T2 or FLAIR image"  # fmt: skip
        out["structural"] = {"run": False, "inputs": [], "why": why}
    else:
        unused = [m for m in structural if m not in chosen]
        why = " + ".join(m.upper() for m in chosen)
        if unused:
            why += f" ({' + '.join(m.upper() for m in structural)} is not a trained input; " \
                   f"{' + '.join(m.upper() for m in unused)} not used)"  # fmt: skip
        out["structural"] = {"run": True, "inputs": chosen, "why": why}
    return out


def detector_entries(subjects: Sequence[dict], detector: str) -> list[dict]:
    """Datalist entries (``subject``, ``image``, ``modalities``, ``mask`` when found) of the subjects that
    ``detector`` runs on; one log line per subject it does not run on, with the reason. The microbleed detector's
    input is named ``swi`` also when a T2*-weighted image stands in for it. The first image is the detector's
    reference grid (the loader aligns the others onto it): the one the brain mask is on, else the first in the
    plan's order; a mask on none of the images' grids is not used (one log line)."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; expected one of {list(DETECTORS)}")
    entries = []
    for s in subjects:
        step = plan(s)[detector]
        if not step["run"]:
            logger.warning("%s: %s not run: %s", s["subject"], DETECTORS[detector], step["why"])
            continue
        names = ["swi"] if detector == "cmb" else list(step["inputs"])
        images, on = [s["modalities"][m] for m in step["inputs"]], None
        if "mask" in s:
            on = next((i for i, image in enumerate(images) if _same_grid(s["mask"], image)), None)
            if on is None:
                logger.warning("%s: brain mask %s is not on the grid of %s; not used", s["subject"], s["mask"],
                               " or ".join(images))  # fmt: skip
            else:  # the image the mask belongs to is the reference: the others are aligned onto its grid
                images.insert(0, images.pop(on))
                names.insert(0, names.pop(on))
        entry = {"subject": s["subject"], "image": images, "modalities": names}
        if on is not None:
            entry["mask"] = s["mask"]
        entries.append(entry)
    return entries


def _same_grid(a: str, b: str) -> bool:
    """Whether two NIfTI files have one grid (shape and affine, from their headers); True when a header cannot be
    read (the loader then names the file and the problem)."""
    import nibabel as nib
    import numpy as np

    try:
        x, y = nib.load(a), nib.load(b)
    except Exception:  # noqa: BLE001 - any unreadable header is the loader's to report
        return True
    return x.shape[:3] == y.shape[:3] and bool(np.allclose(x.affine, y.affine, rtol=0.0, atol=1e-3))


def cohort_entries(
    path: str | os.PathLike, modalities: Sequence[str] | None, require: Sequence[str] = (),
    optional_modalities: bool = False,
) -> list[dict]:
    """:func:`bundle.data.inference_entries` of a BIDS dataset or a folder of subject folders: the entries of the
    detector whose inputs a config names (``["swi"]``: microbleeds; T1, T2, FLAIR as optional modalities: EPVS and
    lacunes), less the subjects without a ``require``-d key, each left out with one log line.

    Raises:
        DatalistError: a config of another method, or no subject left.
    """
    detector = _detector_of(modalities, optional_modalities)
    if detector is None:
        raise DatalistError(f"input folder {path}: BIDS datasets and subject folders are read for the microbleed and "
                            f"the EPVS and lacune detectors, not for inputs {modalities}; write a datalist "
                            "(docs/data.md)")  # fmt: skip
    return _kept(path, detector_entries(discover(path), detector), modalities, require)


def _detector_of(modalities: Sequence[str] | None, optional_modalities: bool) -> str | None:
    """The detector whose inputs a config names: ``cmb`` for ``["swi"]`` (or none), ``structural`` for T1, T2,
    FLAIR as optional modalities, else None."""
    mods = list(modalities or ["swi"])
    if mods == ["swi"]:
        return "cmb"
    return "structural" if mods == list(STRUCTURAL_SUBSETS[0]) and optional_modalities else None


def _kept(path, entries: list[dict], modalities, require: Sequence[str]) -> list[dict]:
    mods = list(modalities or ["swi"])
    if not entries:
        raise DatalistError(f"input {path}: no subject has the images this config needs ({mods}); "
                            f"python -m bundle.data.plan {path} lists what each subject has")  # fmt: skip
    kept = []
    for e in entries:
        missing = _missing(e, require)
        if missing:
            logger.warning("%s: not run: no %s found in its folder, which this config needs", e["subject"],
                           " or ".join(missing))  # fmt: skip
        else:
            kept.append(e)
    if not kept:
        raise DatalistError(f"input {path}: no subject has the {list(require)} this config needs")
    check_unique_subjects(kept, f"input folder {path}")
    return kept


def datalist_subjects(path: str | os.PathLike) -> list[dict] | None:
    """The subjects of a datalist whose entries name their images' ``modalities`` (each entry's own key or the
    datalist's), as :func:`bundle.data.discover.discover` gives a folder's: ``subject``, ``modalities`` (name ->
    image), ``mask`` when the entry has one, ``notes``. None: the datalist names no modalities."""
    data = read_datalist(path)
    split = inference_split(path)
    if not data.get("modalities") and not any(isinstance(e, dict) and e.get("modalities") for e in data[split]):
        return None
    subjects = []
    for e in load_datalist(path, split):
        names = list(e.get("modalities") or data["modalities"])
        if len(names) != len(e["image"]):
            raise DatalistError(f"{e['subject']}: {len(e['image'])} images given, modalities {names} in datalist "
                                f"{path}")  # fmt: skip
        s = {"subject": e["subject"], "modalities": dict(zip(names, e["image"])), "notes": []}
        if e.get("mask"):
            s["mask"] = e["mask"]
        subjects.append(s)
    return subjects


def inference_entries(
    path: str | os.PathLike, modalities: Sequence[str] | None = None, require: Sequence[str] = (),
    optional_modalities: bool = False,
) -> list[dict]:
    """Entries of the main job's input: a datalist JSON (:func:`load_inference_list`), a folder of NIfTI files,
    one single-modality image per subject (:func:`folder_entries`), or a BIDS dataset or folder of subject folders
    (:func:`bundle.data.discover.detector_entries`: the subjects whose images the config's detector reads, the
    microbleed detector for ``["swi"]``, the EPVS and lacune detector for its modalities; one log line for each
    other subject).

    Raises:
        DatalistError: a folder given to a config that expects several modalities, or an entry without a
            ``require``-d key; see the two functions for the rest.
    """
    if Path(path).is_dir():
        if layout(path) != "files":
            return cohort_entries(path, modalities, require, optional_modalities)
        if modalities is not None and len(modalities) != 1:
            raise DatalistError(
                f"input folder {path}: a folder gives one image per subject, this config needs the modalities "
                f"{list(modalities)}; write a datalist (docs/data.md)"
            )
        entries = folder_entries(path)
        _check_required(entries, require, lambda e, m: f"no {m} beside {e['image'][0]}, which this config needs")
        return entries
    detector = _detector_of(modalities, optional_modalities)
    subjects = datalist_subjects(path) if detector else None
    wanted = set(modalities or ["swi"])
    if subjects is not None and any(set(s["modalities"]) - wanted for s in subjects):  # more than this detector reads
        return _kept(path, detector_entries(subjects, detector), modalities, require)
    return load_inference_list(path, modalities, require=require, optional_modalities=optional_modalities)


def plan_rows(subjects: Sequence[dict]) -> list[dict]:
    """One row per subject and detector: subject, detector, run (yes/no), inputs, why, notes."""
    rows = []
    for s in subjects:
        for detector, step in plan(s).items():
            rows.append({"subject": s["subject"], "detector": detector, "run": "yes" if step["run"] else "no",
                         "inputs": "+".join(step["inputs"]), "why": step["why"], "notes": "; ".join(s["notes"])})
    return rows


def input_plan(path: str | os.PathLike) -> list[dict]:
    """:func:`plan_rows` of any main-job input: the subjects of a BIDS dataset or folder of subject folders as
    discovered; a folder of NIfTI files gives one SWI per subject; a datalist's entries have the images their
    ``modalities`` name (SWI when they name none). An input that cannot be read gives no rows (the detectors
    report it)."""
    try:
        kind = layout(path)
        if kind in ("bids", "subjects"):
            return plan_rows(discover(path))
        if kind == "files":
            entries = folder_entries(path)
        else:
            subjects = datalist_subjects(path)
            if subjects is not None:
                return plan_rows(subjects)
            entries = read_datalist(path)[inference_split(path)]
    except (OSError, DatalistError, KeyError, TypeError):
        return []
    subjects = []
    for e in entries:
        images = e.get("image", [])
        images = [images] if isinstance(images, str) else list(images)
        names = e.get("modalities") or ["swi"][: len(images)]
        subjects.append({"subject": str(e.get("subject", "")), "modalities": dict(zip(names, images)), "notes": []})
    return plan_rows(subjects)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bundle.data.plan", description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="a BIDS dataset or a folder of subject folders")
    ap.add_argument("--out", help="write the plan as CSV (a new file; an existing one is never overwritten)")
    args = ap.parse_args(argv)
    try:
        rows = plan_rows(discover(args.input))
    except (OSError, DatalistError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    fields = ["subject", "detector", "run", "inputs", "why", "notes"]
    if args.out:
        from .io import atomic_path

        if Path(args.out).exists():
            print(f"error: {args.out} exists; give another --out", file=sys.stderr)
            return 1
        with atomic_path(args.out) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fields)
            writer.writeheader()
            writer.writerows(rows)
    for r in rows:
        print(f"{r['subject']}\t{r['detector']}\t{r['run']}\t{r['why']}" + (f"\t[{r['notes']}]" if r["notes"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
