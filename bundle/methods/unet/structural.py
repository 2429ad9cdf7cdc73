# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The U-Net as a detector of several classes (EPVS and lacunes on T1/T2/FLAIR; ``docs/unet.md``).

Training target: :class:`ClassMapd` turns an entry's instance map into class codes (0 background, ``k + 1`` for
``classes[k]``) from its lesion records. Detections: :class:`ClassMapDetections` takes the connected components of
the foreground probability ``1 - p_background`` of the network's softmax and gives each the class of highest mean
probability over its voxels. A lacune is a closed cavity: :func:`fluid_beyond` measures how far the fluid-like
signal around a call reaches past it, so that calls on a piece of a sulcus, cistern or ventricle can be dropped.
"""

from __future__ import annotations

import functools
from typing import Callable, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data.utils import affine_to_spacing
from monai.transforms import MapTransform
from scipy import ndimage

from ...data.vocabulary import ANSWERS
from ...inference.detections import detection_rows, to_input_grid
from ...inference.outputs import SubjectReader
from ...metrics.objects import Objects, connected_components, objects_from_map
from ...utils import one_of
from .raters import feature_names, load_rater_heads, object_features, rater_columns

__all__ = ["BackgroundOutsided", "ClassMapDetections", "ClassMapd", "brain_medians", "class_map", "class_objects",
           "fluid_beyond"]  # fmt: skip

SCORES = ("max", "mean")  # how a component is scored: its largest or its mean foreground probability
CAVITY_MARGIN = 15  # voxels around a lacune call's box within which fluid_beyond grows its fluid-like region


def class_map(
    instances: np.ndarray, records: Sequence[Mapping], classes: Sequence[str], subject: str = ""
) -> np.ndarray:
    """Class codes of an instance map: 0 background, ``k + 1`` where the instance's record names ``classes[k]``.

    Raises ``ValueError`` naming the subject for an instance without a record or of a class not in ``classes``."""
    instances = np.asarray(instances)
    known = {int(r["id"]): str(r["class"]) for r in records}
    ids = np.unique(instances[instances > 0]).astype(np.int64)
    lut = np.zeros(int(ids.max()) + 1 if len(ids) else 1, np.uint8)
    for i in ids:
        cls = known.get(int(i))
        if cls not in classes:
            problem = "has no lesion record" if cls is None else f"is a {cls!r}, not one of {list(classes)}"
            raise ValueError(f"subject {subject!r}: lesion {int(i)} of the label map {problem}")
        lut[i] = list(classes).index(cls) + 1
    return lut[np.clip(instances, 0, len(lut) - 1).astype(np.int64)]


class ClassMapd(MapTransform):
    """Replace the instance map ``keys`` by its :func:`class_map` (classes from the entry's ``lesions_key``
    records); ``instances_key`` (when given) keeps the instance map."""

    def __init__(self, keys: KeysCollection = "label", classes: Sequence[str] = ("epvs", "lacune"),
                 lesions_key: str = "lesions", instances_key: str | None = None) -> None:  # fmt: skip
        super().__init__(keys)
        self.classes, self.lesions_key, self.instances_key = list(classes), lesions_key, instances_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            if self.instances_key:
                d[self.instances_key] = label
            records = d.get(self.lesions_key) or []
            codes = class_map(np.asarray(label)[0], records, self.classes, str(d.get("subject", "")))
            out = torch.as_tensor(codes[None])
            d[key] = label.clone().set_array(out) if hasattr(label, "set_array") else out
        return d


class BackgroundOutsided(MapTransform):
    """Make ``keys`` (a softmax, background first) certain background outside ``mask_key``'s mask: 1 in channel 0,
    0 elsewhere (a postprocessing step: MONAI's evaluators give it the batch's keys with the output's)."""

    def __init__(self, keys: KeysCollection = "pred", mask_key: str = "mask") -> None:
        super().__init__(keys)
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            inside = torch.as_tensor(d[self.mask_key], device=pred.device).reshape(pred.shape[1:]) > 0
            out = pred * inside
            out[0] = torch.where(inside, pred[0], torch.ones_like(pred[0]))
            d[key] = out
        return d


def class_objects(prob: np.ndarray, classes: Sequence[str], threshold: float = 0.5, spacing=(1.0, 1.0, 1.0),
                  connectivity: int = 26, min_voxels: int = 1, score: str = "max"):  # fmt: skip
    """Objects of a softmax ``prob`` (1 + len(classes), H, W, D): components of ``1 - prob[0] >= threshold``,
    scored by their maximum (``score="max"``) or mean (``"mean"``) foreground probability, labelled with the class of
    highest mean probability over their voxels.

    Returns ``(objects, class_probs)``; ``class_probs`` (N, len(classes)): the mean class probabilities of each
    component, normalised over ``classes``."""
    prob = np.asarray(prob, np.float32)
    if prob.shape[0] != len(classes) + 1:
        want = f"{len(classes) + 1} channels (background, {', '.join(classes)})"
        raise ValueError(f"expected {want}, got {prob.shape[0]}")
    one_of(score, SCORES, "score")
    fg = 1.0 - prob[0]
    objs = objects_from_map(fg, threshold, connectivity, spacing, min_voxels)
    n = len(objs)
    inst = objs.instance.ravel() if objs.instance is not None else np.zeros(0, np.int64)
    if score == "mean" and n:
        objs.scores = np.bincount(inst, weights=fg.ravel(), minlength=n + 1)[1:] / np.maximum(objs.sizes, 1)
    sums = np.stack([np.bincount(inst, weights=prob[c + 1].ravel(), minlength=n + 1)[1:] for c in range(len(classes))],
                    axis=1) if n else np.zeros((0, len(classes)))  # fmt: skip
    probs = sums / np.maximum(sums.sum(axis=1, keepdims=True), 1e-12)
    objs.labels = np.array([classes[c] for c in probs.argmax(axis=1)], dtype=object) if n else objs.labels
    return objs, probs


def brain_of(images: np.ndarray, inside=None) -> np.ndarray:
    """The brain as a boolean map of the images' grid: ``inside`` (a brain mask, array or tensor) > 0, or without
    one the voxels where any channel is non-zero (skull-stripped images)."""
    if inside is None:
        return (np.asarray(images) != 0).any(axis=0)
    inside = inside.detach().cpu() if hasattr(inside, "detach") else inside
    return np.asarray(inside).reshape(np.shape(images)[1:]) > 0


def brain_medians(images: np.ndarray, inside: np.ndarray | None = None) -> list[float | None]:
    """Per intensity channel (C, H, W, D): its median over the brain, or None for an absent channel (0 everywhere).
    The brain is ``inside`` (a brain mask of the same grid) or, without one, the voxels where any channel is
    non-zero (skull-stripped images)."""
    images = np.asarray(images)
    inside = brain_of(images, inside)
    return [float(np.median(x[inside])) if x.any() else None for x in images]


def fluid_beyond(images: np.ndarray, obj: np.ndarray, brain: Sequence[float | None] | None = None,
                 margin: int = CAVITY_MARGIN, min_contrast: float = 0.1,
                 inside: np.ndarray | None = None) -> int:  # fmt: skip
    """Voxels of the fluid-like region connected to the object ``obj`` (a boolean map) that lie more than one voxel
    outside it, within ``margin`` voxels of its bounding box; -1 when no channel has contrast.

    ``images`` (C, H, W, D): the intensity channels; ``brain``: their :func:`brain_medians` (computed when None);
    ``inside``: the brain mask on the same grid (None: the voxels where any channel is non-zero).
    A voxel is fluid-like when, in every present channel with contrast, it lies on the object's side of the midpoint
    between the object's median and the brain's; a channel has contrast when these medians differ by at least
    ``min_contrast`` times the brain's. Outside the brain nothing is fluid-like (air, skull). The region is the
    6-connected component of fluid-like voxels (and the object) that holds the object; the one-voxel shell forgiven
    for partial volume is 6-connected too. A cavity wholly inside the call gives 0; a call on part of a larger fluid
    space (a sulcus, a cistern, a ventricle) gives that space's voxels in the box."""
    images, obj = np.asarray(images), np.asarray(obj, bool)
    inside = brain_of(images, inside)
    brain = brain_medians(images, inside) if brain is None else brain
    where = np.argwhere(obj)
    if not len(where):
        return 0
    lo, hi = np.maximum(where.min(0) - margin, 0), np.minimum(where.max(0) + margin + 1, obj.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    fluid, used = inside[box].copy(), 0
    for x, ref in zip(images, brain):
        if ref is None:
            continue
        core = float(np.median(x[obj]))
        if abs(core - ref) < min_contrast * abs(ref):
            continue
        mid = (core + ref) / 2.0
        fluid &= x[box] < mid if core < ref else x[box] > mid
        used += 1
    if not used:
        return -1
    region = connected_components(fluid | obj[box], 6)
    ids = np.unique(region[obj[box]])
    grown = np.isin(region, ids[ids > 0])
    return int((grown & ~ndimage.binary_dilation(obj[box])).sum())


class ClassMapDetections(SubjectReader):
    """Reader of a multi-class softmax ``output[key]`` computed on the image's grid (e.g. the 1 mm working grid):
    :func:`class_objects`, reported on the input file's grid (``i, j, k`` input voxels, ``x, y, z`` world mm),
    with ``p_<class>`` columns; objects scored below ``min_score`` are dropped (the operating threshold).

    ``cavity_class`` (e.g. ``"lacune"``): objects of that class are closed cavities, and one whose fluid-like region
    reaches more than ``cavity_leak_mm3`` beyond the call (:func:`fluid_beyond` on the image's first
    ``cavity_channels`` channels) is part of a larger fluid space and is dropped; the measure is written in the
    ``fluid_beyond_mm3`` column (empty for other classes, -1 where no channel has contrast). ``None`` keeps every
    object and adds no column. ``mask_key``: the output's brain mask on the image's grid (e.g. copied there by the
    postprocessing), so that skull and air never count as brain or fluid; None, or an output without it: the
    image's non-zero voxels are the brain (skull-stripped images).

    ``rater_heads``: a file of :func:`bundle.methods.unet.fit_rater_heads`; each detection then gets every rater
    head's answer (``rater<k>``) and answer probabilities (``rater<k>_p_<answer>``) from its
    :func:`bundle.methods.unet.object_features` (intensities: the image's first ``cavity_channels`` channels).
    ``features``: also write those features (``f_<name>`` columns), what the heads are fitted on."""

    def __init__(self, classes: Sequence[str] = ("epvs", "lacune"), threshold: float = 0.5, connectivity: int = 26,
                 min_voxels: int = 1, score: str = "max", min_score: float = 0.0, key: str = "pred",
                 cavity_class: str | None = None, cavity_leak_mm3: float = 5.0,
                 cavity_channels: int = 3, mask_key: str | None = None, rater_heads: str | None = None,
                 features: bool = False) -> None:  # fmt: skip
        self.classes, self.choices = list(classes), tuple(classes)
        self.threshold, self.connectivity, self.min_voxels = float(threshold), int(connectivity), int(min_voxels)
        self.score, self.min_score, self.key = one_of(score, SCORES, "score"), float(min_score), key
        self.cavity_class = None if cavity_class is None else one_of(cavity_class, self.choices, "cavity_class")
        self.cavity_leak_mm3, self.cavity_channels = float(cavity_leak_mm3), int(cavity_channels)
        self.mask_key = mask_key
        self.feature_names = feature_names(self.classes, self.cavity_channels)
        self.heads = load_rater_heads(rater_heads, self.feature_names) if rater_heads else None
        self.features = bool(features)
        self.raters = rater_columns(self.heads.n_raters) if self.heads is not None else ()
        self.extra_columns = (*(("fluid_beyond_mm3",) if self.cavity_class else ()),
                              *((f"f_{f}" for f in self.feature_names) if self.features else ()))  # fmt: skip

    def intensities(self, image, mask=None) -> tuple[np.ndarray, np.ndarray, list[float | None]]:
        """The image's first ``cavity_channels`` channels as an array, the brain (:func:`brain_of` with ``mask``)
        and their :func:`brain_medians`: what the cavity rule and the rater heads read."""
        images = image[: self.cavity_channels]
        images = np.asarray(images.detach().float().cpu() if hasattr(images, "detach") else images)
        inside = brain_of(images, mask)
        return images, inside, brain_medians(images, inside)

    def fluid_beyond_mm3(self, intensities: Callable, objs: Objects, spacing, among: np.ndarray) -> np.ndarray:
        """Per object, :func:`fluid_beyond` in mm^3 for those of ``cavity_class`` where ``among`` is true (-1: no
        channel with contrast), NaN for the others; ``intensities()`` gives :meth:`intensities`."""
        out = np.full(len(objs), np.nan)
        todo = np.flatnonzero((objs.labels == self.cavity_class) & among) if self.cavity_class else []
        if not len(todo):
            return out
        (images, inside, brain), voxel, m = intensities(), float(np.prod(spacing)), CAVITY_MARGIN
        boxes = ndimage.find_objects(objs.instance)
        for k in todo:  # each call on its box grown by the margin: fluid_beyond's own box, without whole-volume passes
            box = tuple(slice(max(b.start - m, 0), b.stop + m) for b in boxes[k])
            beyond = fluid_beyond(images[(slice(None), *box)], objs.instance[box] == k + 1, brain, inside=inside[box])
            out[k] = beyond * voxel if beyond >= 0 else -1.0
        return out

    def rater_values(self, intensities: Callable, objs: Objects, probs: np.ndarray, keep: np.ndarray,
                     spacing) -> list[dict]:  # fmt: skip
        """Per kept object, its feature columns (``features``) and the heads' columns (``rater_heads``);
        ``intensities()`` gives :meth:`intensities`."""
        idx = np.flatnonzero(keep)
        if not (self.features or self.heads is not None) or not len(idx):
            return [{} for _ in idx]
        lut = np.zeros(len(objs) + 1, np.int64)
        lut[idx + 1] = np.arange(1, len(idx) + 1)
        images, inside, brain = intensities()
        x = object_features(images, lut[objs.instance], objs.scores[idx], probs[idx], inside, brain, spacing)
        rows = [{f"f_{f}": round(float(v), 5) for f, v in zip(self.feature_names, r)} if self.features else {}
                for r in x]  # fmt: skip
        if self.heads is not None:
            with torch.no_grad():
                p = torch.softmax(self.heads(torch.as_tensor(x)), -1).numpy()
            n = p.shape[1]
            for row, pk in zip(rows, p):
                row.update({self.raters[r]: ANSWERS[int(pk[r].argmax())] for r in range(n)})
                row.update({f"{self.raters[r]}_p_{a}": round(float(pk[r, c]), 4) for r in range(n)
                            for c, a in enumerate(ANSWERS)})  # fmt: skip
        return rows

    def compute(self, subject: str, image, output: dict) -> list[dict]:
        prob = np.asarray(self.item(subject, output, self.key).detach().float().cpu())
        affine = np.asarray(image.affine, float)
        spacing = affine_to_spacing(affine)
        objs, probs = class_objects(prob, self.classes, self.threshold, spacing, self.connectivity,
                                    self.min_voxels, self.score)  # fmt: skip
        keep = objs.scores >= self.min_score
        mask = output.get(self.mask_key) if self.mask_key else None
        intensities = functools.cache(lambda: self.intensities(image, mask))  # once, and only if a step needs it
        beyond = self.fluid_beyond_mm3(intensities, objs, spacing, keep)
        keep &= ~(beyond > self.cavity_leak_mm3)  # NaN (another class) keeps
        extra = self.rater_values(intensities, objs, probs, keep, spacing)
        objs = Objects(objs.centres[keep], objs.sizes[keep], objs.scores[keep], objs.labels[keep], None, objs.spacing)
        rows = detection_rows(subject, objs, to_input_grid(objs, image)[0], probs[keep], self.classes)
        for row, value in zip(rows, beyond[keep]) if self.cavity_class else ():
            row["fluid_beyond_mm3"] = "" if np.isnan(value) else round(float(value), 3)
        for row, values in zip(rows, extra):
            row.update(values)
        return rows
