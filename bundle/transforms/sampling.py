# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Patch sampling of the lesion-wise validation paper: every patch holds an object, at a uniform position."""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable, SpatialCrop, SpatialPad

__all__ = ["RandCropAroundObjectd"]


class RandCropAroundObjectd(Randomizable, MapTransform):
    """Crop ``num_samples`` patches; each holds an object at a uniformly distributed position inside it.

    An object is drawn uniformly among the instance ids of ``label_key`` (so small and large objects are equally
    likely), then one of its voxels, then that voxel's position inside the patch, uniformly in
    ``[margin, size - 1 - margin]`` per axis; the patch is shifted back inside the image where it would leave it.
    Scans without objects give patches at uniformly random positions. Volumes smaller than the patch are padded
    first. The random draw (:meth:`randomize`) is separate from the deterministic crop (MONAI ``SpatialCrop``).

    Args:
        keys: keys to crop (image and label alike).
        label_key: instance map (1, H, W, D) choosing the objects.
        spatial_size: patch size (voxels).
        num_samples: patches per call; returns a list of dicts.
        margin: smallest distance (voxels) between the chosen voxel and the patch border.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str,
        spatial_size: Sequence[int],
        num_samples: int = 1,
        margin: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.label_key = label_key
        self.size = np.asarray(spatial_size, int)
        self.num_samples = int(num_samples)
        self.margin = int(margin)
        self.starts: list[np.ndarray] = []

    def randomize(self, label: np.ndarray) -> None:
        """Draw the patch starts for a (H, W, D) instance map."""
        shape = np.asarray(label.shape)
        fg = np.flatnonzero(label)
        ids = np.unique(label.reshape(-1)[fg]) if fg.size else np.zeros(0)
        self.starts = []
        for _ in range(self.num_samples):
            if ids.size:
                obj = ids[self.R.randint(len(ids))]
                vox = np.argwhere(label == obj)
                v = vox[self.R.randint(len(vox))]
                pos = self.R.randint(self.margin, np.maximum(self.size - self.margin, self.margin + 1))
                start = v - pos
            else:
                start = np.array([self.R.randint(0, max(s - p, 0) + 1) for s, p in zip(shape, self.size)])
            self.starts.append(np.clip(start, 0, np.maximum(shape - self.size, 0)))

    def __call__(self, data: Mapping[Hashable, object]) -> list[dict]:
        d = dict(data)
        pad = SpatialPad(self.size.tolist())
        for key in self.key_iterator(d):
            d[key] = pad(d[key])
        self.randomize(np.asarray(d[self.label_key][0]))
        out = []
        for start in self.starts:
            crop = SpatialCrop(roi_start=start.tolist(), roi_end=(start + self.size).tolist())
            sample = dict(d)
            for key in self.key_iterator(d):
                sample[key] = crop(d[key])
            out.append(sample)
        return out
