# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""GP-Unet post-processing: the map that is thresholded (heatmap, intensities, blend) and count-matched objects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from bundle.methods.gpunet import BlendWithImaged, CountMatchedObjectsd, predicted_count


def _data():
    heat = torch.zeros(1, 10, 10, 10)
    heat[0, 2, 2, 2], heat[0, 7, 7, 7], heat[0, 2, 7, 2] = 10.0, 8.0, 6.0
    image = torch.zeros(1, 10, 10, 10)
    image[0, 7, 2, 7] = 1.0  # the brightest voxel is elsewhere
    roi = torch.ones(1, 10, 10, 10)
    roi[0, :, :, 9] = 0
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    return {"heat": MetaTensor(heat, affine=affine), "image": image, "roi": roi, "count": torch.tensor([2.4])}


def test_blend_weights():
    d = _data()
    same = BlendWithImaged("heat", weight=0.0)(d)
    assert torch.equal(same["heat"], d["heat"])  # (e): the heatmap as it is
    only = BlendWithImaged("heat", weight=1.0)(d)["heat"]  # (a): the intensities, scaled in the ROI
    assert float(only[0, 7, 2, 7]) == 1.0 and float(only.sum()) == 1.0
    half = BlendWithImaged("heat", weight=0.5)(d)["heat"]  # (f)
    assert float(half[0, 2, 2, 2]) == pytest.approx(0.5) and float(half[0, 7, 2, 7]) == pytest.approx(0.5)
    assert float(half[0, 7, 7, 7]) == pytest.approx(0.4)
    assert isinstance(half, MetaTensor) and torch.equal(half.affine, d["heat"].affine)
    with pytest.raises(ValueError, match="weight"):
        BlendWithImaged("heat", weight=1.5)


def test_count_matched_objects_with_multiplier():
    d = _data()
    out = CountMatchedObjectsd("heat", count_key="count", mask_key="roi", output_key="pred")(d)
    assert out["pred_n_objects"] == 2 and int(out["pred"].max()) == 2  # round(2.4)
    assert int(out["pred"][0, 2, 2, 2]) == 1 and int(out["pred"][0, 7, 7, 7]) == 2
    assert out["pred_threshold"] == pytest.approx(8.0)
    assert isinstance(out["pred"], MetaTensor) and torch.equal(out["pred"].affine, d["heat"].affine)
    more = CountMatchedObjectsd("heat", mask_key="roi", output_key="pred", multiplier=1.25)(d)
    assert more["pred_n_objects"] == 3 and int(more["pred"].max()) == 3
    none = CountMatchedObjectsd("heat", mask_key="roi", output_key="pred", multiplier=0.0)(d)
    assert none["pred_n_objects"] == 0 and int(none["pred"].max()) == 0
    # blobs = basins: the same peaks here (single voxels on a flat floor), each object its peak's voxel
    basins = CountMatchedObjectsd("heat", mask_key="roi", output_key="pred", multiplier=1.25, blobs="basins")(d)
    pred = basins["pred"][0]
    assert int(pred.max()) == 3 and basins["pred_threshold"] == pytest.approx(6.0)
    assert [int(pred[2, 2, 2]), int(pred[7, 7, 7]), int(pred[2, 7, 2])] == [1, 2, 3] and int((pred > 0).sum()) == 3
    with pytest.raises(ValueError, match="blobs must be one of"):
        CountMatchedObjectsd("heat", blobs="peaks")


def test_predicted_count_rounding_and_errors():
    assert predicted_count(torch.tensor([[2.5]])) == 2  # round half to even
    assert predicted_count(-3.0) == 0
    assert predicted_count(np.float32(4.6), 0.5) == 2
    with pytest.raises(ValueError, match="not finite"):
        predicted_count(float("nan"))
