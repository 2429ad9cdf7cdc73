# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Load and validate one datalist entry into MONAI dict data.

``LoadSubjectd`` reads each modality with MONAI's ``LoadImage`` (NIfTI via nibabel, affine in RAS mm kept in the
``MetaTensor``), stacks them as channels, and checks every promise of the data model; each failure names the
subject and the file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImage, MapTransform

from .align import ALIGN, align_onto, foreground, grid_difference
from .datalist import DatalistError
from .vocabulary import CLASSES, RATER_CHOICES

__all__ = ["CLASSES", "RATER_CHOICES", "LoadSubjectd", "load_volume", "validate_lesions"]

MASK_KEYS = ("mask", "roi")
logger = logging.getLogger(__name__)


def load_volume(path: str, subject: str, what: str = "image") -> MetaTensor:
    """Read one 3D NIfTI as a (1, H, W, D) float32 MetaTensor.

    Raises:
        FileNotFoundError: missing file.
        DatalistError: unreadable/corrupt file, or not a 3D volume.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{subject}: {what} file {path} does not exist")
    try:
        img = LoadImage(reader="NibabelReader", image_only=True, dtype=np.float32)(path)
    except Exception as err:  # nibabel/zlib raise many types for truncated or non-NIfTI files
        raise DatalistError(f"{subject}: {what} file {path} could not be read as NIfTI ({_read_error(path, err)})")
    while img.ndim > 3 and img.shape[-1] == 1:  # (X, Y, Z, 1) volumes are 3D
        img = img[..., 0]
    if img.ndim != 3:
        raise DatalistError(f"{subject}: {what} file {path} has shape {tuple(img.shape)}, expected a 3D volume")
    return img[None]


def _read_error(path: str, err: Exception) -> str:
    """The reason a file could not be read, in one short line: nibabel's own error where reading it with nibabel
    fails too (MONAI's message lists every reader it tried, with their tracebacks), else the first sentence."""
    import nibabel as nib

    try:
        np.asanyarray(nib.load(path).dataobj)
    except Exception as direct:  # noqa: BLE001 - any reading error is the reason
        err = direct
    first = (str(err).strip().splitlines() or [""])[0].split(". ")[0]
    return f"{type(err).__name__}: {first[:200]}"


def validate_lesions(
    records, subject: str, path: str, label: torch.Tensor | None, classes: Sequence[str] = CLASSES
) -> list[dict]:
    """Check per-object records against the class list and the instance label map.

    Raises:
        DatalistError: not a list of records with ``id`` and ``class``, unknown class or rater answer, duplicate
            ids, ids absent from the label map or label ids without a record.
    """
    if not isinstance(records, list) or not all(isinstance(r, dict) and "id" in r and "class" in r for r in records):
        raise DatalistError(f"{subject}: {path} must be a JSON list of records with 'id' and 'class'")
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        raise DatalistError(f"{subject}: {path} has duplicate lesion ids")
    for r in records:
        if r["class"] not in classes:
            raise DatalistError(
                f"{subject}: {path} lesion {r['id']} has unknown class {r['class']!r}; known: {list(classes)}"
            )
        bad = [a for a in r.get("raters", []) if a not in (*RATER_CHOICES, *classes)]
        if bad:
            raise DatalistError(f"{subject}: {path} lesion {r['id']} has unknown rater answers {bad}")
    if label is not None:
        present = set(int(v) for v in torch.unique(label).tolist()) - {0}
        missing = sorted(set(ids) - present)
        if missing:
            raise DatalistError(f"{subject}: {path} lists lesion ids {missing} absent from the label map")
        unlisted = sorted(present - set(ids))
        if unlisted:
            raise DatalistError(f"{subject}: label ids {unlisted} have no record in {path}")
    return records


class LoadSubjectd(MapTransform):
    """Load a resolved datalist entry (see :func:`bundle.data.load_datalist`) into tensors and records.

    Output: ``image`` (C, H, W, D) float32 ``MetaTensor`` (channels in datalist order, on the grid of the first
    modality, the reference), ``label`` (1, H, W, D) int instance map, ``mask`` and ``roi`` (1, H, W, D) binary,
    ``lesions`` list of dicts;
    ``subject`` and the other entry keys pass through. Metadata gains ``subject`` and ``spacing``.

    Args:
        keys: volume keys to load; the first must be the image.
        lesions_key: key of the per-object JSON (``None`` to skip).
        classes: allowed class names in the records.
        affine_atol: largest allowed difference (mm) between the affines of two volumes of a subject.
        align: an image channel on another grid than the first: ``fail`` (the subject fails), ``affine``
            (resampled onto the first through the affines), ``auto`` (and a rigid registration where the head
            overlap stays below ``min_overlap``), ``rigid`` (always registered); see :func:`bundle.data.align.
            align_onto`. Other modes than ``fail`` also measure every channel's overlap on the same grid. What
            was done per channel goes to ``image.meta["alignment"]`` (a JSON list: ``modality``, ``file`` and
            the record of ``align_onto``; empty for one channel). Label maps and masks must be on the grid.
        min_overlap: head-mask Dice with the first channel below which a channel is registered (``auto``) and
            flagged.
        allow_missing_keys: do not fail when an optional key is absent from the entry.

    Raises:
        FileNotFoundError, DatalistError: see :func:`load_volume`, :func:`validate_lesions` and the grid, value
            and label checks; every message starts with the subject id and names the file.
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "label", "mask", "roi"),
        lesions_key: str | None = "lesions",
        classes: Sequence[str] = CLASSES,
        affine_atol: float = 1e-3,
        align: str = "fail",
        min_overlap: float = 0.95,
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if align not in ALIGN:
            raise ValueError(f"LoadSubjectd: align {align!r} is not one of {list(ALIGN)}")
        self.lesions_key = lesions_key
        self.classes = tuple(classes)
        self.affine_atol, self.align, self.min_overlap = affine_atol, align, float(min_overlap)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        subject = str(d.get("subject", "<no subject>"))
        ref = None
        for key in self.key_iterator(d):
            d[key] = self._load_key(d, str(key), subject, ref)
            ref = ref if ref is not None else d[key]
        if self.lesions_key and d.get(self.lesions_key) is not None:
            path = str(d[self.lesions_key])
            try:
                records = json.loads(Path(path).read_text())
            except FileNotFoundError:
                raise FileNotFoundError(f"{subject}: lesions file {path} does not exist") from None
            except json.JSONDecodeError as err:
                raise DatalistError(f"{subject}: lesions file {path} is not valid JSON: {err}") from err
            d[self.lesions_key] = validate_lesions(records, subject, path, d.get("label"), self.classes)
        return d

    def _load_key(self, d: dict, key: str, subject: str, ref: MetaTensor | None) -> MetaTensor:
        """The volume(s) of ``d[key]`` checked (and the image's aligned) on the grid of ``ref`` (None: the first)."""
        paths = d[key] if isinstance(d[key], (list, tuple)) else [d[key]]
        vols = [load_volume(str(p), subject, key) for p in paths]
        ref = ref if ref is not None else vols[0]
        report = []
        if key == "image":  # an image of real values is aligned; then it must be on the grid like the rest
            for p, v in zip(paths, vols):
                self._check_values(v, subject, key, str(p))
            report = self._align(vols, paths, d.get("modalities"), subject)
        for p, v in zip(paths, vols):
            problem = grid_difference(ref, v, self.affine_atol)
            if problem:
                where = paths[0] if key == "image" else "the image"
                raise DatalistError(f"{subject}: {key} file {p} is not on the grid of {where}: {problem}")
            if key != "image":
                self._check_values(v, subject, key, str(p))
        out = self._combine(key, vols, paths, subject)
        if key == "image":
            out.meta["alignment"] = json.dumps(report)
        return out

    def _align(self, vols: list[MetaTensor], paths, modalities, subject: str) -> list[dict]:
        """Bring ``vols[1:]`` onto the grid of ``vols[0]`` in place (``align``); their records."""
        if self.align == "fail" or len(vols) < 2:
            return []
        names = list(modalities) if isinstance(modalities, (list, tuple)) and len(modalities) == len(vols) else \
            [f"channel{i}" for i in range(len(vols))]  # fmt: skip
        head, report = foreground(vols[0]), []
        for i in range(1, len(vols)):
            vols[i], record = align_onto(vols[i], vols[0], self.align, self.min_overlap, head, self.affine_atol)
            report.append({"modality": str(names[i]), "file": str(paths[i]), "onto": str(names[0]), **record})
            if record["flagged"]:
                logger.warning("%s: %s file %s overlaps %s by %.2f (head Dice) after alignment, below %.2f",
                               subject, names[i], paths[i], names[0], record["overlap"], self.min_overlap)  # fmt: skip
        return report

    @staticmethod
    def _check_values(v: MetaTensor, subject: str, key: str, path: str) -> None:
        bad = int((~torch.isfinite(v)).sum())
        if bad:
            raise DatalistError(f"{subject}: {key} file {path} has {bad} non-finite (NaN/inf) voxels")
        if key in ("label", *MASK_KEYS):
            if bool((v < 0).any()) or bool((v != torch.round(v)).any()):
                raise DatalistError(f"{subject}: {key} file {path} must hold non-negative integers")
        if key == "image" and not bool((v != 0).any()):
            raise DatalistError(f"{subject}: image file {path} is all zeros")
        if key in MASK_KEYS and not bool((v > 0).any()):
            raise DatalistError(f"{subject}: {key} file {path} is empty (no voxel > 0)")

    @staticmethod
    def _combine(key, vols: list[MetaTensor], paths, subject: str) -> MetaTensor:
        out = vols[0] if len(vols) == 1 else MetaTensor(torch.cat([v.as_tensor() for v in vols]), meta=vols[0].meta)
        if key == "label":
            out = out.to(torch.int32)
        elif key in MASK_KEYS:
            out = (out > 0).to(torch.float32)
        out.meta["subject"] = subject
        out.meta["filename_or_obj"] = str(paths[0])
        out.meta["spacing"] = [float(s) for s in out.pixdim]
        return out
