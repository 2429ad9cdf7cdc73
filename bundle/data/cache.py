# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""A disk cache of preprocessed subjects that never unpickles code: MONAI's ``PersistentDataset`` storing plain
tensors, numbers and strings only, read back with ``torch.load(weights_only=True)``.

A MetaTensor is stored as its plain tensor plus the meta data training uses (``affine``, ``original_affine``,
``spatial_shape``, ``filename_or_obj``) and rebuilt on reading. A file in the cache folder that holds anything
else (e.g. one crafted to run code when unpickled) fails ``weights_only`` loading; MONAI then deletes it and
preprocesses the subject again.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor, PersistentDataset

__all__ = ["PlainPersistentDataset", "from_plain", "to_plain"]

META_KEYS = ("affine", "original_affine", "spatial_shape", "filename_or_obj")
_META = "_plain_meta"  # reserved key of a cached item: per MetaTensor key, its kept meta data


def _plain(value):
    if isinstance(value, MetaTensor):
        return value.as_tensor()
    if isinstance(value, np.ndarray):
        return torch.as_tensor(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_plain(item: dict) -> dict:
    """``item`` with MetaTensors as plain tensors (their kept meta under a reserved key) and numpy values as
    tensors or Python numbers: what ``torch.load(weights_only=True)`` reads."""
    metas = {}
    for key, value in item.items():
        if isinstance(value, MetaTensor):
            metas[key] = {k: _plain(value.meta[k]) for k in META_KEYS if k in value.meta}
    return {**{k: _plain(v) for k, v in item.items()}, _META: metas}


def from_plain(item: dict) -> dict:
    """Inverse of :func:`to_plain`: the MetaTensors rebuilt with their kept meta data."""
    out = dict(item)
    for key, meta in out.pop(_META, {}).items():
        out[key] = MetaTensor(out[key], meta=dict(meta))
    return out


class PlainPersistentDataset(PersistentDataset):
    """MONAI ``PersistentDataset`` whose cache files hold plain data only (:func:`to_plain`) and are always read with
    ``weights_only=True``; items come back with their MetaTensors (:func:`from_plain`). Takes MONAI's arguments
    except ``track_meta`` and ``weights_only``, which it sets."""

    def __init__(self, *args, **kwargs) -> None:
        for fixed in ("track_meta", "weights_only"):
            if fixed in kwargs:
                raise TypeError(f"PlainPersistentDataset sets {fixed} itself")
        super().__init__(*args, track_meta=False, weights_only=True, **kwargs)

    def _pre_transform(self, item_transformed):
        return to_plain(super()._pre_transform(item_transformed))

    def _transform(self, index: int):
        return self._post_transform(from_plain(self._cachecheck(self.data[index])))
