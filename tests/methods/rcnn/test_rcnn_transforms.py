# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Targets and sampling maps of the multirater RCNN: signed distance, sampling weights, object table, proposal
targets in a patch's own frame (through MONAI's crop and flip)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import sphere
from monai.data import MetaTensor
from monai.transforms import RandFlipd, SpatialCropd

from bundle.methods.rcnn import RCNN_CHOICES, RPNTargetsd, object_table, rpn_targets, sampling_weights, signed_distance


def test_signed_distance_has_its_maximum_at_a_ball_centre_and_is_clipped():
    label = sphere((21, 21, 21), (10, 10, 10), 4).astype(np.int32)
    label[2, 2, 2] = 2  # a one-voxel object
    d = signed_distance(label, clip=3.0)
    assert d.max() == 3.0 and d.min() == -3.0
    assert d[10, 10, 10] == 3.0 and d[10, 10, 6] == 1.0 and d[10, 10, 5] == -1.0
    assert d[2, 2, 2] == 1.0 and d[2, 2, 3] == -1.0 and d[3, 3, 3] == pytest.approx(-np.sqrt(3))
    unclipped = signed_distance(label, clip=100.0)
    assert np.unravel_index(np.argmax(unclipped), label.shape) == (10, 10, 10)
    assert np.all(signed_distance(np.zeros((5, 5, 5)), 3.0) == -3.0)


def test_sampling_weights_favour_lacunes_by_the_ratio_and_keep_the_floor():
    label = np.zeros((40, 40, 40), np.int32)
    label[10, 10, 10] = 1  # epvs
    label[30, 30, 30] = 2  # lacune
    w = sampling_weights(label, {1: "epvs", 2: "lacune"}, ratio=0.01, sigma=1.0, floor=1e-5)
    assert w.max() == pytest.approx(1.0) and w.min() >= 1e-5
    assert np.unravel_index(np.argmax(w), w.shape) == (30, 30, 30)
    assert w[10, 10, 10] < 0.2  # near the EPVS: its 1/100 share plus the lacune's far tail
    only_epvs = sampling_weights(label, {1: "epvs", 2: "epvs"}, ratio=0.01, sigma=1.0)
    assert only_epvs.max() == pytest.approx(1.0)  # scaled per scan: scans without lacunes still sample EPVS
    share = []
    for power in (1.0, 3.0):  # sampling mass within 8 voxels of an object: the steeper map keeps it near them
        wp = sampling_weights(label, {1: "epvs", 2: "lacune"}, sigma=1.0, power=power)
        near = np.zeros(label.shape, bool)
        near[2:19, 2:19, 2:19] = near[22:39, 22:39, 22:39] = True
        share.append(wp[near].sum() / wp.sum())
    assert share[1] > 0.7 and share[0] < 0.3  # measured 0.72 and 0.24
    empty = sampling_weights(np.zeros((8, 8, 8), np.int32), {}, floor=1e-5)
    assert np.all(empty == 1e-5)  # uniform


def _records():
    return [
        {"id": 1, "class": "epvs", "raters": ["epvs"] * 4 + ["undecided", "nothing"]},
        {"id": 2, "class": "lacune", "raters": ["lacune"] * 5 + ["epvs"]},
    ]


def test_object_table_rows():
    label = np.zeros((20, 20, 20), np.int32)
    label[4, 5, 3:9] = 1  # a tube of 6 voxels along k
    label[12:15, 12:15, 12:15] = 2
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10, 0, 5]
    t = object_table(label, _records(), affine, n_raters=6, subject="s")
    assert t.shape == (2, 6 + 4 + 6)
    assert t[0, :3].tolist() == pytest.approx([2 * 4 - 10, 2 * 5, 2 * 5.5 + 5])  # world centre of mass
    assert t[0, 3] == 6 and t[0, 4] == 6 and t[0, 5] == RCNN_CHOICES.index("epvs")
    assert t[0, 6:10].tolist() == pytest.approx([1 / 6, 0, 4 / 6, 1 / 6])
    assert t[0, 10:].tolist() == [2, 2, 2, 2, 3, 0]
    assert t[1, 3] == 3 and t[1, 4] == 27 and t[1, 6:10].tolist() == pytest.approx([0, 5 / 6, 1 / 6, 0])
    with pytest.raises(ValueError, match="s: lesion 1 has 6 rater answers, the config expects 3"):
        object_table(label, _records(), affine, n_raters=3, subject="s")
    with pytest.raises(ValueError, match="s: lesion 1 has class 'cmb'"):
        object_table(label, [{"id": 1, "class": "cmb"}], affine, subject="s")
    assert object_table(np.zeros((4, 4, 4)), [], affine).shape == (0, 16)


def test_rpn_targets_point_every_positive_voxel_at_its_centre():
    objects = np.array([[10.2, 8.0, 9.6, 5.0], [3.0, 3.0, 3.0, 2.0], [50.0, 50.0, 50.0, 4.0]], np.float32)
    target, boxes = rpn_targets(objects, np.eye(4), (16, 16, 16), radius=2.0, max_boxes=4)
    pos = target[0] > 0
    idx = np.argwhere(pos)
    moved = idx + target[1:4][:, pos].T
    centres = objects[:2, :3]
    nearest = np.linalg.norm(idx[:, None] - centres[None], axis=2).min(1)
    assert nearest.max() <= 2.0
    assert np.allclose(np.min(np.linalg.norm(moved[:, None] - centres[None], axis=2), 1), 0, atol=1e-5)
    assert set(np.unique(target[4][pos])) == {5.0, 2.0}
    assert np.all(target[1:][:, ~pos] == 0)
    grid = np.argwhere(np.ones((16, 16, 16), bool))
    near = np.linalg.norm(grid[:, None] - centres[None], axis=2).min(1) <= 2.0
    assert int(pos.sum()) == int(near.sum())  # every voxel within 2 voxels of a centre, and no other
    assert np.isfinite(boxes[:2, 0]).all() and np.isnan(boxes[2:]).all()  # the far object is not in the patch


def test_rpn_targets_follow_monai_crop_and_flip():
    vol = np.zeros((1, 30, 30, 30), np.float32)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    objects = np.array([[12.0, 14.0, 2 * 17.0, 3.0]], np.float32)  # voxel (12, 14, 17)
    data = {"image": MetaTensor(torch.as_tensor(vol), affine=torch.as_tensor(affine)), "objects": objects}
    data = SpatialCropd("image", roi_start=(5, 5, 5), roi_end=(25, 25, 25))(data)
    flipped = RandFlipd("image", prob=1.0, spatial_axis=0)(data)
    out = RPNTargetsd("image", radius=1.0)(flipped)
    target, boxes = out["rpn_target"].numpy(), out["boxes"].numpy()
    want = np.array([20 - 1 - (12 - 5), 14 - 5, 17 - 5], float)  # cropped, then i flipped in a 20-voxel patch
    assert boxes[0, :3].tolist() == pytest.approx(want.tolist(), abs=1e-4)
    assert target[0][tuple(want.astype(int))] == 1.0
    assert target[1:4][(slice(None), *want.astype(int))].tolist() == pytest.approx([0, 0, 0], abs=1e-4)
