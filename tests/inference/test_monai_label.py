# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""MONAI Label's detection hook: boxes in LPS millimetres from the detector's table, the operating point, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, decollate_batch

from bundle.inference import SlicerBoxDetector


class _FakeDetector(torch.nn.Module):
    """Returns a fixed table (i, j, k, score, stage-1 score, voxels) and records the mask it was given."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.as_tensor(table, dtype=torch.float32)

    def forward(self, image, mask=None):
        self.mask = mask
        return {"table": self.table[None], "prob": torch.zeros_like(image)}


def _image(affine):
    vol = torch.zeros(1, 1, 20, 20, 10)
    vol[:, :, 4:16, 4:16, 2:8] = 1.0  # a "head": Otsu separates it from the background
    return MetaTensor(vol, affine=torch.as_tensor(affine, dtype=torch.float64))


def test_boxes_are_lps_millimetres_at_the_operating_point():
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    affine[:3, 3] = (10.0, -20.0, 5.0)
    table = [
        [8, 6, 4, 0.9, 0.7, 40],  # kept: 40 voxels of 0.5 mm3 -> 20 mm3 -> diameter 3.37 mm
        [2, 2, 2, 0.3, 0.6, 10],  # below the threshold
        [5, 5, 5, 0.5, 0.5, 1],  # kept: at the threshold; 0.5 mm3 -> 0.98 mm, raised to the 2 mm minimum
        [np.nan] * 6,  # batch padding
    ]
    det = SlicerBoxDetector(_FakeDetector(table), threshold=0.5)
    out = det.eval()(_image(affine), use_inferer=True)
    one = decollate_batch(out)[0]
    assert one["box"].shape == (2, 6) and one["label"].tolist() == [1, 1]
    np.testing.assert_allclose(one["score"].numpy(), [0.9, 0.5], rtol=1e-6)
    ras = np.array([10 + 0.5 * 8, -20 + 0.5 * 6, 5 + 2.0 * 4])
    np.testing.assert_allclose(one["box"][0, :3].numpy(), ras * [-1, -1, 1], rtol=1e-6)  # RAS -> LPS
    np.testing.assert_allclose(one["box"][0, 3:].numpy(), [np.cbrt(6 * 20 / np.pi)] * 3, rtol=1e-5)
    np.testing.assert_allclose(one["box"][1, 3:].numpy(), [2.0] * 3)
    # the brain region given to the detector: the Otsu head mask of the image
    mask = det.network.mask
    assert mask.shape == (1, 1, 20, 20, 10) and int(mask.sum()) == 12 * 12 * 6


def test_no_detection_and_errors():
    out = SlicerBoxDetector(_FakeDetector(np.zeros((0, 6))))(_image(np.eye(4)))
    assert out["box"].shape == (1, 0, 6) and out["label"].shape == (1, 0)
    with pytest.raises(ValueError, match="no network"):
        SlicerBoxDetector()(_image(np.eye(4)))
    with pytest.raises(ValueError, match="expected a batch"):
        SlicerBoxDetector(_FakeDetector(np.zeros((0, 6))))(torch.zeros(1, 8, 8, 8))
    with pytest.raises(ValueError, match="no affine"):
        SlicerBoxDetector(_FakeDetector(np.zeros((0, 6))))(torch.zeros(1, 1, 8, 8, 8))
