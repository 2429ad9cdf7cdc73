# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Subjects as users have them, and which detectors each one's scans allow.

:func:`discover` reads a BIDS dataset (``sub-*/[ses-*/]anat/*_{T1w,T2w,FLAIR,swi,T2starw}.nii[.gz]``, one subject
per subject and session) or a folder of subject folders named with the common non-BIDS words (``t1``, ``mprage``,
``t2``, ``flair``, ``swi``, ``t2star``, ``gre``, ...). :func:`plan` says per subject which detectors run on which
of its images, and why not the others; :func:`detector_entries` turns the subjects a detector runs on into datalist
entries. :func:`inference_entries` is every inference config's input: a datalist, a folder of NIfTI files or one of
these two layouts. Command line, the plan of an input without running anything::

    python -m bundle.data.discover INPUT [--out plan.csv]

Decisions (docs/data.md#subjects-as-users-have-them): a name that fits no modality, or a phase, minimum-intensity
projection or segmentation file, is skipped with a note; of two images of one modality the first in name order is
used, with a note; a subject folder without any image is reported, never dropped silently.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from .datalist import (
    NIFTI_SUFFIXES,
    DatalistError,
    _check_required,
    _missing,
    check_subject_id,
    check_unique_subjects,
    folder_entries,
    load_inference_list,
)

__all__ = ["DETECTORS", "MODALITIES", "STRUCTURAL_SUBSETS", "cohort_entries", "detector_entries", "discover",
           "inference_entries", "layout", "plan"]

logger = logging.getLogger(__name__)

#: the modalities the bundle reads, in its canonical names
MODALITIES = ("t1", "t2", "flair", "swi", "t2star")
#: BIDS suffixes (the part after the last ``_``) of those modalities
BIDS_SUFFIXES = {"T1w": "t1", "T2w": "t2", "FLAIR": "flair", "swi": "swi", "T2starw": "t2star"}
#: non-BIDS file names: the first modality with a word of the name in its set (FLAIR before T2: ``t2_flair``)
NAME_WORDS = (
    ("flair", {"flair", "t2flair", "tirm", "darkfluid"}),
    ("swi", {"swi", "swan", "swip"}),
    ("t2star", {"t2star", "t2starw", "t2s", "gre", "hemo"}),
    ("t2", {"t2", "t2w", "tse"}),
    ("t1", {"t1", "t1w", "mprage", "mp2rage", "spgr", "bravo"}),
)
#: words of files that are not an input image (phase, minimum-intensity projection, labels)
SKIP_WORDS = {"phase", "pha", "ph", "mip", "minip", "mnip", "seg", "dseg", "probseg", "label", "labels", "lesion",
              "lesions", "roi"}  # fmt: skip
MASK_WORDS = {"mask", "brainmask"}
#: the structural detector's trained inputs (configs/unet/structural.yaml ``modality_subsets``), in the order they
#: are preferred: a subject gets the first one it has all of
STRUCTURAL_SUBSETS = (("t1", "t2", "flair"), ("t1", "flair"), ("t2", "flair"), ("t2",), ("t1",))
#: detector -> what it is called in the plan
DETECTORS = {"cmb": "microbleed detector", "structural": "EPVS and lacune detector"}


def _stem(name: str) -> str | None:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _words(stem: str) -> set[str]:
    return {w for w in re.split(r"[_\-. ]+", stem.lower()) if w}


def layout(path: str | os.PathLike) -> str:
    """``datalist`` (a file), ``bids`` (a folder with ``sub-*`` folders), ``files`` (NIfTI files directly in the
    folder, one single-modality subject each; also a folder without subfolders) or ``subjects`` (a folder of
    subject folders).

    Raises:
        FileNotFoundError: no such file or folder.
    """
    path = Path(path)
    if path.is_file():
        return "datalist"
    if not path.is_dir():
        raise FileNotFoundError(f"input {path} does not exist")
    children = [c for c in path.iterdir() if not c.name.startswith(".")]
    if any(c.is_dir() and c.name.startswith("sub-") for c in children):
        return "bids"
    if any(c.is_file() and _stem(c.name) is not None for c in children) or not any(c.is_dir() for c in children):
        return "files"
    return "subjects"


def _subject(subject: str, folder: Path, images: dict, masks: list, notes: list) -> dict:
    entry: dict = {"subject": subject, "folder": str(folder), "modalities": {}, "notes": list(notes)}
    for modality in MODALITIES:
        paths = sorted(images.get(modality, []))
        if paths:
            entry["modalities"][modality] = str(paths[0].resolve())
            if len(paths) > 1:
                others = ", ".join(p.name for p in paths[1:])
                entry["notes"].append(f"{len(paths)} {modality} images: used {paths[0].name}, not {others}")
    if masks:
        masks = sorted(masks)
        entry["mask"] = str(masks[0].resolve())
        if len(masks) > 1:
            entry["notes"].append(f"{len(masks)} brain masks: used {masks[0].name}")
    if not entry["modalities"]:
        entry["problem"] = f"no image of {'/'.join(MODALITIES)} found in {folder}"
    return entry


def _bids_subjects(root: Path) -> list[dict]:
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("sub-")):
        sessions = sorted(p for p in sub.iterdir() if p.is_dir() and p.name.startswith("ses-")) or [sub]
        for ses in sessions:
            subject = sub.name if ses is sub else f"{sub.name}_{ses.name}"
            anat, images, masks, notes = ses / "anat", {}, [], []
            files = sorted(anat.iterdir()) if anat.is_dir() else []
            for f in files:
                stem = _stem(f.name) if f.is_file() else None
                if stem is None:
                    continue
                entities, suffix = stem.rsplit("_", 1) if "_" in stem else ("", stem)
                if suffix == "mask" and "desc-brain" in entities.split("_"):
                    masks.append(f)
                elif "part-phase" in entities.split("_") or suffix not in BIDS_SUFFIXES:
                    notes.append(f"skipped {f.name}")
                else:
                    images.setdefault(BIDS_SUFFIXES[suffix], []).append(f)
            out.append(_subject(subject, anat, images, masks, notes))
    return out


def _folder_subjects(root: Path) -> list[dict]:
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images, masks, notes = {}, [], []
        for f in sorted(p for p in folder.rglob("*") if p.is_file() and not any(
                part.startswith(".") for part in p.relative_to(folder).parts)):  # fmt: skip
            stem = _stem(f.name)
            if stem is None:
                continue
            words = _words(stem)
            if words & MASK_WORDS:
                masks.append(f)
                continue
            modality = None if words & SKIP_WORDS else next((m for m, w in NAME_WORDS if words & w), None)
            if modality is None:
                notes.append(f"skipped {f.relative_to(folder)}")
            else:
                images.setdefault(modality, []).append(f)
        out.append(_subject(folder.name, folder, images, masks, notes))
    return out


def discover(path: str | os.PathLike) -> list[dict]:
    """The subjects of a BIDS dataset or a folder of subject folders, in name order.

    Each subject: ``subject`` (``sub-01`` or ``sub-01_ses-2``; a subject folder's name), ``folder``,
    ``modalities`` (modality -> image path, for those found), ``mask`` (a brain mask, when found), ``notes``
    (files skipped, choices made) and ``problem`` (why none of its files can be used, when so).

    Raises:
        FileNotFoundError: no such folder.
        DatalistError: the input is a datalist or a folder of NIfTI files (one subject each, read by
            :func:`bundle.data.inference_entries`), it holds no subject folder, or two subjects share an id.
    """
    kind = layout(path)
    if kind in ("datalist", "files"):
        raise DatalistError(f"input {path} is a {'datalist' if kind == 'datalist' else 'folder of images'}, "
                            "not a BIDS dataset or a folder of subject folders")  # fmt: skip
    subjects = _bids_subjects(Path(path)) if kind == "bids" else _folder_subjects(Path(path))
    if not subjects:
        raise DatalistError(f"input folder {path} holds no subject folder and no NIfTI image")
    for s in subjects:
        try:
            check_subject_id(s["subject"], f"folder {s['folder']}")
        except DatalistError as err:
            s["problem"] = str(err)
    return subjects


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


def detector_entries(subjects: Sequence[dict], detector: str, as_modalities: Sequence[str] | None = None) -> list[dict]:
    """Datalist entries (``subject``, ``image``, ``modalities``, ``mask`` when found) of the subjects that
    ``detector`` runs on; one log line per subject it does not run on, with the reason. ``as_modalities``: the
    names the detector's config gives its inputs (e.g. ``["swi"]``: a T2*-weighted image stands in for SWI)."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; expected one of {list(DETECTORS)}")
    entries = []
    for s in subjects:
        step = plan(s)[detector]
        if not step["run"]:
            logger.warning("%s: %s not run: %s", s["subject"], DETECTORS[detector], step["why"])
            continue
        names = list(as_modalities) if as_modalities is not None and len(as_modalities) == len(step["inputs"]) \
            else step["inputs"]  # fmt: skip
        entry = {"subject": s["subject"], "image": [s["modalities"][m] for m in step["inputs"]], "modalities": names}
        if "mask" in s:
            entry["mask"] = s["mask"]
        entries.append(entry)
    return entries


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
    mods = list(modalities or ["swi"])
    detector = "cmb" if mods == ["swi"] else "structural" if mods == list(STRUCTURAL_SUBSETS[0]) and \
        optional_modalities else None  # fmt: skip
    if detector is None:
        raise DatalistError(f"input folder {path}: BIDS datasets and subject folders are read for the microbleed and "
                            f"the EPVS and lacune detectors, not for inputs {mods}; write a datalist (docs/data.md)")
    entries = detector_entries(discover(path), detector, ["swi"] if detector == "cmb" else None)
    if not entries:
        raise DatalistError(f"input folder {path}: no subject has the images this config needs ({mods}); "
                            f"python -m bundle.data.discover {path} lists what each subject has")  # fmt: skip
    for e in entries:
        if _missing(e, require):
            logger.warning("%s: not run: no %s found in its folder, which this config needs", e["subject"],
                           " or ".join(_missing(e, require)))  # fmt: skip
    kept = [e for e in entries if not _missing(e, require)]
    if not kept:
        raise DatalistError(f"input folder {path}: no subject has the {list(require)} this config needs")
    check_unique_subjects(kept, f"input folder {path}")
    return kept


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
    return load_inference_list(path, modalities, require=require, optional_modalities=optional_modalities)


def plan_rows(subjects: Sequence[dict]) -> list[dict]:
    """One row per subject and detector: subject, detector, run (yes/no), inputs, why, notes."""
    rows = []
    for s in subjects:
        for detector, step in plan(s).items():
            rows.append({"subject": s["subject"], "detector": detector, "run": "yes" if step["run"] else "no",
                         "inputs": "+".join(step["inputs"]), "why": step["why"], "notes": "; ".join(s["notes"])})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bundle.data.discover", description=__doc__.split("\n\n")[0])
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
