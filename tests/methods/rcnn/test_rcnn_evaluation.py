# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The multirater RCNN paper's figures on a hand-made scan: inclusion rule, operating point, class accuracy where
raters agree, box overlap by agreement and the rater heads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_nii

from bundle.inference import write_detections
from bundle.methods.rcnn import box_iou, multirater_figures


def _row(lid, i, j, k, score, label, side, heads):
    row = {"subject": "s1", "lesion_id": lid, "label": label, "score": score, "x": i, "y": j, "z": k}
    row.update(i=i, j=j, k=k, diameter_mm=side, volume_mm3=1.0)
    return {**row, **{f"rater{n + 1}": a for n, a in enumerate(heads)}}


@pytest.fixture()
def case(tmp_path):
    label = np.zeros((30, 30, 30), np.int16)
    label[5, 5, 3:9] = 1  # A: EPVS tube, 6 voxels, all raters say epvs
    label[15, 15, 15:18] = 2  # B: 3 voxels, below the inclusion rule
    label[20:23, 20:23, 20:23] = 3  # C: lacune, 27 voxels, 4 say lacune and 2 nothing
    records = [
        {"id": 1, "class": "epvs", "raters": ["epvs"] * 6},
        {"id": 2, "class": "epvs", "raters": ["epvs"] * 6},
        {"id": 3, "class": "lacune", "raters": ["lacune"] * 4 + ["nothing"] * 2},
    ]
    (tmp_path / "s1_lesions.json").write_text(json.dumps(records))
    entry = {"subject": "s1", "image": [write_nii(tmp_path / "t1.nii.gz", label * 1.0)], "lesions": "s1_lesions.json"}
    entry["label"] = write_nii(tmp_path / "lab.nii.gz", label, dtype=np.int16)
    (tmp_path / "d.json").write_text(json.dumps({"modalities": ["t1"], "testing": [entry]}))
    rows = [
        _row(1, 5, 5, 5.5, 0.9, "epvs", 5.0, ["epvs"] * 5 + ["nothing"]),  # A found; box 5 x 5 x 5 around it
        _row(2, 15, 15, 16, 0.8, "epvs", 3.0, ["epvs"] * 6),  # on B: neither hit nor false positive
        _row(3, 21, 21, 21, 0.7, "epvs", 3.0, ["lacune"] * 4 + ["epvs"] * 2),  # C found, wrong class
        _row(4, 2, 28, 2, 0.6, "lacune", 3.0, ["nothing"] * 6),  # a false positive
    ]
    write_detections(rows, tmp_path / "det.csv", extra=[f"rater{n}" for n in range(1, 7)])
    return tmp_path


def test_paper_figures(case):
    out = multirater_figures(str(case / "d.json"), str(case / "det.csv"), "testing", str(case), max_fp=10)
    assert out["references"] == 2  # A and C; B has 3 voxels
    assert out["sensitivity"] == 1.0 and out["fp_per_scan"] == 1.0 and out["threshold"] == pytest.approx(0.6)
    sizes = {b["voxels"]: (b["found"], b["n"]) for b in out["sensitivity_by_size"]}
    assert sizes == {"5-10": (1, 1), "10-20": (0, 0), "20-50": (1, 1), ">=50": (0, 0)}
    acc = out["class_accuracy"]
    assert acc["n"] == 2 and acc["accuracy"] == 0.5
    assert acc["per_class"] == {"lacune": {"n": 1, "correct": 0}, "epvs": {"n": 1, "correct": 1}}
    ov = out["overlap_vs_agreement"]
    # A: object box i 5, j 5, k 3..8 (1 x 1 x 6); predicted cube of side 5 at (5, 5, 5.5): 5 x 5 x 5
    want_a = (1 * 1 * 5) / (1 * 1 * 6 + 125 - 5)
    assert ov["all_agree"] == {"n": 1, "median_iou": pytest.approx(want_a)}
    assert ov["some_nothing"] == {"n": 1, "median_iou": pytest.approx(1.0)}  # C: 3^3 box on a 3^3 object
    assert out["rater_head_accuracy"] == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.5, 0.0])
    assert json.loads((case / "multirater.json").read_text())["references"] == 2
    strict = multirater_figures(str(case / "d.json"), str(case / "det.csv"), "testing", max_fp=0.0)
    assert strict["fp_per_scan"] == 0.0 and strict["sensitivity"] == 1.0 and strict["threshold"] == pytest.approx(0.7)


def test_box_iou():
    assert box_iou([0, 0, 0], [2, 2, 2], [0, 0, 0], [2, 2, 2]) == 1.0
    assert box_iou([0, 0, 0], [2, 2, 2], [1, 0, 0], [3, 2, 2]) == pytest.approx(4 / 12)
    assert box_iou([0, 0, 0], [1, 1, 1], [5, 5, 5], [6, 6, 6]) == 0.0


def test_rows_found_on_the_working_grid_are_reported_on_the_input_grid():
    """A detection at world (10, 20, 30) mm with a 6 mm box, found on a 1 mm grid, read on a 2 mm input grid with
    another origin: the same world position and size; i, j, k are the input grid's voxels; the box map is drawn
    there."""
    from bundle.methods.rcnn import rcnn_columns
    from bundle.methods.rcnn.detections import box_map, rcnn_rows

    columns = rcnn_columns(6)
    work = np.diag([1.0, 1.0, 1.0, 1.0])
    work[:3, 3] = [-5.0, 0.0, 4.0]
    inp = np.diag([2.0, 2.0, 2.0, 1.0])
    inp[:3, 3] = [-9.0, -2.0, 0.0]
    row = dict.fromkeys(columns, 0.0)
    row.update(i=15.0, j=20.0, k=26.0, score=0.9, scale=6.0, p_nothing=0.1, p_lacune=0.7, p_epvs=0.2)
    table = np.array([[row[c] for c in columns]])
    (out,) = rcnn_rows("s", table, columns, work, out_affine=inp)
    assert (out["x"], out["y"], out["z"]) == (10.0, 20.0, 30.0)
    assert (out["i"], out["j"], out["k"]) == (9.5, 11.0, 15.0)
    assert out["diameter_mm"] == pytest.approx(6.0) and out["label"] == "lacune"
    (same,) = rcnn_rows("s", table, columns, work)  # no input grid given: the working grid's voxels
    assert (same["i"], same["x"]) == (15.0, 10.0) and same["diameter_mm"] == pytest.approx(6.0)
    boxes = box_map([out], (20, 20, 20), (2.0, 2.0, 2.0))
    assert boxes[10, 11, 15] == 1 and boxes.sum() == 27  # side 6 mm = 3 voxels of 2 mm


def test_rows_are_reported_on_a_flipped_and_permuted_input_grid():
    """An input stored LPS with axes permuted (as a sagittal scan): the row keeps its world position and size;
    its i, j, k are that grid's voxels."""
    from bundle.methods.rcnn import rcnn_columns
    from bundle.methods.rcnn.detections import rcnn_rows

    columns = rcnn_columns(6)
    work = np.eye(4)
    work[:3, 3] = [-5.0, 0.0, 4.0]
    inp = np.array([[0.0, 0.0, -2.0, 40.0], [-1.0, 0.0, 0.0, 30.0], [0.0, 1.5, 0.0, -10.0], [0, 0, 0, 1]])
    row = dict.fromkeys(columns, 0.0)
    row.update(i=15.0, j=20.0, k=26.0, score=0.9, scale=4.0, p_nothing=0.1, p_lacune=0.2, p_epvs=0.7)
    (out,) = rcnn_rows("s", np.array([[row[c] for c in columns]]), columns, work, out_affine=inp)
    assert (out["x"], out["y"], out["z"]) == (10.0, 20.0, 30.0)
    np.testing.assert_allclose(inp[:3, :3] @ [out["i"], out["j"], out["k"]] + inp[:3, 3], [10.0, 20.0, 30.0], atol=0.01)
    assert out["diameter_mm"] == pytest.approx(4.0) and out["label"] == "epvs"
