# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Numeric tests of the preprocessing transforms on phantoms small enough to reason about."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import sphere
from monai.data import MetaTensor

from bundle.transforms import (
    HistogramPeakNormalize,
    HistogramPeakNormalized,
    N4BiasFieldCorrection,
    ROIFloor,
    SoftROIMask,
    TrimRescale,
    WhiteMatterZScore,
    estimate_white_matter,
    histogram_peak,
)

SHAPE = (40, 40, 40)


def _phantom(seed=0, noise=2.0):
    """Brain-like ball: WM core (100), GM shell (60), CSF centre (30); returns image and tissue masks."""
    rng = np.random.default_rng(seed)
    brain = sphere(SHAPE, (20, 20, 20), 17)
    wm = sphere(SHAPE, (20, 20, 20), 14) & ~sphere(SHAPE, (20, 20, 20), 4)  # WM is the most common tissue
    csf = sphere(SHAPE, (20, 20, 20), 4)
    img = np.where(brain, 60.0, 0.0)
    img[wm] = 100.0
    img[csf] = 30.0
    img = (img + rng.normal(0, noise, SHAPE)) * brain
    return img.astype(np.float32), brain, wm, csf


def _cv(x):
    return float(x.std() / x.mean())


def test_n4_lowers_white_matter_cv_under_known_bias():
    img, brain, wm, _ = _phantom()
    x = np.linspace(-1, 1, SHAPE[0])[:, None, None]
    z = np.linspace(-1, 1, SHAPE[2])[None, None, :]
    bias = np.exp(0.5 * x + 0.3 * z**2 - 0.1).astype(np.float32)
    biased = MetaTensor(torch.from_numpy(img * bias)[None], affine=torch.eye(4))
    out = N4BiasFieldCorrection(shrink_factor=2)(biased, torch.from_numpy(brain)[None])
    assert isinstance(out, MetaTensor) and out.shape == (1, *SHAPE)
    before, after = _cv(biased[0].numpy()[wm]), _cv(out[0].numpy()[wm])
    assert before > 0.15
    assert after < 0.5 * before, (before, after)
    clean = _cv(img[wm])
    assert after < clean + 0.03  # close to the noise-only floor


def test_every_n4_of_the_configs_takes_n4_convergence():
    """Both detectors' N4 stop at the config's ``n4_convergence`` (0.001), and an override reaches both."""
    from monai.bundle import ConfigParser

    for value, expected in ((None, 1e-3), ("1e-6", 1e-6)):
        parser = ConfigParser()
        parser.read_config("configs/common.yaml")
        if value is not None:
            parser["n4_convergence"] = value  # as the command line passes it
        steps = [*parser.get_parsed_content("intensity_cmb"), *parser.get_parsed_content("preprocessing_rcnn")]
        n4 = [t.op for t in steps if isinstance(getattr(t, "op", None), N4BiasFieldCorrection)]
        assert len(n4) == 2 and all(op.convergence == expected for op in n4), [op.convergence for op in n4]


def test_histogram_peak_maps_to_half_and_is_linear():
    img, brain, wm, _ = _phantom()
    mt = MetaTensor(torch.from_numpy(img * 7.3)[None])
    out = HistogramPeakNormalize()(mt)
    vals = out[0].numpy()[brain]
    assert histogram_peak(vals) == pytest.approx(0.5, abs=0.01)  # the peak (WM, most voxels) is now 0.5
    assert float(out[0].numpy()[wm].mean()) == pytest.approx(0.5, abs=0.02)
    ratio = out[0].numpy()[brain] / (img * 7.3)[brain]
    assert np.ptp(ratio) < 1e-5  # one linear factor


def test_histogram_peak_uses_mask_only():
    img, brain, wm, _ = _phantom()
    img = img.copy()
    img[:6] = 500.0  # a big block outside the mask would dominate the histogram
    d = {"image": MetaTensor(torch.from_numpy(img)[None]), "mask": torch.from_numpy(brain[None].astype(np.float32))}
    out = HistogramPeakNormalized("image", mask_key="mask")(d)
    assert float(out["image"][0].numpy()[wm].mean()) == pytest.approx(0.5, abs=0.02)


def test_histogram_peak_raises_on_empty():
    with pytest.raises(ValueError, match="no voxels"):
        HistogramPeakNormalize()(torch.zeros(1, 4, 4, 4))


def test_white_matter_zscore_with_given_mask():
    img, brain, wm, _ = _phantom()
    two = np.stack([img, 3.0 * img + 10.0])  # second channel: another contrast
    out = WhiteMatterZScore()(torch.from_numpy(two), wm_mask=torch.from_numpy(wm)[None])
    for c in range(2):
        assert float(out[c][torch.from_numpy(wm)].mean()) == pytest.approx(0.0, abs=1e-4)
        assert float(out[c][torch.from_numpy(wm)].std(unbiased=False)) == pytest.approx(1.0, abs=1e-3)


def test_white_matter_estimated_from_t1():
    img, brain, wm, _ = _phantom()
    est = estimate_white_matter(img, brain)
    dice = 2 * (est & wm).sum() / (est.sum() + wm.sum())
    assert dice > 0.97
    out = WhiteMatterZScore(reference_channel=0)(torch.from_numpy(img)[None], brain_mask=torch.from_numpy(brain)[None])
    assert float(out[0][torch.from_numpy(wm)].mean()) == pytest.approx(0.0, abs=0.05)
    gm = brain & ~wm & ~sphere(SHAPE, (20, 20, 20), 4)
    assert float(out[0][torch.from_numpy(gm)].mean()) == pytest.approx(-40.0 / 2.0, rel=0.1)  # (60-100)/sd(noise=2)


def test_soft_roi_mask_dilates_by_mm_and_smooths():
    roi = np.zeros((31, 31, 31), np.float32)
    roi[15, 15, 15] = 1
    img = MetaTensor(torch.ones(1, 31, 31, 31), affine=torch.eye(4))
    out, dilated = SoftROIMask(dilation_mm=3.0, sigma_mm=2.0)(img, torch.from_numpy(roi)[None])
    assert int(dilated.sum()) == 123  # lattice points within 3 voxels of the centre
    o = out[0].numpy()
    assert 0.5 < o[15, 15, 15] < 1.0  # smoothed: below 1 even at the centre of a small ROI
    assert o[15, 15, 20] < o[15, 15, 18] < o[15, 15, 15]  # decays with distance
    assert o[15, 15, 28] < 1e-3


def test_soft_roi_mask_respects_anisotropic_spacing():
    roi = np.zeros((21, 21, 21), np.float32)
    roi[10, 10, 10] = 1
    img = MetaTensor(torch.ones(1, 21, 21, 21), affine=torch.diag(torch.tensor([1.0, 1.0, 2.0, 1.0])))
    _, dilated = SoftROIMask(dilation_mm=3.0, sigma_mm=2.0)(img, torch.from_numpy(roi)[None])
    d = dilated[0].numpy() > 0
    assert d[10, 10, 11] and not d[10, 10, 12]  # 2 mm per slice: 3 mm reach one slice
    assert d[13, 10, 10] and not d[14, 10, 10]


def test_soft_roi_mask_empty_roi():
    with pytest.raises(ValueError, match="ROI mask is empty"):
        SoftROIMask()(torch.ones(1, 8, 8, 8), torch.zeros(1, 8, 8, 8))


def test_trim_rescale_top_percent():
    vals = np.zeros((1, 10, 10, 10), np.float32)
    vals[0, :, :, 1:] = np.arange(1, 901).reshape(10, 10, 9)  # 900 non-zero values 1..900
    out = TrimRescale(upper=99.0)(torch.from_numpy(vals)).numpy()
    top = np.percentile(np.arange(1, 901), 99.0)
    assert out.max() == pytest.approx(1.0) and out.min() == 0.0
    assert (out == 1.0).sum() == (np.arange(1, 901) >= top).sum()  # the top 1 % is trimmed to 1
    assert out[0, 0, 0, 1] == pytest.approx(1.0 / top)


def test_roi_floor_zeroes_tissue_below_the_roi_percentile_and_keeps_the_maximum():
    img = np.zeros((1, 10, 10, 10), np.float32)
    img[0, :, :, :5] = np.arange(1, 501).reshape(10, 10, 5)  # ROI: values 1..500
    img[0, 0, 0, 9] = 800.0  # outside the ROI, the channel's maximum
    roi = np.zeros((10, 10, 10), bool)
    roi[:, :, :5] = True
    out = ROIFloor(percentile=90.0)(torch.from_numpy(img), torch.from_numpy(roi)).numpy()
    floor = np.percentile(np.arange(1, 501), 90.0)  # 450.1
    assert out.max() == pytest.approx(800.0)
    inside = out[0][roi]
    assert (inside == 0).sum() == 450  # every ROI voxel at or below the floor
    assert inside.max() == pytest.approx((500.0 - floor) * 800.0 / (800.0 - floor))
    assert float(out[0, 0, 0, 5]) == 0.0  # outside the ROI the same floor applies


def test_roi_floor_errors():
    with pytest.raises(ValueError, match="ROI mask is empty"):
        ROIFloor()(torch.ones(1, 8, 8, 8), torch.zeros(1, 8, 8, 8))
    with pytest.raises(ValueError, match="percentile"):
        ROIFloor(percentile=100.0)


def test_gpunet_preprocessing_scale_does_not_depend_on_the_lesions_in_the_roi():
    """The bug this guards against: scaling by a percentile of the cropped ROI divided the EPVS out of the image.

    Two scans differ only by bright objects inside the ROI (3 % of it). After the config's GP-Unet preprocessing
    the tissue is 0 in both, the other voxels are identical, and only the first scan has bright voxels in the ROI.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config("configs/common.yaml")
    steps = [parser.get_parsed_content("working_grid_gpunet"), *parser.get_parsed_content("roi_crop_gpunet")]
    shape = (48, 48, 48)
    head = sphere(shape, (24, 24, 24), 22)
    base = np.where(head, 100.0, 0.0).astype(np.float32)
    base[sphere(shape, (24, 12, 24), 6)] = 250.0  # CSF outside the crop: the brightest 2 % of the scan
    roi = np.zeros(shape, np.float32)
    roi[18:30, 26:38, 20:32] = 1  # 1728 voxels of tissue at 100
    with_lesions = base.copy()
    rng = np.random.default_rng(0)
    idx = np.argwhere(roi > 0)[rng.choice(int(roi.sum()), 52, replace=False)]
    with_lesions[tuple(idx.T)] = 180.0

    def run(img):
        d = {"image": MetaTensor(torch.from_numpy(img)[None], affine=torch.eye(4)),
             "roi": MetaTensor(torch.from_numpy(roi)[None], affine=torch.eye(4))}
        for t in steps:
            d = t(d)
        return d["image"].numpy()[0], d["roi"].numpy()[0] > 0

    a, _ = run(with_lesions)
    b, _ = run(base)
    assert a.shape == b.shape == (72, 56, 48)
    assert b.max() == 0.0  # no lesions: the ROI's tissue is floored to 0 and nothing else is bright there
    assert (a > 0.1).sum() == 52  # every added object survives, nothing else does
    np.testing.assert_allclose(a[a <= 0.1], b[a <= 0.1], atol=1e-6)


def test_head_mask_finds_the_head_and_keeps_given_masks():
    from bundle.transforms import HeadMaskd

    img, brain, _, _ = _phantom(seed=3, noise=2.0)
    img = img + np.random.default_rng(1).normal(0, 3.0, SHAPE).astype(np.float32)  # background noise too
    out = HeadMaskd()({"subject": "s1", "image": MetaTensor(torch.from_numpy(img)[None])})
    m = out["mask"][0].numpy() > 0
    assert out["mask"].shape == (1, *SHAPE)
    dice = 2 * (m & brain).sum() / (m.sum() + brain.sum())
    assert dice > 0.97 and m[20, 20, 20]  # the dark "CSF" centre is a hole that gets filled
    given = torch.zeros(1, *SHAPE)
    assert HeadMaskd()({"image": torch.from_numpy(img)[None], "mask": given})["mask"] is given
    with pytest.raises(ValueError, match="s2: image is constant"):
        HeadMaskd()({"subject": "s2", "image": torch.zeros(1, 8, 8, 8)})


def test_working_grid_gives_one_array_whatever_the_storage_order():
    """The same volume stored RAS and LPS (first two axes and the affine flipped together) gives the same working
    image and affine; without reorientation (axcodes None) the LPS copy's grid differs (it is anchored at the
    other corner), which is what made detections depend on storage (issue 19)."""
    from bundle.transforms import WorkingGridd

    rng = np.random.default_rng(0)
    vol = rng.random((1, 13, 11, 7)).astype(np.float32)
    ras = np.array([[0.7, 0, 0, -10.0], [0, 0.7, 0, 4.0], [0, 0, 1.6, 2.0], [0, 0, 0, 1]])
    lps = ras.copy()
    for a in (0, 1):
        lps[:3, 3] += ras[:3, a] * (vol.shape[a + 1] - 1)
        lps[:3, a] *= -1
    flipped = np.ascontiguousarray(vol[:, ::-1, ::-1])
    out = {}
    for axcodes in ("RAS", None):
        grid = WorkingGridd(keys="image", pixdim=(1.0, 1.0, 1.0), axcodes=axcodes)
        out[axcodes] = [grid({"image": MetaTensor(torch.as_tensor(v), affine=torch.as_tensor(a))})["image"]
                        for v, a in ((vol, ras), (flipped, lps))]  # fmt: skip
    a, b = out["RAS"]
    assert np.allclose(a.affine, b.affine, atol=1e-6) and torch.allclose(a.as_tensor(), b.as_tensor(), atol=1e-6)
    a, b = out[None]
    assert not np.allclose(a.affine, b.affine, atol=1e-3)  # LPS kept: another grid
