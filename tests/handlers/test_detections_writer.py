# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The writer's ``instances`` format (GP-Unet): rows from an instance map scored by a map, counts, maps on the
map's own grid."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from bundle.handlers import DetectionsWriter


def test_instances_format_writes_rows_counts_and_maps(tmp_path):
    affine = np.array([[2.0, 0, 0, -10], [0, 2.0, 0, 5], [0, 0, 3.0, 1], [0, 0, 0, 1]])
    inst = torch.zeros(1, 8, 8, 6, dtype=torch.int32)
    inst[0, 1:3, 1, 1] = 1
    inst[0, 5, 5, 4] = 2
    heat = torch.rand(1, 8, 8, 6)
    heat[0, 2, 1, 1] = 5.0
    out = {"pred": MetaTensor(inst, affine=torch.as_tensor(affine)), "net_heatmap": MetaTensor(heat, affine=affine),
           "net_count": torch.tensor([2.3]), "pred_n_objects": 2, "pred_threshold": 0.7}  # fmt: skip
    batch = {"image": MetaTensor(torch.zeros(1, 4, 4, 4)), "subject": "s1"}  # the cropped grid: not used
    writer = DetectionsWriter(tmp_path, pred_format="instances", label="epvs", threshold=0.99)

    def step(engine, _):
        engine.state.batch = [batch]  # decollated, as after MONAI's evaluator
        return [out]

    engine = Engine(step)
    writer.attach(engine)
    engine.run([0], max_epochs=1)
    rows = list(csv.DictReader((tmp_path / "detections.csv").open()))
    assert [r["lesion_id"] for r in rows] == ["1", "2"] and {r["label"] for r in rows} == {"epvs"}
    assert float(rows[0]["score"]) == pytest.approx(5.0)  # the map's maximum over the object, not thresholded
    assert float(rows[1]["score"]) == pytest.approx(float(heat[0, 5, 5, 4]))
    assert [float(rows[0][c]) for c in "ijk"] == [1.5, 1.0, 1.0]
    assert [float(rows[0][c]) for c in "xyz"] == [-7.0, 7.0, 4.0]  # the map's affine
    counts = list(csv.DictReader((tmp_path / "count_predictions.csv").open()))
    assert counts == [
        {"subject": "s1", "predicted_count": "2.3", "count_used": "2", "detected": "2", "threshold": "0.7"}
    ]
    for name in ("s1_objects.nii.gz", "s1_heatmap.nii.gz"):
        img = nib.load(tmp_path / "maps" / name)
        assert img.shape == (8, 8, 6) and np.allclose(img.affine, affine)
    assert np.array_equal(np.asarray(nib.load(tmp_path / "maps" / "s1_objects.nii.gz").dataobj), inst[0].numpy())
