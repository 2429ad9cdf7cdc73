# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Counting regions of a brain scan from a small network, so that a method needing a region (GP-Unet's
basal-ganglia ROI) gets it from the bundle instead of the user (docs/regions.md).

The network (MONAI ``UNet``) sees one structural contrast (T1, T2 or FLAIR: it is trained on a random one of them)
on a 2 mm RAS grid scaled by percentiles, and labels the structural simulator's counting regions
(``bundle.data.synth.structural.REGION_CODES``). :func:`regions_input` makes that input for training and inference
alike; :class:`BrainRegionsd` runs the network and brings the chosen regions back onto the image's own grid."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import (
    DivisiblePad,
    MapTransform,
    Orientation,
    Randomizable,
    ResampleToMatch,
    ScaleIntensityRangePercentiles,
    Spacing,
)

from ..data.io import image_file
from ..utils import as_bool, is_null

REGIONS_SPACING_MM = 2.0
_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def regions_input(image: MetaTensor, spacing_mm: float = REGIONS_SPACING_MM, mode: str = "bilinear") -> MetaTensor:
    """``image`` (C, H, W, D) reoriented to RAS and resampled to ``spacing_mm``; with ``mode`` bilinear also scaled
    so that its 0.5th and 99.5th percentiles are 0 and 1 (clipped), per channel. ``mode`` nearest is for label maps
    (no scaling)."""
    out = Spacing(pixdim=(spacing_mm,) * 3)(Orientation(axcodes="RAS", labels=_LABELS)(image), mode=mode)
    if mode == "nearest":
        return out
    scale = ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True, channel_wise=True)
    return scale(out)


class RegionsInputd(MapTransform):
    """Training input of the regions network: ``image`` through :func:`regions_input`, ``label_key`` (the regions
    map) onto the same grid with nearest-neighbour interpolation, written to ``output_key`` (default: in place)."""

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str = "regions",
        output_key: str | None = None,
        spacing_mm: float = REGIONS_SPACING_MM,
    ) -> None:
        super().__init__(keys)
        self.label_key, self.output_key, self.spacing_mm = label_key, output_key or label_key, spacing_mm

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = regions_input(d[key], self.spacing_mm)
        if self.label_key in d:
            d[self.output_key] = regions_input(d[self.label_key], self.spacing_mm, mode="nearest")
        return d


class RandChannelPickd(Randomizable, MapTransform):
    """Keep one channel of ``keys``, drawn at random among the channels that are not all zero (a regions network
    trained this way labels any one contrast)."""

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            present = [c for c in range(img.shape[0]) if bool((img[c] != 0).any())] or [0]
            c = present[int(self.R.randint(len(present)))]
            d[key] = img[c : c + 1]
        return d


class BrainRegionsd(MapTransform):
    """Write to ``output_key`` a binary mask (1, H, W, D) on the grid of ``keys`` (the image) of the regions
    ``labels`` predicted by ``network`` from the image's channel ``channel``.

    The network's class probabilities (softmax) of ``labels`` are summed on the 2 mm grid, resampled (trilinear)
    to the image's grid and thresholded at 0.5; islands smaller than ``min_island`` of the largest are dropped
    (the basal ganglia are two: each side keeps its own). ``checkpoint``: a plain state dict, loaded once with
    ``weights_only=True``; ``load=False`` keeps the network's weights as they are (tests). Runs on ``device``
    (default CPU: it runs in the data loader's processes).

    Raises:
        FileNotFoundError: ``checkpoint`` is null or names no file (at construction, unless ``load=False``).
        ValueError: the network finds none of ``labels`` in a subject (the message names it and the file)."""

    what = "regions"  # the network's name in messages (and its checkpoint's config id)

    def __init__(
        self,
        keys: KeysCollection,
        network: torch.nn.Module,
        checkpoint: str | None,
        labels: Sequence[int] = (1,),
        output_key: str = "roi",
        channel: int = 0,
        spacing_mm: float = REGIONS_SPACING_MM,
        device: str | torch.device = "cpu",
        min_island: float = 0.1,
        load: bool = True,
    ) -> None:
        super().__init__(keys)
        if load and (is_null(checkpoint) or not Path(str(checkpoint)).is_file()):
            raise FileNotFoundError(f"{self.what} network weights {checkpoint} do not exist ({self.what}_checkpoint)")
        self.network, self.checkpoint, self.min_island = network, checkpoint if load else None, float(min_island)
        self.labels, self.output_key, self.channel = [int(v) for v in labels], output_key, int(channel)
        self.spacing_mm, self.device = spacing_mm, torch.device(device)
        self._loaded = False

    def _net(self) -> torch.nn.Module:
        if not self._loaded:
            if self.checkpoint is not None:
                state = torch.load(str(self.checkpoint), map_location="cpu", weights_only=True)
                self.network.load_state_dict(state)
            self.network.to(self.device).eval()
            self._loaded = True
        return self.network

    def probabilities(self, image: MetaTensor) -> MetaTensor:
        """Class probabilities (K, h, w, d) of ``image``'s channel ``channel`` on the 2 mm RAS grid."""
        fresh = MetaTensor(image.as_tensor()[self.channel : self.channel + 1].clone(), affine=image.affine.clone())
        x = regions_input(fresh, self.spacing_mm)  # a fresh tensor: nothing is traced on the image's own history
        pad = DivisiblePad(k=8)
        xp = pad(x)
        with torch.inference_mode():
            logits = self._net()(xp.as_tensor()[None].float().to(self.device))[0].cpu()
        probs = MetaTensor(torch.softmax(logits, 0), affine=xp.affine)
        return _crop_like(probs, x)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            probs = self.probabilities(image)
            region = MetaTensor(probs.as_tensor()[self.labels].sum(0, keepdim=True), affine=probs.affine)
            back = ResampleToMatch(mode="bilinear", padding_mode="zeros")(region, img_dst=image[:1])
            mask = _drop_islands(back.as_tensor()[0].numpy() > 0.5, self.min_island)
            if not mask.any():
                where = image.meta.get("filename_or_obj", "the image")
                raise ValueError(f"{d.get('subject', '<no subject>')}: no region {self.labels} found in {where}")
            out = MetaTensor(torch.from_numpy(mask[None].astype(np.float32)), affine=image.affine.clone())
            out.meta["filename_or_obj"] = image.meta.get("filename_or_obj", "")
            d[self.output_key] = out
        return d


def _drop_islands(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """``mask`` without its 26-connected islands smaller than ``min_fraction`` of the largest."""
    from scipy import ndimage as ndi

    labels, n = ndi.label(mask, structure=np.ones((3, 3, 3)))
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= min_fraction * sizes.max()) + 1
    return np.isin(labels, keep)


def _crop_like(padded: MetaTensor, ref: MetaTensor) -> MetaTensor:
    """``padded`` (padded symmetrically by ``DivisiblePad``) cropped back to ``ref``'s spatial size, with
    ``ref``'s affine."""
    start = [(p - r) // 2 for p, r in zip(padded.shape[1:], ref.shape[1:])]
    sl = tuple(slice(s, s + r) for s, r in zip(start, ref.shape[1:]))
    return MetaTensor(padded.as_tensor()[(slice(None), *sl)], affine=ref.affine)



class BrainMaskd(BrainRegionsd):
    """Give entries without a brain mask the brain mask of the bundle's brain-mask network under ``output_key``
    (default ``mask``; docs/brain_mask.md): a MONAI ``UNet`` of :func:`regions_input` (any one contrast, T1, T2,
    FLAIR or SWI, on a 2 mm RAS grid) whose brain probability is resampled to the image's grid, cut at 0.5 and kept
    as its largest component. Entries that have a mask keep it. Logs one line per subject it masks."""

    what = "brainmask"

    def __init__(self, keys: KeysCollection, network: torch.nn.Module, checkpoint: str | None, output_key: str = "mask",
                 channel: int = 0, device: str | torch.device = "cpu", load: bool = True) -> None:  # fmt: skip
        super().__init__(keys, network, checkpoint, labels=(1,), output_key=output_key, channel=channel,
                         device=device, min_island=1.0, load=load)  # fmt: skip

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        if data.get(self.output_key) is not None:
            return dict(data)
        logging.getLogger("bundle").warning("%s: no brain mask given; using the bundle's brain-mask network",
                                            data.get("subject", "<no subject>"))  # fmt: skip
        return super().__call__(data)


class TemplateMapd(MapTransform):
    """Register the bundle's template to the image ``keys`` (its channel ``channel``, inside the brain mask
    ``mask_key`` when the data has one) and write the map from the subject's world to template millimetres as JSON
    to the image's ``meta["template_map"]`` (:func:`bundle.data.atlas.template_transform`, plus the ``image`` file
    registered): the detections' regions are looked up through it (:class:`bundle.inference.RegionDetections`).
    ``deformable``: add the B-spline stage (10-15 s more per registration on 2 CPU cores; the configs turn it on).
    A registration that fails is logged (subject and file) and leaves no map: that subject's detections get the
    region ``unknown``.

    ``maps_from``: a folder of maps another detector of the same job wrote
    (``<subject>_template.json``, :class:`bundle.handlers.TemplateMapWriter`). A subject's map there is used
    instead of registering when it was made with the B-spline setting ``maps_deformable`` (default:
    ``deformable``) and the head of the image it registered agrees with this one through the two affines
    (:func:`bundle.data.align.align_onto`, overlap >= ``min_overlap``): the world-to-template map is the same for
    every image of a session."""

    def __init__(self, keys: KeysCollection, mask_key: str = "mask", channel: int = 0, deformable: bool = False,
                 maps_from: str | None = None, min_overlap: float = 0.95, maps_deformable=None) -> None:  # fmt: skip
        super().__init__(keys)
        self.mask_key, self.channel = mask_key, int(channel)
        self.deformable = as_bool(deformable, "deformable")  # `--atlas_deformable false` is a string
        self.maps_from = None if is_null(maps_from) else Path(maps_from)
        self.min_overlap = float(min_overlap)
        self.maps_deformable = as_bool(maps_deformable, "maps_deformable") if not is_null(maps_deformable) else \
            self.deformable  # fmt: skip

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        import json

        from ..data.atlas import template_transform

        d = dict(data)
        mask = d.get(self.mask_key)
        for key in self.key_iterator(d):
            img = d[key]
            tmap = self.reused(d, img)
            if tmap is None:
                try:
                    tmap = template_transform(np.asarray(img[self.channel]), np.asarray(img.affine, float),
                                              None if mask is None else np.asarray(mask[0]),
                                              deformable=self.deformable)  # fmt: skip
                except RuntimeError as err:  # SimpleITK's failures (e.g. no overlap) are RuntimeErrors
                    _log().warning("%s: %s: registration to the template failed (%s); regions unknown",
                                   d.get("subject", "<no subject>"), image_file(img),
                                   str(err).strip().splitlines()[-1])  # fmt: skip
                    continue
                tmap["image"] = image_file(img)
            img.meta["template_map"] = json.dumps(tmap)
        return d

    def reused(self, d: Mapping, img: MetaTensor) -> dict | None:
        """The subject's map from ``maps_from`` when it fits ``img`` (see the class), else None (logged when a map
        was there but did not fit)."""
        import json

        from ..data.align import align_onto
        from ..data.datalist import check_subject_id
        from ..data.subject import load_volume

        if self.maps_from is None:
            return None
        subject = d.get("subject")
        path = self.maps_from / f"{check_subject_id(subject, 'template maps')}_template.json"
        if not path.is_file():
            return None
        try:
            tmap = json.loads(path.read_text())
            if bool(tmap.get("bspline")) != self.maps_deformable:
                return None
            other = load_volume(tmap["image"], str(subject), "registered image")  # the loader's reader
            ref = MetaTensor(img[self.channel : self.channel + 1].as_tensor(), meta=dict(img.meta))
            agree = align_onto(other, ref, "affine", self.min_overlap)[1]["overlap"]
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            _log().warning("%s: %s: template map not reused (%s); registering %s", subject, path, err, image_file(img))
            return None
        if agree < self.min_overlap:
            _log().warning("%s: %s and %s: head overlap %.3f < %s through the affines; registering %s itself", subject,
                           tmap["image"], image_file(img), agree, self.min_overlap, image_file(img))  # fmt: skip
            return None
        return tmap


def _log() -> logging.Logger:
    return logging.getLogger("bundle")
