# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Post-processing of GP-Unet outputs (Dubost et al. 2017; ``docs/gpunet.md``).

* :class:`BlendWithImaged`: the map that is thresholded: the heatmap (weight 0, method (e)), the preprocessed
  intensities (weight 1, baseline (a)), or their weighted sum after min-max scaling of each within the mask
  (method (f)).
* :class:`CountMatchedObjectsd`: the instance map of the blobs of that map (connected components, or components
  split at saddles) whose number equals the predicted count (times a multiplier, to trace a FROC curve), see
  :func:`bundle.methods.gpunet.count_matched_objects`.
"""

from __future__ import annotations

from typing import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type, convert_to_numpy

from ...transforms.array import mask3d
from .count_threshold import BLOBS, count_matched_objects

__all__ = ["BlendWithImaged", "CountMatchedObjectsd", "predicted_count"]


def _scaled(x: np.ndarray, inside: np.ndarray) -> np.ndarray:
    lo, hi = float(x[inside].min()), float(x[inside].max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def predicted_count(value, multiplier: float = 1.0) -> int:
    """The number of objects to extract: the network's count estimate times ``multiplier``, rounded, at least 0."""
    v = float(torch.as_tensor(value).float().reshape(-1)[0])
    if not np.isfinite(v):
        raise ValueError(f"predicted count is not finite ({v})")
    return max(int(round(v * float(multiplier))), 0)


class BlendWithImaged(MapTransform):
    """``d[key] = (1 - weight) * scaled(d[key]) + weight * scaled(d[image_key])`` inside ``d[mask_key]``, 0 outside.

    Weight 0 leaves the map as it is (no scaling); weight 1 replaces it by the image. With several image channels
    their mean is used. Maps (1, H, W, D) on one grid.
    """

    def __init__(
        self, keys: KeysCollection, image_key: str = "image", mask_key: str | None = "roi", weight: float = 0.5
    ) -> None:
        super().__init__(keys)
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must lie in [0, 1], got {weight}")
        self.image_key, self.mask_key, self.weight = image_key, mask_key, float(weight)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        if self.weight == 0.0:
            return d
        image = convert_to_numpy(d[self.image_key]).astype(np.float32).mean(0)
        inside = mask3d(d[self.mask_key], image.shape) if self.mask_key else np.ones(image.shape, bool)
        for key in self.key_iterator(d):
            heat = convert_to_numpy(d[key]).astype(np.float32)[0]
            if heat.shape != image.shape:
                raise ValueError(f"{key} shape {heat.shape} differs from {self.image_key} shape {image.shape}")
            if not inside.any():
                out = np.zeros_like(heat)
            else:
                out = (1 - self.weight) * _scaled(heat, inside) + self.weight * _scaled(image, inside)
                out[~inside] = 0.0
            d[key] = convert_to_dst_type(out[None].astype(np.float32), d[key])[0]
        return d


class CountMatchedObjectsd(MapTransform):
    """Instance map ``d[output_key]`` (1, H, W, D) of the blobs of ``d[key]`` whose number is the predicted count
    ``d[count_key]`` times ``multiplier`` (rounded), inside ``d[mask_key]`` (``blobs``: ``components`` or
    ``basins``, see :func:`bundle.methods.gpunet.count_matched_objects`); the number of objects asked for
    is stored in ``d[output_key + '_n_objects']`` and the threshold in ``d[output_key + '_threshold']``."""

    def __init__(
        self,
        keys: KeysCollection,
        count_key: str = "count",
        mask_key: str | None = "roi",
        output_key: str = "objects",
        multiplier: float = 1.0,
        connectivity: int = 26,
        blobs: str = "components",
    ) -> None:
        super().__init__(keys)
        if multiplier < 0:
            raise ValueError(f"multiplier must be non-negative, got {multiplier}")
        if blobs not in BLOBS:
            raise ValueError(f"blobs must be one of {BLOBS} (see docs/gpunet.md), got {blobs!r}")
        self.count_key, self.mask_key, self.output_key = count_key, mask_key, output_key
        self.multiplier, self.connectivity, self.blobs = float(multiplier), int(connectivity), blobs

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        key = self.first_key(d)
        heat = convert_to_numpy(d[key]).astype(np.float32)[0]
        mask = mask3d(d[self.mask_key], heat.shape) if self.mask_key else None
        n = predicted_count(d[self.count_key], self.multiplier)
        objects, threshold = count_matched_objects(heat, n, mask, self.connectivity, self.blobs)
        d[self.output_key] = convert_to_dst_type(objects[None], d[key], dtype=torch.int32)[0]
        d[f"{self.output_key}_n_objects"] = n
        d[f"{self.output_key}_threshold"] = threshold
        return d
