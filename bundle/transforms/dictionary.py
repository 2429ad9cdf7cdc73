# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Dictionary wrappers of :mod:`bundle.transforms.array` for configs."""

from __future__ import annotations

import logging
from typing import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import InvertibleTransform, MapTransform
from monai.utils import convert_to_dst_type

from ..utils import is_null
from .array import (
    HistogramPeakNormalize,
    N4BiasFieldCorrection,
    ROIFloor,
    SoftROIMask,
    TrimRescale,
    WhiteMatterZScore,
    head_mask,
)

__all__ = [
    "WorkingGridd",
    "N4BiasFieldCorrectiond",
    "HistogramPeakNormalized",
    "WhiteMatterZScored",
    "SoftROIMaskd",
    "TrimRescaled",
    "ROIFloord",
    "HeadMaskd",
]


class _MaskedIntensityd(MapTransform):
    """Applies ``op(image, mask)`` to every key; ``mask_key`` (optional) names the mask in the data."""

    op_class: type

    def __init__(self, keys: KeysCollection, mask_key: str | None = None, allow_missing_keys: bool = False, **kwargs):
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.op = self.op_class(**kwargs)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        mask = d.get(self.mask_key) if self.mask_key else None
        for key in self.key_iterator(d):
            d[key] = self.op(d[key], mask)
        return d


class N4BiasFieldCorrectiond(_MaskedIntensityd):
    """Dict version of :class:`N4BiasFieldCorrection`; ``mask_key`` (optional) restricts the fit."""

    op_class = N4BiasFieldCorrection


class HistogramPeakNormalized(_MaskedIntensityd):
    """Dict version of :class:`HistogramPeakNormalize`; ``mask_key`` (optional) selects the brain voxels."""

    op_class = HistogramPeakNormalize


class WhiteMatterZScored(MapTransform):
    """Dict version of :class:`WhiteMatterZScore`.

    Args:
        wm_key: key of a given white-matter mask; if absent from the data, WM is estimated.
        brain_key: key of the brain mask used for the estimate (defaults to non-zero voxels).
    """

    def __init__(
        self,
        keys: KeysCollection,
        wm_key: str | None = "wm",
        brain_key: str | None = "mask",
        allow_missing_keys: bool = False,
        **kwargs,
    ):
        super().__init__(keys, allow_missing_keys)
        self.wm_key, self.brain_key = wm_key, brain_key
        self.op = WhiteMatterZScore(**kwargs)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        wm = d.get(self.wm_key) if self.wm_key else None
        brain = d.get(self.brain_key) if self.brain_key else None
        for key in self.key_iterator(d):
            d[key] = self.op(d[key], wm, brain)
        return d


class SoftROIMaskd(MapTransform):
    """Dict version of :class:`SoftROIMask`: masks ``keys`` with the smoothed, dilated ``roi_key`` and replaces
    ``roi_key`` by the dilated binary ROI (so ``CropForegroundd(source_key=roi_key)`` crops around it)."""

    def __init__(self, keys: KeysCollection, roi_key: str = "mask", allow_missing_keys: bool = False, **kwargs):
        super().__init__(keys, allow_missing_keys)
        self.roi_key = roi_key
        self.op = SoftROIMask(**kwargs)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        dilated = None
        for key in self.key_iterator(d):
            d[key], dilated = self.op(d[key], d[self.roi_key])
        if dilated is not None:
            d[self.roi_key] = dilated
        return d


class TrimRescaled(MapTransform):
    """Dict version of :class:`TrimRescale`."""

    def __init__(self, keys: KeysCollection, upper: float = 99.0, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.op = TrimRescale(upper)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d


class ROIFloord(MapTransform):
    """Dict version of :class:`ROIFloor`; the ROI is read from ``roi_key`` (before :class:`SoftROIMaskd` dilates
    it)."""

    def __init__(
        self, keys: KeysCollection, roi_key: str = "roi", percentile: float = 90.0, allow_missing_keys: bool = False
    ):
        super().__init__(keys, allow_missing_keys)
        self.roi_key = roi_key
        self.op = ROIFloor(percentile)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key], d[self.roi_key])
        return d


class HeadMaskd(MapTransform):
    """Give entries without a brain mask an Otsu head mask (:func:`head_mask` of ``image_key``) under ``keys``.

    Entries that have the key keep their own mask. The estimate includes scalp and skull, so a detector searches
    more tissue than with a brain mask: the main job logs a warning naming the subject (docs/outputs.md).
    """

    def __init__(self, keys: KeysCollection = "mask", image_key: str = "image") -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.keys:
            if d.get(key) is not None:
                continue
            image = d[self.image_key]
            subject = d.get("subject", getattr(image, "meta", {}).get("filename_or_obj", "image"))
            try:
                mask = head_mask(image)[None].astype(np.float32)
            except ValueError as err:
                raise ValueError(f"{subject}: {err}") from err
            logging.getLogger("bundle").warning("%s: no brain mask given; using an Otsu head mask", subject)
            d[key] = convert_to_dst_type(mask, image)[0]
        return d


class WorkingGridd(MapTransform, InvertibleTransform):
    """Reorient ``keys`` to ``axcodes`` with MONAI's ``Orientation`` (axis flips and permutations only, no
    interpolation: a scan stored LPS or RAS gives the same array; None or "null" keeps the stored order), then
    resample them to ``pixdim`` (mm) with MONAI's ``Spacing`` (the two-stage detector's working grid,
    docs/twostage.md).
    ``mode``: one per key (``bilinear`` for images, ``nearest`` for masks and labels). A thin wrapper because
    ``Spacingd`` also rewrites every ``<key>_*`` entry as a metadata dictionary, which breaks on the string entries
    MONAI Label and datalists carry (``image_path``)."""

    def __init__(
        self,
        keys: KeysCollection,
        pixdim,
        mode="bilinear",
        axcodes: str | None = "RAS",
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        from monai.transforms import Orientation, Spacing

        labels = (("L", "R"), ("P", "A"), ("I", "S"))  # MONAI's default, named: its default is changing
        self.orientation = None if is_null(axcodes) else Orientation(axcodes=axcodes, labels=labels)
        self.spacing = Spacing(pixdim=pixdim)
        modes = [mode] * len(self.keys) if isinstance(mode, str) else list(mode)
        if len(modes) != len(self.keys):
            raise ValueError(f"WorkingGridd: {len(modes)} modes for {len(self.keys)} keys")
        self.modes = dict(zip(self.keys, modes))

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            img = self.orientation(d[key]) if self.orientation is not None else d[key]
            d[key] = self.spacing(img, mode=self.modes[key])
        return d

    def inverse(self, data: Mapping[Hashable, object]) -> dict:
        """Back to the stored grid (MONAI ``Invertd``: maps computed on the working grid go to the input's)."""
        d = dict(data)
        for key in self.key_iterator(d):
            img = self.spacing.inverse(d[key])
            d[key] = self.orientation.inverse(img) if self.orientation is not None else img
        return d
