# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The project's data model: a decathlon-style datalist of subjects (see ``docs/data.md``).

Each entry of the ``training`` / ``validation`` / ``testing`` lists::

    {"subject": "sub-0001",
     "image": ["sub-0001/t1.nii.gz", "sub-0001/t2.nii.gz"],   # modality order of the datalist's "modalities"
     "label": "sub-0001/label.nii.gz",      # optional instance map: 0 background, 1..N one id per object
     "lesions": "sub-0001/lesions.json",    # optional per-object records (id, class, raters, centre_mm, ...)
     "count": 12,                           # optional weak label: number of objects
     "mask": "sub-0001/brainmask.nii.gz",   # optional brain mask
     "roi": "sub-0001/roi.nii.gz"}          # optional region of interest (e.g. basal ganglia for GP-Unet)

Relative paths resolve against ``dataset_dir`` (by default the datalist's folder).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Sequence

__all__ = [
    "DatalistError",
    "PATH_KEYS",
    "check_subject_id",
    "check_unique_subjects",
    "SPLITS",
    "expected_channels",
    "load_datalist",
    "inference_split",
    "load_inference_list",
    "folder_entries",
    "prepare_entry",
    "read_datalist",
    "resolve_entry",
    "save_datalist",
]

SPLITS = ("training", "validation", "testing")
PATH_KEYS = ("image", "label", "lesions", "mask", "roi", "mimics", "regions")


class DatalistError(ValueError):
    """A datalist, or a file it names, is not valid input; the message names the subject and the file."""


#: a subject id names output files (``maps/<subject>_prob.nii.gz``), so it must be a plain file-name part
SUBJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")


def check_subject_id(subject, where: str = "") -> str:
    """``subject`` if it is a safe id: 1-200 characters of letters, digits, ``.``, ``_``, ``+``, ``-``, starting
    with a letter or digit (no path separator, no ``..`` prefix, no space).

    Raises:
        DatalistError: naming the id and ``where`` it came from.
    """
    if not isinstance(subject, str) or not SUBJECT_ID.fullmatch(subject):
        place = f" ({where})" if where else ""
        raise DatalistError(
            f"subject id {subject!r}{place} is not a safe name: use 1-200 letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit (it names the subject's output files)"
        )
    return subject


def check_unique_subjects(entries: Sequence[dict], where: str) -> None:
    """Raise :class:`DatalistError` if two of ``entries`` have the same ``subject`` (their outputs would merge)."""
    seen: set[str] = set()
    for e in entries:
        if e["subject"] in seen:
            raise DatalistError(f"{e['subject']}: the subject id appears more than once in {where}")
        seen.add(e["subject"])


def _resolve(base: Path, value):
    if isinstance(value, (list, tuple)):
        return [_resolve(base, v) for v in value]
    path = Path(os.path.expanduser(str(value)))
    return str(path if path.is_absolute() else (base / path).resolve())


def resolve_entry(entry: dict, dataset_dir: str | os.PathLike, check_files: bool = True) -> dict:
    """Copy of ``entry`` with every path key made absolute, checked for existence.

    Raises:
        DatalistError: the entry has no ``subject`` or ``image``, or ``count`` is not a non-negative integer.
        FileNotFoundError: a file it names does not exist (message names the subject and the path).
    """
    if not isinstance(entry, dict) or "subject" not in entry:
        raise DatalistError(f"datalist entry {entry!r} has no 'subject'")
    subject = check_subject_id(entry["subject"], "datalist entry")
    if "image" not in entry:
        raise DatalistError(f"{subject}: datalist entry has no 'image'")
    out = dict(entry)
    if isinstance(out["image"], str):
        out["image"] = [out["image"]]
    for key in PATH_KEYS:
        if key in out and out[key] is not None:
            out[key] = _resolve(Path(dataset_dir), out[key])
            for path in out[key] if isinstance(out[key], list) else [out[key]]:
                if check_files and not Path(path).is_file():
                    raise FileNotFoundError(f"{subject}: {key} file {path} does not exist")
    if "count" in out and (not isinstance(out["count"], int) or isinstance(out["count"], bool) or out["count"] < 0):
        raise DatalistError(f"{subject}: 'count' must be a non-negative integer, got {out['count']!r}")
    return out


def read_datalist(path: str | os.PathLike) -> dict:
    """The datalist JSON as a dict.

    Raises:
        FileNotFoundError: no such file.
        DatalistError: not valid JSON, or not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"datalist {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatalistError(f"datalist {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise DatalistError(f"datalist {path} must be a JSON object with training/validation/testing lists")
    return data


def expected_channels(data: dict, path: str | os.PathLike, modalities: Sequence[str] | None) -> int | None:
    """Number of images each entry must have; checks the datalist's ``modalities`` against the caller's.

    Raises:
        DatalistError: the datalist declares another modality order than ``modalities``.
    """
    declared = data.get("modalities")
    if modalities is not None and declared is not None and list(declared) != list(modalities):
        raise DatalistError(f"datalist {path} has modalities {declared}, the config expects {list(modalities)}")
    if modalities is not None:
        return len(modalities)
    return len(declared) if declared else None


def prepare_entry(
    entry: dict, dataset_dir: str | os.PathLike, n_channels: int | None, check_files: bool = True,
    datalist: str | os.PathLike | None = None,
) -> dict:
    """:func:`resolve_entry` plus the check that the entry has ``n_channels`` images (when known); ``datalist``
    (its file) is named in that message."""
    out = resolve_entry(entry, dataset_dir, check_files)
    if n_channels is not None and len(out["image"]) != n_channels:
        where = f" (datalist {datalist})" if datalist else ""
        got = len(out["image"])
        raise DatalistError(f"{out['subject']}: {got} images given, {n_channels} modalities expected{where}")
    return out


def load_datalist(
    path: str | os.PathLike,
    split: str = "training",
    dataset_dir: str | os.PathLike | None = None,
    modalities: Sequence[str] | None = None,
    check_files: bool = True,
    require: Sequence[str] = (),
    optional_modalities: bool = False,
) -> list[dict]:
    """Entries of one split with absolute paths.

    Args:
        path: datalist JSON.
        split: ``training``, ``validation`` or ``testing``.
        dataset_dir: folder relative paths resolve against; defaults to the datalist's folder.
        modalities: the channel order the caller expects; checked against the datalist's ``modalities`` key and
            against the number of images of each entry.
        check_files: raise if a referenced file is missing.
        require: keys every entry must have (e.g. ``mask`` for a method that needs the brain mask).
        optional_modalities: the datalist (its ``modalities``) and each entry (an entry's own ``modalities`` key)
            may hold any non-empty subset of ``modalities``, in that order; every entry gets ``modalities``, the
            names of its images (:class:`bundle.transforms.ModalityChannelsd` puts them in place).

    Raises:
        FileNotFoundError: the datalist or a file it names is missing.
        DatalistError: invalid JSON, unknown or missing split, modality order or count mismatch, an entry without
            a required key.
    """
    data = read_datalist(path)
    if split not in SPLITS:
        raise DatalistError(f"unknown split {split!r} for datalist {path}; expected one of {SPLITS}")
    if split not in data:
        raise DatalistError(f"datalist {path} has no {split!r} list (it has {[k for k in SPLITS if k in data]})")
    base = Path(dataset_dir) if dataset_dir else Path(path).parent
    if not isinstance(data[split], list):
        raise DatalistError(f"datalist {path}: {split!r} must be a list of entries, got {type(data[split]).__name__}")
    if optional_modalities and modalities is not None:
        declared = _subset(data.get("modalities") or list(modalities), modalities, f"datalist {path}")
        entries = []
        for e in data[split]:
            name = f"{e.get('subject', '<no subject>')} (datalist {path})" if isinstance(e, dict) else str(path)
            mods = _subset(e.get("modalities", declared) if isinstance(e, dict) else declared, modalities, name)
            entries.append({**prepare_entry(e, base, len(mods), check_files, path), "modalities": mods})
    else:
        n_channels = expected_channels(data, path, modalities)
        entries = [prepare_entry(e, base, _channels(e, n_channels, data, modalities, path), check_files, path)
                   for e in data[split]]
    check_unique_subjects(entries, f"the {split} list of {path}")
    _check_required(entries, require, lambda e, m: f"the {split} entry in {path} has no {m}, which this config needs")
    return entries


def _channels(entry, n_channels: int | None, data: dict, modalities, path) -> int | None:
    """Images an entry must have: as many as its own ``modalities`` (a subset of the datalist's) when the caller
    names none (e.g. the evaluation, which reads no image), else ``n_channels``."""
    own = entry.get("modalities") if isinstance(entry, dict) else None
    if own is None:
        return n_channels
    name = f"{entry.get('subject', '<no subject>')} (datalist {path})"
    if modalities is not None:
        if list(own) != list(modalities):
            raise DatalistError(f"{name}: has the modalities {own}; this config needs {list(modalities)}")
        return n_channels
    return len(_subset(own, data.get("modalities") or own, name))


def _subset(mods, modalities: Sequence[str], where: str) -> list[str]:
    """``mods`` as a list, checked to be a non-empty subset of ``modalities`` in their order."""
    mods = [mods] if isinstance(mods, str) else list(mods) if isinstance(mods, (list, tuple)) else None
    order = list(modalities)
    if not mods or any(m not in order for m in mods) or [m for m in order if m in mods] != mods:
        raise DatalistError(f"{where}: modalities {mods} must be a non-empty subset of {order}, in that order")
    return mods


def _missing(entry: dict, require: Sequence[str]) -> list[str]:
    """The ``require``-d keys ``entry`` lacks (a count of 0 is data, a scan without lesions; an empty path or list
    is missing)."""
    return [k for k in require if entry.get(k) is None or (isinstance(entry[k], (str, list)) and not entry[k])]


def _check_required(entries: list[dict], require: Sequence[str], message) -> None:
    """Raise :class:`DatalistError` ``"<subject>: " + message(entry, missing keys)`` for the first entry lacking a
    ``require``-d key."""
    for e in entries:
        missing = _missing(e, require)
        if missing:
            raise DatalistError(f"{e['subject']}: {message(e, missing)}")


def load_inference_list(
    path: str | os.PathLike,
    modalities: Sequence[str] | None = None,
    dataset_dir: str | os.PathLike | None = None,
    require: Sequence[str] = (),
    optional_modalities: bool = False,
) -> list[dict]:
    """Entries to run inference on: the ``testing`` list, or ``validation`` if there is no (non-empty) ``testing``.

    Raises:
        DatalistError: neither list exists or both are empty; see :func:`load_datalist` for the rest.
    """
    return load_datalist(path, inference_split(path), dataset_dir, modalities, require=require,
                         optional_modalities=optional_modalities)


def inference_split(path: str | os.PathLike) -> str:
    """The split inference and evaluation run on: ``testing``, or ``validation`` if there is no (non-empty)
    ``testing``.

    Raises:
        DatalistError: neither list exists or both are empty.
    """
    data = read_datalist(path)
    for split in ("testing", "validation"):
        if data.get(split):
            return split
    raise DatalistError(f"datalist {path} has no testing or validation entries to run inference on")


MASK_SUFFIXES = ("_brainmask", "_mask")
NIFTI_SUFFIXES = (".nii.gz", ".nii")


def _stem(path: Path) -> str | None:
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def folder_entries(folder: str | os.PathLike) -> list[dict]:
    """One entry per NIfTI file (``.nii`` / ``.nii.gz``) of ``folder`` (not its subfolders), in name order.

    The subject is the file name without its suffix; a file ``<subject>_brainmask.nii.gz`` (or ``_mask``) beside
    it is taken as its brain mask, never as a subject of its own.

    Raises:
        FileNotFoundError: no such folder.
        DatalistError: the folder holds no NIfTI image, or a mask has no image beside it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder {folder} does not exist")
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        stem = _stem(p) if p.is_file() else None
        if stem is None:
            continue
        if stem in files:
            raise DatalistError(f"input folder {folder}: {files[stem].name} and {p.name} would both be subject {stem}")
        files[stem] = p
    masks = {s: p for s, p in files.items() if s.endswith(MASK_SUFFIXES)}
    images = {s: p for s, p in files.items() if s not in masks}
    if not images:
        raise DatalistError(f"input folder {folder} holds no NIfTI image (*.nii, *.nii.gz)")
    entries = []
    for subject, path in images.items():
        entry = {"subject": check_subject_id(subject, f"file {path}"), "image": [str(path.resolve())]}
        for suffix in MASK_SUFFIXES:
            if subject + suffix in masks:
                entry["mask"] = str(masks.pop(subject + suffix).resolve())
                break
        entries.append(entry)
    if masks:
        raise DatalistError(f"input folder {folder}: masks without an image beside them: {sorted(masks)}")
    return entries


def save_datalist(data: dict, path: str | os.PathLike) -> Path:
    """Write a datalist atomically, with paths made relative to its folder where possible."""
    from .io import write_json

    root = Path(path).parent.resolve()

    def rel(value):
        if isinstance(value, list):
            return [rel(v) for v in value]
        try:
            return str(Path(value).resolve().relative_to(root))
        except ValueError:
            return str(value)

    out = dict(data)
    for split in SPLITS:
        if split in out:
            out[split] = [{k: rel(v) if k in PATH_KEYS else v for k, v in e.items()} for e in out[split]]
    return write_json(out, path)
