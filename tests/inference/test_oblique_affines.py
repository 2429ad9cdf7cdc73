# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""World coordinates through oblique affines (rotation about two axes, shear, anisotropic voxels; RAS and LPS) in
every file that reports them: detections.csv rows (on the input grid and from a working grid), mined mimics, MONAI
Label boxes. Expected values are written out element by element, so a transposed rotation or a dropped term fails.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, decollate_batch

from bundle.inference import SlicerBoxDetector, detection_rows, input_grid_rows
from bundle.methods.twostage import write_mimics
from bundle.metrics import objects_from_instances


def _oblique(lps: bool) -> np.ndarray:
    a, b = np.deg2rad(30.0), np.deg2rad(20.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    shear = np.array([[1, 0.15, 0], [0, 1, 0.1], [0, 0, 1]])
    m = rz @ rx @ shear @ np.diag([0.5, 0.7, 2.0])
    if lps:
        m = np.diag([-1.0, -1.0, 1.0]) @ m
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = m, (12.0, -30.0, 41.0)
    return out


def _world(affine, v):
    """Voxel -> world, element by element (no matrix helper shared with the code under test)."""
    return [sum(affine[r][c] * v[c] for c in range(3)) + affine[r][3] for r in range(3)]


AFFINES = pytest.mark.parametrize("lps", [False, True], ids=["ras", "lps"])


@AFFINES
def test_detection_rows_world_coordinates(lps):
    affine = _oblique(lps)
    inst = np.zeros((12, 12, 8), np.int64)
    inst[2, 9, 5] = 1
    inst[7:9, 3, 1] = 2
    rows = detection_rows("s", objects_from_instances(inst, (0.5, 0.7, 2.0)), affine)
    for row, v in zip(rows, ([2, 9, 5], [7.5, 3, 1])):
        assert [row["i"], row["j"], row["k"]] == v
        np.testing.assert_allclose([row["x"], row["y"], row["z"]], _world(affine, v), atol=1e-3)


@AFFINES
def test_rows_from_a_working_grid_are_reported_on_the_oblique_input_grid(lps):
    """The detector runs on a resampled working grid; rows give input voxels and the same world point."""
    in_affine = _oblique(lps)
    work = in_affine.copy()
    work[:3, :3] = in_affine[:3, :3] @ np.diag([2.0, 1 / 0.7, 0.5])  # 1 mm voxels, same orientation
    work[:3, 3] += (3.0, -2.0, 1.5)
    image = MetaTensor(torch.zeros(1, 20, 20, 20), affine=torch.as_tensor(work),
                       meta={"original_affine": in_affine, "spatial_shape": (40, 28, 10)})  # fmt: skip
    table = torch.tensor([[4.0, 11.0, 7.0, 0.9, 0.8, 3.0], [10.0, 2.0, 3.0, 0.6, 0.6, 1.0]])
    rows, got_affine, shape = input_grid_rows("s", table, image, label="cmb")
    assert np.array_equal(got_affine, in_affine) and shape == (40, 28, 10) and len(rows) == 2
    for row, c in zip(rows, table[:, :3].tolist()):
        world = _world(work, c)
        np.testing.assert_allclose([row["x"], row["y"], row["z"]], world, atol=1e-3)
        np.testing.assert_allclose(_world(in_affine, [row["i"], row["j"], row["k"]]), world, atol=2e-3)


@AFFINES
def test_mined_mimics_world_coordinates(tmp_path, lps):
    affine = _oblique(lps)
    voxels = np.array([[3, 14, 2], [20, 1, 7]])
    write_mimics(tmp_path / "m.csv", "s", voxels, affine, [0.4, 0.2], fold=1)
    with open(tmp_path / "m.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row, v in zip(rows, voxels.tolist()):
        assert [int(row[a]) for a in "ijk"] == v
        np.testing.assert_allclose([float(row[a]) for a in "xyz"], _world(affine, v), atol=1e-3)


class _Fixed(torch.nn.Module):
    def __init__(self, table):
        super().__init__()
        self.table = torch.as_tensor(table, dtype=torch.float32)

    def forward(self, image, mask=None):
        return {"table": self.table[None]}


@AFFINES
def test_monai_label_boxes_are_lps_of_the_oblique_world_point(lps):
    affine = _oblique(lps)
    vol = torch.zeros(1, 1, 20, 20, 10)
    vol[:, :, 4:16, 4:16, 2:8] = 1.0
    image = MetaTensor(vol, affine=torch.as_tensor(affine))
    out = SlicerBoxDetector(_Fixed([[8, 6, 4, 0.9, 0.7, 40]]), threshold=0.5).eval()(image)
    box = decollate_batch(out)[0]["box"][0].numpy()
    ras = _world(affine, [8, 6, 4])
    np.testing.assert_allclose(box[:3], [-ras[0], -ras[1], ras[2]], atol=1e-3)  # Slicer's LPS
