# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Intensity preprocessing of the four methods, as array transforms on channel-first (C, H, W, D) volumes.

* :class:`N4BiasFieldCorrection`: SimpleITK's N4, per channel (two-stage CMB, RCNN papers).
* :class:`HistogramPeakNormalize`: the brain histogram's peak maps to 0.5 (two-stage CMB paper).
* :class:`WhiteMatterZScore`: z-score every channel to white-matter statistics (RCNN paper).
* :class:`SoftROIMask` and :class:`TrimRescale`: the GP-Unet ROI preprocessing (dilate, smooth with sigma 2,
  apply; crop with MONAI's ``CropForeground``; trim the top 1 % and rescale to [0, 1]).
* :func:`head_mask`: an Otsu head mask for inputs that come without a brain mask (the main job).
* :class:`ROIFloor`: sets the ROI's tissue level to 0 (a per-scan percentile inside the ROI), so that only voxels
  brighter than the tissue carry signal into a count regression (GP-Unet; docs/gpunet.md).

Masks are (1, H, W, D) or (H, W, D); non-zero = inside. Outputs keep the input's type and metadata.
"""

from __future__ import annotations

import numpy as np
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import Transform
from monai.utils import convert_to_dst_type, convert_to_numpy
from scipy import ndimage as ndi

__all__ = [
    "mask3d",
    "N4BiasFieldCorrection",
    "HistogramPeakNormalize",
    "WhiteMatterZScore",
    "SoftROIMask",
    "TrimRescale",
    "ROIFloor",
    "head_mask",
    "estimate_white_matter",
    "histogram_peak",
]


def mask3d(mask: NdarrayOrTensor | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """A (1, H, W, D) or (H, W, D) mask as a boolean (H, W, D) array checked against ``shape`` (None stays None)."""
    if mask is None:
        return None
    m = convert_to_numpy(mask)
    m = m[0] if m.ndim == 4 else m
    if m.shape != tuple(shape):
        raise ValueError(f"mask has shape {m.shape}, image has spatial shape {tuple(shape)}")
    return m > 0


def _spacing(img: NdarrayOrTensor) -> tuple[float, ...]:
    return tuple(float(s) for s in img.pixdim) if isinstance(img, MetaTensor) else (1.0, 1.0, 1.0)


class N4BiasFieldCorrection(Transform):
    """N4 bias-field correction (Tustison et al. 2010) of each channel with SimpleITK.

    The field is estimated on a copy shrunk by ``shrink_factor`` (as ANTs does) and applied at full resolution.

    Args:
        shrink_factor: integer down-sampling for the estimate.
        iterations: maximum iterations per fitting level (its length is the number of levels).
        convergence: convergence threshold.
        spline_distance_mm: B-spline control-point spacing of the field, in mm.
    """

    def __init__(
        self,
        shrink_factor: int = 4,
        iterations=(50, 50, 30),
        convergence: float = 1e-3,
        spline_distance_mm: float = 100.0,
    ):
        self.shrink_factor = int(shrink_factor)
        self.iterations = [int(i) for i in iterations]
        self.convergence = float(convergence)
        self.spline_distance_mm = spline_distance_mm

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> NdarrayOrTensor:
        """Args: img (C, H, W, D) positive intensities; mask (1, H, W, D) region used to fit the field."""
        import SimpleITK as sitk

        arr = convert_to_numpy(img).astype(np.float32)
        m = mask3d(mask, arr.shape[1:])
        spacing = _spacing(img)
        out = np.empty_like(arr)
        for c, chan in enumerate(arr):
            if not chan.any():  # an absent modality (bundle.transforms.ModalityChannelsd): nothing to correct
                out[c] = chan
                continue
            image = sitk.GetImageFromArray(
                np.ascontiguousarray(chan.transpose(2, 1, 0))
            )  # sitk is (x, y, z) = (i, j, k)
            image.SetSpacing(spacing)
            fit_mask = m if m is not None else chan > 0
            mask_img = sitk.GetImageFromArray(np.ascontiguousarray(fit_mask.transpose(2, 1, 0)).astype(np.uint8))
            mask_img.CopyInformation(image)
            small = sitk.Shrink(image, [self.shrink_factor] * 3) if self.shrink_factor > 1 else image
            small_mask = sitk.Shrink(mask_img, [self.shrink_factor] * 3) if self.shrink_factor > 1 else mask_img
            n4 = sitk.N4BiasFieldCorrectionImageFilter()
            n4.SetMaximumNumberOfIterations(self.iterations)
            n4.SetConvergenceThreshold(self.convergence)
            extent = np.array(small.GetSize()) * np.array(small.GetSpacing())
            n4.SetNumberOfControlPoints([max(int(e / self.spline_distance_mm) + 3, 4) for e in extent])
            n4.Execute(small, small_mask)
            log_field = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(image)).transpose(2, 1, 0)
            out[c] = chan / np.exp(log_field)
        return convert_to_dst_type(out, img)[0]


def histogram_peak(values: np.ndarray, bins: int = 256, smooth_bins: float = 1.0) -> float:
    """Intensity at the mode of the (lightly smoothed) histogram of ``values``, ignoring the top 0.5 %."""
    if values.size == 0:
        raise ValueError("no voxels to build a histogram from (empty mask or all-zero image)")
    hi = float(np.percentile(values, 99.5))
    lo = float(values.min())
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi if hi > lo else lo + 1.0))
    counts = ndi.gaussian_filter1d(counts.astype(float), smooth_bins) if smooth_bins > 0 else counts
    k = int(np.argmax(counts))
    return float(0.5 * (edges[k] + edges[k + 1]))


class HistogramPeakNormalize(Transform):
    """Linear scaling so the histogram peak of the brain maps to ``target`` (0.5): ``i * target / peak``.

    The histogram uses voxels in ``mask`` if given, else non-zero voxels (zero background is excluded, as in
    the two-stage CMB paper). Each channel is scaled independently.

    Args:
        target: value the peak maps to.
        bins: histogram bins between the minimum and the 99.5th percentile.
    """

    def __init__(self, target: float = 0.5, bins: int = 256):
        self.target = target
        self.bins = bins

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> NdarrayOrTensor:
        arr = convert_to_numpy(img).astype(np.float32)
        m = mask3d(mask, arr.shape[1:])
        out = np.empty_like(arr)
        for c, chan in enumerate(arr):
            values = chan[m] if m is not None else chan[chan != 0]
            peak = histogram_peak(values, self.bins)
            if peak <= 0:
                raise ValueError(f"histogram peak is {peak:g}; peak normalisation needs positive intensities")
            out[c] = chan * (self.target / peak)
        return convert_to_dst_type(out, img)[0]


def estimate_white_matter(
    channel: np.ndarray, brain: np.ndarray, wm_brightest: bool = True, iters: int = 30
) -> np.ndarray:
    """White-matter mask from 3-class 1D k-means (CSF, GM, WM) of brain intensities.

    Args:
        channel: (H, W, D) image where white matter is the brightest (T1w, ``wm_brightest``) or darkest
            (T2w, ``wm_brightest=False``) tissue class.
        brain: (H, W, D) boolean brain mask.
    """
    v = channel[brain]
    if v.size < 3:
        raise ValueError("brain mask has fewer than 3 voxels; cannot estimate white matter")
    lo, hi = np.percentile(v, [1, 99])
    centres = lo + (hi - lo) * np.array([0.2, 0.5, 0.8])  # spread over the range: robust to unequal class sizes
    for _ in range(iters):
        assign = np.argmin(np.abs(v[:, None] - centres[None]), axis=1)
        centres = np.array([v[assign == k].mean() if (assign == k).any() else centres[k] for k in range(3)])
    wm_class = int(np.argmax(centres) if wm_brightest else np.argmin(centres))
    wm = np.zeros_like(brain)
    wm[brain] = np.argmin(np.abs(v[:, None] - centres[None]), axis=1) == wm_class
    return wm


class WhiteMatterZScore(Transform):
    """Z-score every channel to its white-matter mean and standard deviation (the RCNN paper's normalisation).

    Args:
        reference_channel: channel used to estimate white matter when no WM mask is given (T1w: WM brightest).
        wm_brightest: whether WM is the brightest tissue in the reference channel.
    """

    def __init__(self, reference_channel: int = 0, wm_brightest: bool = True):
        self.reference_channel = reference_channel
        self.wm_brightest = wm_brightest

    def __call__(
        self, img: NdarrayOrTensor, wm_mask: NdarrayOrTensor | None = None, brain_mask: NdarrayOrTensor | None = None
    ) -> NdarrayOrTensor:
        arr = convert_to_numpy(img).astype(np.float32)
        wm = mask3d(wm_mask, arr.shape[1:])
        if wm is None:
            brain = mask3d(brain_mask, arr.shape[1:])
            brain = brain if brain is not None else arr[self.reference_channel] != 0
            wm = estimate_white_matter(arr[self.reference_channel], brain, self.wm_brightest)
        if wm.sum() < 2:
            raise ValueError("white-matter mask has fewer than 2 voxels")
        out = np.empty_like(arr)
        for c, chan in enumerate(arr):
            mu, sd = float(chan[wm].mean()), float(chan[wm].std())
            out[c] = (chan - mu) / max(sd, 1e-8)
        return convert_to_dst_type(out, img)[0]


class SoftROIMask(Transform):
    """Dilate a binary ROI, smooth its border with a Gaussian and multiply the image by it (GP-Unet).

    Args:
        dilation_mm: dilation radius in mm (a ball, using the image spacing).
        sigma_mm: Gaussian standard deviation in mm (the paper: 2).

    Returns (from ``__call__``): the masked image and the dilated binary mask (1, H, W, D), which MONAI's
    ``CropForeground`` can then crop to.
    """

    def __init__(self, dilation_mm: float = 3.0, sigma_mm: float = 2.0):
        self.dilation_mm = dilation_mm
        self.sigma_mm = sigma_mm

    def __call__(self, img: NdarrayOrTensor, roi: NdarrayOrTensor) -> tuple[NdarrayOrTensor, NdarrayOrTensor]:
        arr = convert_to_numpy(img).astype(np.float32)
        m = mask3d(roi, arr.shape[1:])
        if not m.any():
            raise ValueError("ROI mask is empty")
        spacing = np.array(_spacing(img))
        radius = np.ceil(self.dilation_mm / spacing).astype(int)
        grid = np.indices(2 * radius + 1).reshape(3, -1).T - radius
        ball = np.zeros(2 * radius + 1, bool)
        ball[tuple((grid + radius).T)] = ((grid * spacing) ** 2).sum(1) <= self.dilation_mm**2 + 1e-6
        dilated = ndi.binary_dilation(m, structure=ball) if self.dilation_mm > 0 else m
        soft = (
            ndi.gaussian_filter(dilated.astype(np.float32), self.sigma_mm / spacing) if self.sigma_mm > 0 else dilated
        )
        out = arr * soft[None]
        return convert_to_dst_type(out, img)[0], convert_to_dst_type(dilated[None].astype(np.float32), roi)[0]


class TrimRescale(Transform):
    """Clip intensities at the ``upper`` percentile of the non-zero voxels and rescale [0, that value] to [0, 1].

    Args:
        upper: percentile (99 trims the top 1 %).
    """

    def __init__(self, upper: float = 99.0):
        self.upper = upper

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        arr = convert_to_numpy(img).astype(np.float32)
        out = np.empty_like(arr)
        for c, chan in enumerate(arr):
            nz = chan[chan > 0]
            top = float(np.percentile(nz, self.upper)) if nz.size else 1.0
            out[c] = np.clip(chan, 0.0, top) / max(top, 1e-8)
        return convert_to_dst_type(out, img)[0]


class ROIFloor(Transform):
    """Subtract each channel's ``percentile`` inside a ROI, clip at 0 and rescale so the channel's maximum is kept.

    ``out = clip(x - f, 0) * max(x) / (max(x) - f)`` with ``f`` the percentile of the channel's voxels inside the
    ROI. With ``percentile`` 90 the floor lies above the tissue of the ROI as long as bright lesions fill under
    10 % of it, so tissue becomes 0 and lesions keep their contrast. GP-Unet needs this on CPU budgets: a sum over
    the whole crop is otherwise dominated by tissue and its count regression stays at the mean (docs/gpunet.md).

    Args:
        percentile: the floor, as a percentile (0-100) of the ROI's voxels.
    """

    def __init__(self, percentile: float = 90.0):
        if not 0.0 <= float(percentile) < 100.0:
            raise ValueError(f"percentile must lie in [0, 100), got {percentile}")
        self.percentile = float(percentile)

    def __call__(self, img: NdarrayOrTensor, roi: NdarrayOrTensor) -> NdarrayOrTensor:
        arr = convert_to_numpy(img).astype(np.float32)
        m = mask3d(roi, arr.shape[1:])
        if not m.any():
            raise ValueError("ROI mask is empty")
        out = np.empty_like(arr)
        for c, chan in enumerate(arr):
            floor = float(np.percentile(chan[m], self.percentile))
            top = float(chan.max())
            scale = top / (top - floor) if top > floor else 0.0
            out[c] = np.clip(chan - floor, 0.0, None) * scale
        return convert_to_dst_type(out, img)[0]


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (the cut maximising the between-class variance of a ``bins`` histogram)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2.0
    w0 = np.cumsum(hist).astype(float)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = ((hist * centres).sum() - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def head_mask(img: NdarrayOrTensor) -> np.ndarray:
    """Binary (H, W, D) head mask of channel 0: voxels above Otsu's threshold, opened once, the largest
    connected component, holes filled. It includes scalp and skull: a stand-in where no brain mask is given.

    Raises:
        ValueError: the image is constant (nothing to separate).
    """
    arr = convert_to_numpy(img).astype(np.float32)
    vol = arr[0] if arr.ndim == 4 else arr
    finite = vol[np.isfinite(vol)]
    if not finite.size or float(finite.max()) <= float(finite.min()):
        raise ValueError("image is constant: no head to find")
    fg = vol > otsu_threshold(finite)
    fg = ndi.binary_opening(fg, iterations=1) if fg.sum() > 1000 else fg
    lab, n = ndi.label(fg)
    if n > 1:
        fg = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return ndi.binary_fill_holes(fg)
