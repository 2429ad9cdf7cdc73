# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Subjects with some modalities missing: every subject gets the config's channel layout (zeros where a modality is
absent) and, after normalisation, one availability channel per modality; training drops modalities at random."""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, RandomizableTransform
from monai.utils import MAX_SEED

__all__ = [
    "AvailabilityChannelsd",
    "ModalityChannelsd",
    "PerModalityd",
    "RandModalityDropd",
    "SUBSETS_T1_T2_FLAIR",
]

#: every non-empty subset of (t1, t2, flair) as channel indices: the five cohorts usually have (all three, T1 + FLAIR,
#: T2 + FLAIR, T2, T1), then T1 + T2 and FLAIR, so that any subset a datalist may give was trained
SUBSETS_T1_T2_FLAIR = ((0, 1, 2), (0, 2), (1, 2), (1,), (0,), (0, 1), (2,))


class ModalityChannelsd(MapTransform):
    """Put an entry's images (named by its ``modalities`` key, a subset of ``modalities`` in order) into the
    channels of ``modalities``, zeros where a modality is absent; ``available_key`` gets a float tensor with 1 per
    present modality. An entry without ``modalities`` must have every channel already."""

    def __init__(self, keys: KeysCollection, modalities: Sequence[str], entry_key: str = "modalities",
                 available_key: str = "available") -> None:
        super().__init__(keys)
        self.modalities, self.entry_key, self.available_key = list(modalities), entry_key, available_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        present = list(d.get(self.entry_key) or self.modalities)
        subject = d.get("subject", "<no subject>")
        unknown = [m for m in present if m not in self.modalities]
        if unknown:
            raise ValueError(f"{subject}: modalities {unknown} are not among {self.modalities}")
        for key in self.key_iterator(d):
            img = d[key]
            if img.shape[0] != len(present):
                raise ValueError(f"{subject}: {img.shape[0]} image channels for the modalities {present}")
            out = torch.zeros((len(self.modalities), *img.shape[1:]), dtype=img.dtype)
            for c, m in enumerate(present):
                out[self.modalities.index(m)] = torch.as_tensor(img[c])
            d[key] = MetaTensor(out, meta=img.meta) if isinstance(img, MetaTensor) else out
        d[self.available_key] = torch.tensor([float(m in present) for m in self.modalities])
        return d


class AvailabilityChannelsd(MapTransform):
    """Append to ``keys`` one constant channel per modality: 1 where ``available_key`` says it is present, else 0
    (the network's way to tell an absent modality from a dark image)."""

    def __init__(self, keys: KeysCollection, available_key: str = "available") -> None:
        super().__init__(keys)
        self.available_key = available_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        avail = torch.as_tensor(d[self.available_key], dtype=torch.float32).reshape(-1)
        for key in self.key_iterator(d):
            img = d[key]
            flags = avail.to(img.dtype)[:, None, None, None].expand(len(avail), *img.shape[1:])
            d[key] = torch.cat([img if isinstance(img, MetaTensor) else torch.as_tensor(img), flags])
        return d


class RandModalityDropd(RandomizableTransform, MapTransform):
    """With probability ``prob``, keep only one of ``subsets`` (channel indices) among those the image has, and zero
    the other modalities and their availability channels. The image holds ``n_modalities`` image channels then as
    many availability channels (:class:`AvailabilityChannelsd`); the subset is drawn uniformly from those whose
    modalities are all available."""

    def __init__(self, keys: KeysCollection, n_modalities: int, subsets: Sequence[Sequence[int]] = SUBSETS_T1_T2_FLAIR,
                 prob: float = 0.5) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys)
        self.n = int(n_modalities)
        self.subsets = [tuple(int(c) for c in s) for s in subsets]
        if any(not s or max(s) >= self.n or min(s) < 0 for s in self.subsets):
            raise ValueError(f"subsets {self.subsets} must be non-empty channel indices below {self.n}")

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        img = d[keys[0]]
        if img.shape[0] != 2 * self.n:
            raise ValueError(f"RandModalityDropd: {img.shape[0]} channels, expected {self.n} images + {self.n} flags")
        have = {c for c in range(self.n) if float(img[self.n + c].max()) > 0.5}
        options = [s for s in self.subsets if set(s) <= have]
        if not options:
            return d
        keep = set(options[self.R.randint(len(options))])
        drop = [c for c in range(self.n) if c not in keep]
        for key in keys:
            out = d[key].clone()
            for c in drop:
                out[c] = 0
                out[self.n + c] = 0
            d[key] = out
        return d


class PerModalityd(Randomizable, MapTransform):
    """Apply ``transforms`` (MONAI array transforms, in order) to each present image channel on its own, with its
    own random draws: each modality of a subject gets its own contrast, noise or blur, as from its own acquisition.
    The image holds ``n_modalities`` image channels then as many availability channels
    (:class:`AvailabilityChannelsd`); an absent modality (flag 0) stays all zeros and the flags are never touched,
    which a whole-image MONAI transform would not guarantee (noise on an absent channel, a contrast curve over the
    flags)."""

    def __init__(self, keys: KeysCollection, n_modalities: int, transforms: Sequence) -> None:
        MapTransform.__init__(self, keys)
        self.n, self.transforms = int(n_modalities), list(transforms)

    def set_random_state(self, seed: int | None = None, state=None) -> "PerModalityd":
        super().set_random_state(seed, state)
        for t in self.transforms:
            if isinstance(t, Randomizable):
                t.set_random_state(seed=int(self.R.randint(MAX_SEED)))
        return self

    def randomize(self, data=None) -> None:  # each wrapped transform draws for itself, per channel
        pass

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if img.shape[0] != 2 * self.n:
                raise ValueError(f"PerModalityd: {img.shape[0]} channels, expected {self.n} images + {self.n} flags")
            out = img.clone()
            for c in range(self.n):
                if float(img[self.n + c].max()) <= 0.5:
                    continue
                channel = img[c : c + 1]
                for t in self.transforms:
                    channel = t(channel)
                out[c] = torch.as_tensor(channel)[0].to(out.dtype)
            d[key] = out
        return d
