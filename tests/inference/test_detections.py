# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The detections table contract: columns, world coordinates from the affine, round trip, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from bundle.inference import COLUMNS, DetectionTableError, detection_rows, read_detections, write_detections
from bundle.metrics import objects_from_instances


def test_rows_columns_and_world_coordinates(tmp_path):
    inst = np.zeros((10, 10, 10), np.int64)
    inst[2, 3, 4] = 1
    inst[6:8, 6, 6] = 2
    objs = objects_from_instances(inst, spacing=(0.5, 0.5, 2.0))
    affine = np.array([[-0.5, 0, 0, 20.0], [0, 0.5, 0, -10.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]])
    rows = detection_rows("sub-1", objs, affine, np.array([[0.9, 0.1], [0.2, 0.8]]), ["cmb", "mimic"])
    assert [r["lesion_id"] for r in rows] == [1, 2]
    assert (rows[0]["x"], rows[0]["y"], rows[0]["z"]) == (19.0, -8.5, 13.0)  # affine @ (2, 3, 4)
    assert (rows[1]["i"], rows[1]["j"], rows[1]["k"]) == (6.5, 6.0, 6.0)
    assert rows[1]["volume_mm3"] == 1.0 and rows[1]["p_mimic"] == 0.8
    path = write_detections(rows, tmp_path / "detections.csv", ["cmb", "mimic"])
    header = path.read_text().splitlines()[0].split(",")
    assert header == [*COLUMNS, "p_cmb", "p_mimic"]
    back = read_detections(path)["sub-1"]
    assert back[0]["x"] == 19.0 and back[1]["score"] == 1.0 and back[1]["subject"] == "sub-1"


def test_empty_table_keeps_header(tmp_path):
    path = write_detections([], tmp_path / "d.csv")
    assert path.read_text().strip() == ",".join(COLUMNS)
    assert read_detections(path) == {}


def test_bad_tables(tmp_path):
    (tmp_path / "a.csv").write_text("subject,i,j\nsub-1,1,2\n")
    with pytest.raises(DetectionTableError, match=r"a\.csv lacks the columns \['score', 'k'\]"):
        read_detections(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("subject,score,i,j,k\nsub-1,high,1,2,3\n")
    with pytest.raises(DetectionTableError, match=r"b\.csv line 2: column score is not a number: 'high'"):
        read_detections(tmp_path / "b.csv")
    with pytest.raises(FileNotFoundError, match="detections table .*c.csv does not exist"):
        read_detections(tmp_path / "c.csv")


def test_objects_from_detector_table_drops_padding_and_low_scores():
    import torch

    from bundle.inference import TABLE_COLUMNS, objects_from_detector_table

    nan = float("nan")
    table = torch.tensor([[1, 2, 3, 0.9, 0.5, 4], [5, 6, 7, 0.3, 0.8, 2], [nan] * 6])
    assert len(TABLE_COLUMNS) == table.shape[1]
    objs = objects_from_detector_table(table, (0.5, 0.5, 2.0), label="cmb")
    assert objs.centres.tolist() == [[1, 2, 3], [5, 6, 7]] and objs.scores.tolist() == pytest.approx([0.9, 0.3])
    assert objs.sizes.tolist() == [4, 2] and list(objs.labels) == ["cmb", "cmb"] and objs.instance is None
    stage1 = objects_from_detector_table(table, (1, 1, 1), score_column=4, min_score=0.6)
    assert stage1.centres.tolist() == [[5, 6, 7]] and stage1.scores.tolist() == pytest.approx([0.8])


def test_rcnn_rows_carry_class_probabilities_and_rater_answers():
    import torch

    from bundle.handlers.detections_writer import box_map
    from bundle.inference import rcnn_rows
    from bundle.networks import rcnn_columns

    cols = rcnn_columns(2)
    table = torch.full((3, len(cols)), float("nan"))
    table[0] = torch.tensor([4.0, 5, 6, 0.8, 0.2, 0.5, 0.2, 0.1, 3.0, 0.9, 1, 3])
    table[1] = torch.tensor([10.0, 10, 10, 0.3, 0.7, 0.1, 0.15, 0.05, 1.0, 0.4, 0, 2])
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    rows = rcnn_rows("s", table, cols, affine)  # the NaN row is padding
    assert len(rows) == 2
    r = rows[0]
    assert r["label"] == "lacune" and r["score"] == pytest.approx(0.8) and (r["x"], r["y"], r["z"]) == (8.0, 10.0, 12.0)
    assert (r["p_nothing"], r["p_lacune"], r["p_epvs"], r["p_undecided"]) == pytest.approx((0.2, 0.5, 0.2, 0.1))
    assert (r["rater1"], r["rater2"]) == ("lacune", "undecided")
    assert r["diameter_mm"] == pytest.approx(6.0)  # 3 voxels of 2 mm
    assert rows[1]["label"] == "epvs" and rows[1]["rater1"] == "nothing"
    assert [x["lesion_id"] for x in rcnn_rows("s", table, cols, affine, min_score=0.5)] == [1]
    boxes = box_map(rows, (12, 12, 12), (2.0, 2.0, 2.0))
    assert np.argwhere(boxes == 1).min(0).tolist() == [3, 4, 5] and np.argwhere(boxes == 1).max(0).tolist() == [5, 6, 7]
    assert np.argwhere(boxes == 2).tolist() == [[10, 10, 10]]
