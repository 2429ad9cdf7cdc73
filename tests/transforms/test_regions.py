# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The regions network's input and output geometry (no trained weights: a stub network labels bright voxels), the
random contrast pick, and the working grid's inverse that brings GP-Unet's maps back to the input grid."""

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd

from bundle.transforms import BrainRegionsd, RandChannelPickd, WorkingGridd, regions_input

# LPS storage, 0.9 x 0.9 x 2.6 mm voxels, axes permuted and the head tilted: nothing like the 2 mm RAS grid
_ANGLE = np.deg2rad(12.0)
_ROT = np.array([[np.cos(_ANGLE), -np.sin(_ANGLE), 0], [np.sin(_ANGLE), np.cos(_ANGLE), 0], [0, 0, 1]])
AFFINE = np.eye(4)
AFFINE[:3, :3] = _ROT @ np.array([[0, -0.9, 0], [-0.9, 0, 0], [0, 0, 2.6]])
AFFINE[:3, 3] = [40.0, 30.0, -20.0]
SHAPE = (90, 80, 30)


class BrightIsRegion(torch.nn.Module):
    """Logits of 6 classes: class 1 where the (scaled) input is above 0.5, background elsewhere."""

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 6, *x.shape[2:])
        logits[:, 1] = 20.0 * (x[:, 0] - 0.5)
        return logits


def _ball_image(channels=1, ball_channel=0):
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1)
    world = ijk @ AFFINE[:3, :3].T + AFFINE[:3, 3]
    centre = world[62, 24, 17]  # off-centre, and an ellipsoid: a flipped or shifted grid would miss it
    ball = np.linalg.norm((world - centre) / np.array([14.0, 8.0, 10.0]), axis=-1) < 1.0
    img = np.full((channels, *SHAPE), 100.0, np.float32)
    img[ball_channel][ball] = 300.0
    img[ball_channel][15:18, 60:63, 5:7] = 300.0  # a speck, far smaller than the region: dropped as an island
    return MetaTensor(torch.from_numpy(img), affine=torch.from_numpy(AFFINE)), ball


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_regions_come_back_on_the_image_grid():
    image, ball = _ball_image()
    x = regions_input(image)
    assert np.allclose(np.linalg.norm(x.affine.numpy()[:3, :3], axis=0), 2.0)  # 2 mm voxels
    assert nib.aff2axcodes(x.affine.numpy()) == ("R", "A", "S") and x.min() >= 0 and x.max() <= 1  # RAS, scaled
    d = BrainRegionsd("image", BrightIsRegion(), None, load=False, labels=[1])({"image": image})
    roi = d["roi"]
    assert tuple(roi.shape) == (1, *SHAPE) and np.allclose(roi.affine.numpy(), AFFINE)
    found = roi[0].numpy() > 0
    assert _dice(found, ball) > 0.85 and not found[10:25, 55:70, 2:10].any()
    centroid = lambda m: AFFINE[:3, :3] @ np.argwhere(m).mean(0) + AFFINE[:3, 3]  # noqa: E731
    assert np.linalg.norm(centroid(found) - centroid(ball)) < 1.0  # mm
    assert d["image"] is image and len(image.applied_operations) == 0  # the image itself is untouched


def test_regions_read_the_named_channel_and_labels():
    image, ball = _ball_image(channels=2, ball_channel=1)
    found = BrainRegionsd("image", BrightIsRegion(), None, load=False, labels=[1], channel=1)({"image": image})["roi"]
    assert _dice(found[0].numpy() > 0, ball) > 0.85
    with pytest.raises(ValueError, match=r"sub-x: no region \[1\] found in"):  # channel 0: uniform tissue
        flat = BrainRegionsd("image", BrightIsRegion(), None, load=False, labels=[1], channel=0)
        flat({"image": image, "subject": "sub-x"})
    with pytest.raises(ValueError, match="no region"):
        BrainRegionsd("image", BrightIsRegion(), None, load=False, labels=[2, 3], channel=1)({"image": image})
    for missing in ("null", None, "/no/such/weights.pt"):  # never random weights in a config
        with pytest.raises(FileNotFoundError, match="regions network weights"):
            BrainRegionsd("image", BrightIsRegion(), missing)


def test_channel_pick_skips_absent_contrasts():
    img = MetaTensor(torch.stack([torch.zeros(4, 4, 4), torch.ones(4, 4, 4), 2 * torch.ones(4, 4, 4)]))
    pick = RandChannelPickd(keys="image")
    pick.set_random_state(0)
    seen = [float(pick({"image": img})["image"].max()) for _ in range(40)]
    assert set(seen) == {1.0, 2.0}


def test_working_grid_is_inverted_onto_the_input_grid():
    """GP-Unet's heatmap is made on the 1 mm RAS grid and written on the input's (MONAI Invertd)."""
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1).astype(np.float32)
    smooth = np.sin(ijk[..., 0] / 9.0) + np.cos(ijk[..., 1] / 7.0) + ijk[..., 2] / 30.0
    image = MetaTensor(torch.from_numpy(smooth[None].astype(np.float32)), affine=torch.from_numpy(AFFINE))
    chain = Compose([WorkingGridd(keys=["image"], pixdim=[1.0, 1.0, 1.0], mode=["bilinear"])])
    d = chain({"image": image})
    assert np.allclose(np.linalg.norm(d["image"].affine.numpy()[:3, :3], axis=0), 1.0)
    d["pred"] = d["image"] * 2.0
    back = Invertd(keys="pred", transform=chain, orig_keys="image", nearest_interp=False)(d)["pred"]
    assert tuple(back.shape) == (1, *SHAPE) and np.allclose(back.affine.numpy(), AFFINE)
    inner = (slice(None), slice(5, -5), slice(5, -5), slice(2, -2))
    assert np.corrcoef(back[inner].numpy().ravel(), 2 * smooth[None][inner].ravel())[0, 1] > 0.99
