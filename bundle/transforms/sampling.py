# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Patch and window samplers: object-holding patches (lesion-wise validation paper) and the two-stage CMB windows."""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandAffine, Randomizable, SpatialCrop, SpatialPad

__all__ = ["ObjectCentresd", "RandCropAroundObjectd", "RandWindowsd", "crop_padded", "object_centres"]


class RandCropAroundObjectd(Randomizable, MapTransform):
    """Crop ``num_samples`` patches; each holds an object at a uniformly distributed position inside it.

    An object is drawn uniformly among the instance ids of ``label_key`` (so small and large objects are equally
    likely), then one of its voxels, then that voxel's position inside the patch, uniformly in
    ``[margin, size - 1 - margin]`` per axis; the patch is shifted back inside the image where it would leave it.
    With ``class_key`` (a class-code map, 1..K) and ``ratios`` (K weights), the class is drawn first, with weights
    ``ratios`` over the classes the volume holds, then an object of that class uniformly: a rare class (lacunes
    among hundreds of EPVS) is seen as often as the ratios say.
    Scans without objects give patches at uniformly random positions. Volumes smaller than the patch are padded
    first. The random draw (:meth:`randomize`) is separate from the deterministic crop (MONAI ``SpatialCrop``).

    Args:
        keys: keys to crop (image and label alike).
        label_key: instance map (1, H, W, D) choosing the objects.
        spatial_size: patch size (voxels).
        num_samples: patches per call; returns a list of dicts.
        margin: smallest distance (voxels) between the chosen voxel and the patch border.
        class_key: class-code map (1, H, W, D) on the grid of ``label_key`` (0 background, k for class k), or None.
        ratios: one non-negative weight per class code 1..K (with ``class_key``); None: classes weighted by their
            number of objects, as without ``class_key``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str,
        spatial_size: Sequence[int],
        num_samples: int = 1,
        margin: int = 0,
        class_key: str | None = None,
        ratios: Sequence[float] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.label_key = label_key
        self.size = np.asarray(spatial_size, int)
        self.num_samples = int(num_samples)
        self.margin = int(margin)
        self.class_key = class_key
        self.ratios = None if ratios is None else np.asarray(ratios, float).reshape(-1)
        if self.ratios is not None and (not len(self.ratios) or np.any(self.ratios < 0) or not self.ratios.sum() > 0):
            raise ValueError(f"ratios must be non-negative weights, one per class, not all 0; got {list(ratios)}")
        if self.ratios is not None and class_key is None:
            raise ValueError("ratios need class_key, the class-code map they weight")
        self.starts: list[np.ndarray] = []

    def object_weights(self, ids: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Draw probability of each object: ``ratios`` shared out over the classes present, uniform within one."""
        if self.ratios is None or not ids.size:
            return np.full(len(ids), 1.0 / max(len(ids), 1))
        codes = np.asarray(codes, int)
        if codes.min() < 1 or codes.max() > len(self.ratios):
            raise ValueError(f"class codes {sorted(set(codes.tolist()))} of the objects need one ratio each "
                             f"(1..{len(self.ratios)})")  # fmt: skip
        present, per_class = np.unique(codes, return_counts=True)
        weight = np.zeros(len(self.ratios) + 1)
        weight[present] = self.ratios[present - 1] / per_class
        w = weight[codes]
        if not w.sum() > 0:  # only classes of ratio 0 present: uniform over objects
            return np.full(len(ids), 1.0 / len(ids))
        return w / w.sum()

    def randomize(self, label: np.ndarray, classes: np.ndarray | None = None) -> None:
        """Draw the patch starts for a (H, W, D) instance map (and its class-code map with ``class_key``)."""
        shape = np.asarray(label.shape)
        fg = np.flatnonzero(label)
        ids, first = np.unique(label.reshape(-1)[fg], return_index=True) if fg.size else (np.zeros(0), np.zeros(0, int))
        codes = np.asarray(classes).reshape(-1)[fg[first]] if classes is not None and ids.size else np.zeros(0)
        p = self.object_weights(ids, codes) if classes is not None else None
        self.starts = []
        for _ in range(self.num_samples):
            if ids.size:
                obj = ids[self.R.choice(len(ids), p=p)]
                vox = np.argwhere(label == obj)
                v = vox[self.R.randint(len(vox))]
                pos = self.R.randint(self.margin, np.maximum(self.size - self.margin, self.margin + 1))
                start = v - pos
            else:
                start = np.array([self.R.randint(0, max(s - n, 0) + 1) for s, n in zip(shape, self.size)])
            self.starts.append(np.clip(start, 0, np.maximum(shape - self.size, 0)))

    def __call__(self, data: Mapping[Hashable, object]) -> list[dict]:
        d = dict(data)
        pad = SpatialPad(self.size.tolist())
        for key in self.key_iterator(d):
            d[key] = pad(d[key])
        # the draw reads the maps on the padded grid even where they are not among the cropped keys (defensive: a
        # pad only adds background, so the starts are the same)
        label = np.asarray(pad(d[self.label_key])[0])
        classes = np.asarray(pad(d[self.class_key])[0]) if self.class_key else None
        if classes is not None and classes.shape != label.shape:
            raise ValueError(f"{self.class_key} {classes.shape} and {self.label_key} {label.shape} differ in shape")
        self.randomize(label, classes)
        out = []
        for start in self.starts:
            crop = SpatialCrop(roi_start=start.tolist(), roi_end=(start + self.size).tolist())
            sample = dict(d)
            for key in self.key_iterator(d):
                sample[key] = crop(d[key])
            out.append(sample)
        return out


def crop_padded(array: np.ndarray, start: Sequence[int], size: Sequence[int], value: float = 0.0) -> np.ndarray:
    """``array[..., start:start+size]`` over the last three axes, filled with ``value`` where it leaves the array.

    Copies only the window (no padded copy of the whole volume), so it is cheap on large scans.
    """
    array = np.asarray(array)
    start = np.asarray(start, int)
    size = np.asarray(size, int)
    shape = np.asarray(array.shape[-3:])
    out = np.full((*array.shape[:-3], *size), value, dtype=array.dtype)
    lo = np.clip(start, 0, shape)
    hi = np.clip(start + size, 0, shape)
    if np.all(hi > lo):
        src = (..., *(slice(a, b) for a, b in zip(lo, hi)))
        dst = (..., *(slice(a - s, b - s) for a, b, s in zip(lo, hi, start)))
        out[dst] = array[src]
    return out


def object_centres(label: np.ndarray) -> np.ndarray:
    """(N, 3) integer voxel centres of mass of the instances of a (H, W, D) or (1, H, W, D) map (N may be 0).

    A centre that falls outside its (non-convex) object is moved to the object's voxel nearest to it, so a window
    centred there always contains the object.
    """
    label = np.asarray(label)
    label = label[0] if label.ndim == 4 else label
    fg = np.flatnonzero(label)
    if not fg.size:
        return np.zeros((0, 3), int)
    ids = label.reshape(-1)[fg]
    vox = np.stack(np.unravel_index(fg, label.shape), 1)
    out = []
    for obj in np.unique(ids):
        pts = vox[ids == obj]
        c = np.rint(pts.mean(0)).astype(int)
        if label[tuple(c)] != obj:
            c = pts[np.argmin(((pts - c) ** 2).sum(1))]
        out.append(c)
    return np.asarray(out, int)


class ObjectCentresd(MapTransform):
    """Store the instance centres of ``label_key`` under ``centres_key`` ((N, 3) int array), once per subject.

    Deterministic, so it belongs to the cached preprocessing; :class:`RandWindowsd` reads the result.
    """

    def __init__(self, label_key: str = "label", centres_key: str = "centres") -> None:
        MapTransform.__init__(self, [label_key], allow_missing_keys=True)
        self.label_key, self.centres_key = label_key, centres_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        label = d.get(self.label_key)
        d[self.centres_key] = object_centres(np.asarray(label)) if label is not None else np.zeros((0, 3), int)
        return d


class RandWindowsd(Randomizable, MapTransform):
    """Draw ``num_samples`` small windows per call: object-centred, mimic-centred or random in the brain.

    The window sampler of the two-stage microbleed detector (Rau et al.). Each window is one of three kinds,
    drawn with probabilities proportional to ``ratios`` among the kinds the subject has:

    * ``positive``: centred on an object centre (``centres_key``), shifted by up to ``max_shift`` voxels per axis
      so the object stays central (the paper's one-voxel shifts); ``target`` 1.
    * ``mimic``: centred on a mined stage-1 false positive (``mimics_key``, (M, 3) voxel coordinates), shifted
      likewise; ``target`` 0. Drawn uniformly, or, with ``mimic_power`` p > 0, with probability proportional to
      its stage-1 score (``mimic_scores_key``) to the power p: the hardest negatives (calcifications, blooming
      veins, which stage 1 scores near 1) more often than the many faint ones.
    * ``random``: centred on a uniformly drawn voxel of ``mask_key`` (the brain); ``target`` 1 if that voxel lies
      in an object, else 0.

    With ``augment``, each window is flipped along each axis with probability 0.5 and rotated by a multiple of 90
    degrees in the (i, j) plane (the paper's augmentation; the centre moves by at most one voxel). It is done
    here on the small numpy window because MONAI's ``RandFlipd``/``RandRotate90d`` cost about 3 ms per window on
    this CPU (metadata bookkeeping), more than the training step itself.

    With ``affine`` (a dict of :class:`monai.transforms.RandAffine` ranges, one per axis, e.g. ``{"rotate_range":
    [3.14, 3.14, 3.14], "scale_range": [0.15, 0.15, 0.15]}``), a larger block around the centre is cropped first
    and one random rotation/scaling about the centre voxel is applied to every key (``label_key`` by nearest
    neighbour), so windows show objects and veins at any angle and size to the scan axes (oblique heads, other
    blooming). With ``intensity``, the image keys
    of each window get a random contrast (x 0.75-1.33 around the window mean), offset (+-0.2 of the window's
    standard deviation), Gaussian blur (sigma 0.3-0.8 voxels, a third of the windows) and noise (up to 0.15 of the
    standard deviation): the sites' contrast, point-spread and SNR differences. With ``slice_thickness`` (a range
    in voxels, e.g. ``(1.0, 4.0)``), half the windows get the partial volume of a thicker slice along one random
    axis: a Gaussian profile of the variance of a box of width w (w uniform in the range) less that of the voxel
    itself, so a 1 mm working grid shows what a 1-4 mm acquisition resampled onto it shows.

    The window's centre voxel is ``size // 2``. Windows leaving the volume are zero-filled (:func:`crop_padded`);
    the volume itself is never copied, so a call costs the windows only. Output per window (nothing else, so
    windows collate whatever the entry holds): the ``keys`` cropped as float tensors (``label_key`` made binary),
    ``target_key`` (0-d int64 tensor), ``kind_key`` (str) and ``subject`` when the entry has one.

    Args:
        keys: volume keys to crop ((C, H, W, D) each).
        spatial_size: window size (voxels), (20, 20, 16) in the paper.
        num_samples: windows per call (a list of dicts is returned).
        ratios: relative frequency of positive, mimic and random windows.
        max_shift: largest shift (voxels) of object- and mimic-centred windows.
        augment: random flips and in-plane 90-degree rotations (needs equal sizes along i and j to rotate).
        affine: ``RandAffine`` ranges for a random rotation/scaling of every window (None: none).
        intensity: random contrast, offset, blur and noise of the image keys.
        slice_thickness: (min, max) slice thickness in voxels simulated on half the windows (None: none).
        mimic_power: exponent of the stage-1 score in the mimics' sampling weights (0: uniform, the paper's).
        label_key, centres_key, mimics_key, mask_key: entry keys (see above); missing ones disable their kind.
        mimic_scores_key: entry key of the mimics' stage-1 scores (needed only with ``mimic_power`` > 0).
    """

    KINDS = ("positive", "mimic", "random")

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int] = (20, 20, 16),
        num_samples: int = 1,
        ratios: Sequence[float] = (1.0, 0.0, 1.0),
        max_shift: int = 1,
        augment: bool = False,
        affine: Mapping | None = None,
        intensity: bool = False,
        slice_thickness: Sequence[float] | None = None,
        mimic_power: float = 0.0,
        label_key: str = "label",
        centres_key: str = "centres",
        mimics_key: str = "mined_mimics",
        mask_key: str = "mask",
        mimic_scores_key: str = "mined_mimics_scores",
        target_key: str = "target",
        kind_key: str = "kind",
        allow_missing_keys: bool = False,
    ) -> None:
        self._init_args = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        MapTransform.__init__(self, keys, allow_missing_keys)
        if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
            raise ValueError(f"ratios must be three non-negative numbers (positive, mimic, random), got {ratios}")
        self.size = np.asarray(spatial_size, int)
        self.num_samples = int(num_samples)
        self.ratios = np.asarray(ratios, float)
        self.max_shift = int(max_shift)
        self.augment = bool(augment)
        self.intensity = bool(intensity)
        self.slice_thickness = None
        if slice_thickness is not None:
            lo, hi = (float(v) for v in slice_thickness)
            if not 1.0 <= lo <= hi:
                raise ValueError(f"slice_thickness must be (min, max) voxels, 1 <= min <= max; got {slice_thickness}")
            self.slice_thickness = (lo, hi)
        self.mimic_power = float(mimic_power)
        if not self.mimic_power >= 0:
            raise ValueError(f"mimic_power must be >= 0, got {mimic_power}")
        self.affine = None
        if affine:
            # odd sizes rotate about a voxel (MONAI's grid centre): out = size rounded up to odd, cut back after
            odd = self.size + 1 - self.size % 2
            self.affine = RandAffine(prob=1.0, spatial_size=tuple(int(v) for v in odd), padding_mode="zeros",
                                     **dict(affine))  # fmt: skip
            zoom = 1.0 + float(np.max(np.abs(np.ravel(affine.get("scale_range") or 0.0))))
            diag = float(np.sqrt((self.size.astype(float) ** 2).sum())) * zoom
            # block cropped before the transform: odd, centred on the window's centre voxel, covering it rotated
            self.block = odd + 2 * np.ceil(np.maximum(diag - odd, 0) / 2).astype(int)
        self.label_key, self.centres_key, self.mimics_key, self.mask_key = label_key, centres_key, mimics_key, mask_key
        self.target_key, self.kind_key, self.mimic_scores_key = target_key, kind_key, mimic_scores_key

    def replace(self, **changes) -> "RandWindowsd":
        """A new sampler with this one's arguments except ``changes`` (e.g. ``mimic_power=0.0``), so a config
        declares a variant in one line instead of copying every argument."""
        unknown = set(changes) - set(self._init_args)
        if unknown:
            raise TypeError(f"RandWindowsd has no argument(s) {sorted(unknown)}")
        return type(self)(**{**self._init_args, **changes})

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        if self.affine is not None:
            self.affine.set_random_state(seed=int(self.R.randint(2**31)))
        return self

    def _intensity(self, win: np.ndarray) -> np.ndarray:
        """Random contrast, offset, blur and noise of one image window (C, H, W, D)."""
        from scipy.ndimage import gaussian_filter

        mean, std = float(win.mean()), float(win.std()) + 1e-6
        win = mean + (win - mean) * np.exp(self.R.uniform(np.log(0.75), np.log(1.33))) + self.R.uniform(-0.2, 0.2) * std
        if self.R.rand() < 1 / 3:
            win = gaussian_filter(win, (0, *self.R.uniform(0.3, 0.8, 3)))
        return win + self.R.normal(0.0, self.R.uniform(0, 0.15) * std, win.shape)

    def _slice_profile(self) -> tuple[int, float] | None:
        """(window axis, Gaussian sigma in voxels) of a thicker slice for one window, or None (half the windows)."""
        if self.slice_thickness is None or self.R.rand() < 0.5:
            return None
        axis, width = int(self.R.randint(3)), float(self.R.uniform(*self.slice_thickness))
        return axis, float(np.sqrt((width**2 - 1.0) / 12.0))

    def _mimic_weights(self, data: Mapping[Hashable, object], n: int) -> np.ndarray | None:
        """Sampling probabilities of the ``n`` mimics (None: uniform)."""
        if self.mimic_power == 0 or n == 0:
            return None
        if self.mimic_scores_key not in data:
            raise KeyError(f"mimic_power={self.mimic_power} needs the mimics' scores under '{self.mimic_scores_key}'")
        scores = np.asarray(data[self.mimic_scores_key], float).reshape(-1)
        if len(scores) != n:
            raise ValueError(f"{len(scores)} mimic scores under '{self.mimic_scores_key}' for {n} mimics")
        w = np.clip(scores, 1e-6, None) ** self.mimic_power
        return w / w.sum()

    def randomize(self, data: Mapping[Hashable, object]) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
        """Draw (kind, centre voxel, flips per axis, quarter turns) for each window."""
        pools = {
            "positive": np.asarray(data.get(self.centres_key, np.zeros((0, 3))), int).reshape(-1, 3),
            "mimic": np.asarray(data.get(self.mimics_key, np.zeros((0, 3))), int).reshape(-1, 3),
        }
        mask = data.get(self.mask_key)
        mask = np.asarray(mask)[0] if mask is not None else None  # a view: no per-call pass over the volume
        shape = np.asarray(np.shape(data[self.first_key(data)])[-3:])
        weights = self.ratios * np.array([len(pools["positive"]) > 0, len(pools["mimic"]) > 0, True])
        p_mimic = self._mimic_weights(data, len(pools["mimic"]))
        out = []
        for _ in range(self.num_samples):
            kind = self.KINDS[self.R.choice(3, p=weights / weights.sum())]
            if kind == "random":
                for _ in range(1000):  # rejection sampling: uniform in the mask (the brain fills ~1/3 of a scan)
                    c = self.R.randint(0, shape)
                    if mask is None or mask[tuple(c)]:
                        break
            else:
                pool = pools[kind]
                weighted = kind == "mimic" and p_mimic is not None
                i = self.R.choice(len(pool), p=p_mimic) if weighted else self.R.randint(len(pool))
                c = pool[i] + self.R.randint(-self.max_shift, self.max_shift + 1, 3)
            flips = self.R.rand(3) < 0.5 if self.augment else np.zeros(3, bool)
            k = int(self.R.randint(4)) if self.augment and self.size[0] == self.size[1] else 0
            out.append((kind, np.asarray(c, int), flips, k))
        return out

    def __call__(self, data: Mapping[Hashable, object]) -> list[dict]:
        draws = self.randomize(data)
        label = data.get(self.label_key)
        label = np.asarray(label)[0] if label is not None else None
        shape = np.asarray(label.shape) if label is not None else None
        out = []
        for kind, c, flips, k in draws:
            size = self.size if self.affine is None else self.block
            start = c - size // 2
            sample = {"subject": data["subject"]} if "subject" in data else {}
            if self.affine is not None:
                self.affine.randomize()
            profile = self._slice_profile()
            for key in self.key_iterator(data):
                win = crop_padded(np.asarray(data[key]), start, size)
                if self.affine is not None:
                    mode = "nearest" if key == self.label_key else "bilinear"
                    win = np.asarray(self.affine(torch.as_tensor(win, dtype=torch.float32), mode=mode, randomize=False))
                    win = win[..., : self.size[0], : self.size[1], : self.size[2]]
                if profile is not None and profile[1] > 0 and key != self.label_key:
                    from scipy.ndimage import gaussian_filter1d

                    win = gaussian_filter1d(np.asarray(win, np.float32), profile[1], axis=win.ndim - 3 + profile[0])
                if self.intensity and key != self.label_key:
                    win = self._intensity(win)
                axes = tuple(win.ndim - 3 + np.flatnonzero(flips))
                win = np.rot90(np.flip(win, axes) if axes else win, k, axes=(win.ndim - 3, win.ndim - 2))
                sample[key] = torch.as_tensor(
                    np.ascontiguousarray((win > 0) if key == self.label_key else win), dtype=torch.float32
                )
            inside = label is not None and np.all(c >= 0) and np.all(c < shape) and label[tuple(c)] > 0
            sample[self.target_key] = torch.tensor(1 if kind == "positive" or (kind == "random" and inside) else 0)
            sample[self.kind_key] = kind
            out.append(sample)
        return out
