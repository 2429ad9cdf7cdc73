# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Atomic writers: a file either appears whole under its final name or not at all.

A run that is killed half-way never leaves a truncated NIfTI, JSON or PNG where a user expects a result.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = ["atomic_path", "fingerprint", "write_json", "write_nifti"]


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Args:
        path: final destination.
        suffix: suffix of the temporary file (defaults to the destination's full suffix, so writers that
            infer the format from the name, e.g. ``.nii.gz``, still work).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results get the permissions of any new file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(obj: Any, path: str | os.PathLike, strict: bool = True) -> Path:
    """Write ``obj`` as indented JSON atomically and return the path: strict JSON (NaN and infinities become null),
    or with ``strict`` false Python's JSON, which keeps them (``NaN``, read back by ``json.loads``)."""
    text = json.dumps(_finite(obj) if strict else obj, indent=2, default=_json_default, allow_nan=not strict)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return Path(path)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, np.floating):
        return _finite(float(obj))
    return obj


def write_nifti(array: np.ndarray, affine: np.ndarray, path: str | os.PathLike, dtype: Any = np.float32) -> Path:
    """Write a 3D array as NIfTI (sform and qform set to ``affine``) atomically and return the path."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(array, dtype=dtype), np.asarray(affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


def image_file(image) -> str:
    """The file an image was read from (its ``filename_or_obj``, the first of several; "" when unknown)."""
    name = getattr(image, "meta", {}).get("filename_or_obj", "")
    return str(name[0] if isinstance(name, (list, tuple)) and name else name)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


HEAD_BYTES = 1 << 16


def _file_digest(path: str | Path) -> str:
    """size + sha256 of the first 64 KiB: tells scans apart without reading whole cohorts."""
    p = Path(path)
    if not p.is_file():
        return "missing"
    with open(p, "rb") as f:
        return f"{p.stat().st_size}:{hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()}"


def fingerprint(entries: Sequence[dict], settings: dict) -> str:
    """sha256 of datalist entries (each subject and its files: path, size, first 64 KiB) and ``settings``."""
    files = []
    for e in entries:
        values = [e.get(k) for k in ("image", "label", "lesions", "mask", "roi")]
        paths = [p for v in values for p in (v if isinstance(v, list) else [v])]
        files.append([e["subject"], [[str(p), _file_digest(p)] for p in paths if p]])
    text = json.dumps({"input": files, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
