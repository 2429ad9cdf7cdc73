# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Subjects as users have them: :func:`discover` reads a BIDS dataset
(``sub-*/[ses-*/]anat/*_{T1w,T2w,FLAIR,swi,T2starw}.nii[.gz]``, one subject per subject and session) or a folder of
subject folders whose files are named with the common scanner words (``t1``, ``mprage``, ``t2``, ``flair``,
``swi``, ``t2star``, ``gre``, ...). :mod:`bundle.data.plan` says which detectors run on them.

Decisions: docs/data.md#subjects-as-users-have-them-bids-and-subject-folders.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .datalist import DatalistError, check_subject_id
from .datalist import _stem as _lower_stem

__all__ = ["MODALITIES", "discover", "layout"]

#: the modalities the bundle reads, in its canonical names
MODALITIES = ("t1", "t2", "flair", "swi", "t2star")
#: BIDS suffixes (the part after the last ``_``) of those modalities (``T2star``: the deprecated name of T2starw)
BIDS_SUFFIXES = {"T1w": "t1", "T2w": "t2", "FLAIR": "flair", "swi": "swi", "T2starw": "t2star", "T2star": "t2star"}
#: non-BIDS file names: the first rule whose words the name has (a tuple: all of them) gives the modality
NAME_RULES = (
    ("t1", [("t1", "flair")]),  # a T1-weighted FLAIR is a T1
    ("flair", ["flair", "t2flair", "tirm", "darkfluid"]),
    ("swi", ["swi", "swan", "swip"]),
    ("t2star", ["t2star", "t2starw", "t2s", "hemo", ("t2", "ffe"), ("t2", "gre")]),
    ("t1", ["t1", "t1w", "st1w", "3dt1", "t13d", "mprage", "mp2rage", "spgr", "fspgr", "bravo", "tfe"]),
    ("t2", ["t2", "t2w", "tse"]),
    ("t2star", ["gre"]),
)
#: words of files that are not an input image: phase, projections, labels, maps, contrast-enhanced, other contrasts
SKIP_WORDS = {"phase", "pha", "ph", "mip", "minip", "mnip", "seg", "dseg", "probseg", "label", "labels", "lesion",
              "lesions", "roi", "cmb", "wmh", "field", "fieldmap", "map", "pd", "dwi", "adc", "localizer", "scout",
              "post", "gd", "gad", "ce", "contrast"}  # fmt: skip
MASK_WORDS = {"mask", "brainmask"}


def _stem(name: str) -> str | None:
    """The name without ``.nii`` / ``.nii.gz``, in any case (:func:`bundle.data.datalist._stem` reads lower case)."""
    stem = _lower_stem(Path(name.lower()))
    return None if stem is None else name[: len(stem)]


def _words(stem: str) -> set[str]:
    words = [w for w in re.split(r"[_\-. ]+", stem.lower()) if w]
    return set(words) | {a + b for a, b in zip(words, words[1:]) if (a, b) == ("t2", "star")}  # T2_star


def _name_modality(stem: str) -> str | None:
    """The modality of a non-BIDS file name, ``mask`` for a brain mask, None for a file to skip."""
    words = _words(stem)
    if words & SKIP_WORDS:
        return None
    if words & MASK_WORDS:
        return "mask"
    for modality, rules in NAME_RULES:
        if any(set(r) <= words if isinstance(r, tuple) else r in words for r in rules):
            return modality
    return None


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


def _files(folder: Path, notes: list) -> list[Path]:
    """The NIfTI files under ``folder`` (hidden ones and those under hidden folders excluded), in name order; a
    broken link is noted."""
    out = []
    for p in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(folder).parts) or _stem(p.name) is None:
            continue
        if p.is_file():
            out.append(p)
        elif p.is_symlink():
            notes.append(f"skipped {p.relative_to(folder)}: a broken link")
    return out


def _subject(subject: str, folder: Path, images: dict, masks: list, notes: list) -> dict:
    entry: dict = {"subject": subject, "folder": str(folder), "modalities": {}, "notes": list(notes)}
    for modality in MODALITIES:
        paths = sorted(images.get(modality, []))
        if paths:
            entry["modalities"][modality] = str(paths[0].absolute())  # not resolved: a link keeps its name
            if len(paths) > 1:
                others = ", ".join(str(p.relative_to(folder)) for p in paths[1:])
                entry["notes"].append(f"{len(paths)} {modality} images: used {paths[0].relative_to(folder)}, "
                                      f"not {others}")  # fmt: skip
    if masks:
        masks = sorted(masks)
        entry["mask"] = str(masks[0].absolute())
        if len(masks) > 1:
            entry["notes"].append(f"{len(masks)} brain masks: used {masks[0].relative_to(folder)}")
    if not entry["modalities"]:
        entry["problem"] = f"no image of {'/'.join(MODALITIES)} found in {folder}"
    return entry


def _bids_file(entities: list[str], suffix: str) -> str | None:
    """The role of a BIDS file (a modality or ``mask``), or None to skip it."""
    if suffix == "mask":
        return "mask" if "desc-brain" in entities and not any(e.startswith("space-") for e in entities) else None
    part = next((e for e in entities if e.startswith("part-")), "part-mag")
    if part != "part-mag" or any(e.startswith(("space-", "ce-")) for e in entities):
        return None  # phase, real or imaginary parts; images in a template space; contrast-enhanced
    return BIDS_SUFFIXES.get(suffix)


def _bids_subjects(root: Path) -> list[dict]:
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("sub-")):
        sessions = sorted(p for p in sub.iterdir() if p.is_dir() and p.name.startswith("ses-")) or [sub]
        for ses in sessions:
            subject = sub.name if ses is sub else f"{sub.name}_{ses.name}"
            if not (ses / "anat").is_dir():  # not BIDS inside: a subject folder named sub-*
                out.append(_words_subject(subject, ses))
                continue
            anat, images, masks, notes = ses / "anat", {}, [], []
            for f in _files(anat, notes):
                stem = _stem(f.name)
                entities, suffix = stem.split("_")[:-1], stem.split("_")[-1]
                role = _bids_file(entities, suffix) if f.parent == anat else None
                if role is None:
                    notes.append(f"skipped {f.relative_to(anat)}")
                else:
                    (masks if role == "mask" else images.setdefault(role, [])).append(f)
            out.append(_subject(subject, anat, images, masks, notes))
    return out


def _words_subject(subject: str, folder: Path) -> dict:
    images, masks, notes = {}, [], []
    for f in _files(folder, notes):
        role = _name_modality(_stem(f.name))
        if role is None:
            notes.append(f"skipped {f.relative_to(folder)}")
        else:
            (masks if role == "mask" else images.setdefault(role, [])).append(f)
    return _subject(subject, folder, images, masks, notes)


def _folder_subjects(root: Path) -> list[dict]:
    """One subject per folder; a folder whose subfolders hold the same modality twice (sessions) gives one subject
    per subfolder, ``<folder>_<subfolder>``."""
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        groups: dict[str, set] = {}
        for f in _files(folder, []):
            role = _name_modality(_stem(f.name))
            if role not in (None, "mask"):
                groups.setdefault(f.relative_to(folder).parts[0] if f.parent != folder else "", set()).add(role)
        seen = [m for mods in groups.values() for m in mods]
        if len(groups) > 1 and "" not in groups and len(seen) > len(set(seen)):
            out += [_words_subject(f"{folder.name}_{g}", folder / g) for g in sorted(groups)]
        else:
            out.append(_words_subject(folder.name, folder))
    return out


def _safe_ids(subjects: list[dict]) -> None:
    """Make each subject id a safe file-name part (other characters become ``_``, with a note); an id that is
    still unsafe, or that two subjects share, is a problem of those subjects."""
    for s in subjects:
        safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", s["subject"]).lstrip("._+-")
        if safe != s["subject"]:
            s["notes"].append(f"subject id {safe!r} from the folder name {s['subject']!r}")
            s["subject"] = safe
        try:
            check_subject_id(s["subject"], f"folder {s['folder']}")
        except DatalistError as err:
            s["problem"] = str(err)
    ids = [s["subject"] for s in subjects]
    for s in subjects:
        if ids.count(s["subject"]) > 1:
            s["problem"] = f"{ids.count(s['subject'])} folders give the subject id {s['subject']}"


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
    _safe_ids(subjects)
    return subjects
