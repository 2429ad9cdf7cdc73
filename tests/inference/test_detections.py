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

    from bundle.methods.rcnn import box_map, rcnn_columns, rcnn_rows

    cols = rcnn_columns(2)
    table = torch.full((3, len(cols)), float("nan"))
    heads = [0.1, 0.6, 0.2, 0.1, 0.05, 0.05, 0.3, 0.6]  # rater 1's four answer probabilities, then rater 2's
    table[0] = torch.tensor([4.0, 5, 6, 0.8, 0.2, 0.5, 0.2, 0.1, 3.0, 0.9, 1, 3, *heads])
    table[1] = torch.tensor([10.0, 10, 10, 0.3, 0.7, 0.1, 0.15, 0.05, 1.0, 0.4, 0, 2, *heads])
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    rows = rcnn_rows("s", table, cols, affine)  # the NaN row is padding
    assert len(rows) == 2
    r = rows[0]
    assert r["label"] == "lacune" and r["score"] == pytest.approx(0.8) and (r["x"], r["y"], r["z"]) == (8.0, 10.0, 12.0)
    assert (r["p_nothing"], r["p_lacune"], r["p_epvs"], r["p_undecided"]) == pytest.approx((0.2, 0.5, 0.2, 0.1))
    assert (r["rater1"], r["rater2"]) == ("lacune", "undecided")
    assert [r[f"rater1_p_{a}"] for a in ("nothing", "lacune", "epvs", "undecided")] == pytest.approx(heads[:4])
    assert r["rater2_p_undecided"] == pytest.approx(0.6) and isinstance(r["rater2_p_epvs"], float)
    assert r["diameter_mm"] == pytest.approx(6.0)  # 3 voxels of 2 mm
    assert rows[1]["label"] == "epvs" and rows[1]["rater1"] == "nothing"
    assert [x["lesion_id"] for x in rcnn_rows("s", table, cols, affine, min_score=0.5)] == [1]
    boxes = box_map(rows, (12, 12, 12), (2.0, 2.0, 2.0))
    assert np.argwhere(boxes == 1).min(0).tolist() == [3, 4, 5] and np.argwhere(boxes == 1).max(0).tolist() == [5, 6, 7]
    assert np.argwhere(boxes == 2).tolist() == [[10, 10, 10]]


def test_print_summary_lists_counts_best_rows_and_written_files(tmp_path, capsys):
    from bundle.inference import print_summary

    (tmp_path / "counts.csv").write_text("subject,cmb\nsub-1,2\nsub-22,1\n")
    rows = [
        {"subject": "sub-1", "lesion_id": 1, "label": "cmb", "score": 0.5, "x": 1.04, "y": -2.0, "z": 3.25,
         "i": 1, "j": 2, "k": 3, "diameter_mm": 2.5, "volume_mm3": 8.0},
        {"subject": "sub-1", "lesion_id": 2, "label": "cmb", "score": 0.9, "x": 10.0, "y": 20.0, "z": -30.0,
         "i": 4, "j": 5, "k": 6, "diameter_mm": 3.125, "volume_mm3": 12.0},
        {"subject": "sub-22", "lesion_id": 1, "label": "cmb", "score": 0.7, "x": 0.0, "y": 0.0, "z": 0.0,
         "i": 7, "j": 8, "k": 9, "diameter_mm": 4.0, "volume_mm3": 30.0},
    ]  # fmt: skip
    write_detections(rows, tmp_path / "detections.csv")
    (tmp_path / "maps").mkdir()
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "index.html").write_text("<html></html>")
    text = print_summary(tmp_path, max_rows=2)
    assert capsys.readouterr().out == text + "\n"
    header = f"  {'subject':>12} {'id':>4} {'label':>7} {'score':>6} {'x':>8} {'y':>8} {'z':>8} {'diam_mm':>8}"
    assert text.splitlines() == [
        f"detections: {tmp_path / 'detections.csv'}",
        "counts per subject (counts.csv):",
        "     subject         cmb",
        "       sub-1           2",
        "      sub-22           1",
        "3 detection(s), best 2 shown:",
        header,
        "         sub-1    2     cmb  0.900     10.0     20.0    -30.0     3.12",  # best first
        "        sub-22    1     cmb  0.700      0.0      0.0      0.0     4.00",
        f"maps (input grid): {tmp_path / 'maps'}",
        f"QC report: {tmp_path / 'report' / 'index.html'}",
    ]
    assert print_summary(tmp_path, max_rows=3).splitlines()[5] == "3 detection(s):"
    bare = tmp_path / "bare"
    bare.mkdir()
    write_detections([], bare / "detections.csv")
    assert print_summary(bare).splitlines() == [f"detections: {bare / 'detections.csv'}", "0 detection(s):"]


def test_to_grid_resamples_through_both_affines_with_zeros_outside():
    from bundle.inference import to_grid

    vol = np.zeros((6, 6, 6), np.float32)
    vol[2, 3, 4] = 8.0
    src = np.diag([2.0, 2.0, 2.0, 1.0])
    assert to_grid(vol, src, src.copy(), (6, 6, 6)) is vol  # same grid: untouched
    dst = src.copy()
    dst[:3, 3] = (2.0, 0.0, -2.0)  # one source voxel further in i, one back in k
    out = to_grid(vol, src, dst, (7, 6, 8))
    assert out.shape == (7, 6, 8) and out.dtype == np.float32
    assert np.argwhere(out > 1e-4).tolist() == [[1, 3, 5]] and out[1, 3, 5] == pytest.approx(8.0)
    fine = np.diag([1.0, 2.0, 2.0, 1.0])  # half-voxel steps in i: trilinear halves between voxels
    out = to_grid(vol, src, fine, (12, 6, 6))
    assert (
        out[4, 3, 4] == pytest.approx(8.0) and out[3, 3, 4] == pytest.approx(4.0) and out[5, 3, 4] == pytest.approx(4.0)
    )
    assert out.sum() == pytest.approx(16.0)
    swapped = np.array([[0, 2.0, 0, 0], [2.0, 0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]])  # i and j exchanged
    assert np.argwhere(to_grid(vol, src, swapped, (6, 6, 6)) > 1e-4).tolist() == [[3, 2, 4]]


def test_to_grid_of_a_sparse_volume_equals_resampling_the_whole_grid():
    """to_grid interpolates only the box its non-zero voxels reach: the result is that of MONAI's resampling of the
    whole destination grid, including the partial voxels at the box's edge (finer, rotated destination)."""
    import torch
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    from bundle.data.synth.regrid import rigid
    from bundle.inference import to_grid

    rng = np.random.default_rng(3)
    vol = np.zeros((30, 34, 26), np.float32)
    vol[9:17, 12:20, 5:11] = rng.uniform(0.5, 1.0, (8, 8, 6))
    src = rigid(np.array([12.0, -7.0, 25.0]), np.array([-15.0, -17.0, -13.0]), [0.0, 0.0, 0.0])
    dst = np.diag([0.45, 0.55, 1.7, 1.0])
    dst[:3, 3] = (-22.0, -24.0, -20.0)
    shape = (100, 90, 28)
    whole = SpatialResample(mode="bilinear", padding_mode="zeros", dtype=torch.float32)(
        MetaTensor(torch.as_tensor(vol)[None], affine=torch.as_tensor(src)),
        dst_affine=torch.as_tensor(dst),
        spatial_size=shape,
    )[0].numpy()
    out = to_grid(vol, src, dst, shape)
    assert (whole > 1e-3).sum() > 1000 and (whole > 1e-3).sum() < out.size // 10  # sparse, and reached
    np.testing.assert_allclose(out, whole, atol=1e-4)
    assert not to_grid(np.zeros_like(vol), src, dst, shape).any()


def test_input_grid_prefers_the_loaded_files_grid():
    import torch
    from monai.data import MetaTensor

    from bundle.inference import input_grid

    work = np.diag([1.0, 1.0, 1.0, 1.0])
    orig = np.diag([0.5, 0.5, 2.0, 1.0])
    orig[:3, 3] = (1.0, 2.0, 3.0)
    image = MetaTensor(torch.zeros(1, 4, 5, 6), affine=torch.as_tensor(work),
                       meta={"original_affine": orig, "spatial_shape": np.array([8, 10, 3])})  # fmt: skip
    affine, shape = input_grid(image)
    assert np.array_equal(affine, orig) and shape == (8, 10, 3) and all(type(s) is int for s in shape)
    plain = MetaTensor(torch.zeros(1, 4, 5, 6), affine=torch.as_tensor(orig))
    affine, shape = input_grid(plain)
    assert np.array_equal(affine, orig) and shape == (4, 5, 6)
    affine, shape = input_grid(np.zeros((2, 3, 4)))  # no affine at all: the identity
    assert np.array_equal(affine, np.eye(4)) and shape == (2, 3, 4)


def test_detector_tables_as_arrays_inclusive_min_score_and_defaults():
    import torch
    from monai.data import MetaTensor

    from bundle.inference import input_grid_rows, objects_from_detector_table

    nan = float("nan")
    table = np.array([[1, 2, 3, 0.5, 0.9, 4], [5, 6, 7, 0.4, 0.2, 2], [nan] * 6])  # a NumPy table, not a tensor
    objs = objects_from_detector_table(table, [0.5, 0.5, 2.0], min_score=0.5)  # the limit is inclusive
    assert (
        objs.centres.tolist() == [[1, 2, 3]] and list(objs.labels) == [""] and objs.spacing.tolist() == [0.5, 0.5, 2.0]
    )
    assert objs.diameters_mm[0] == pytest.approx((6.0 * 4 * 0.5 / np.pi) ** (1 / 3))
    image = MetaTensor(torch.zeros(1, 8, 8, 8), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    rows, affine, shape = input_grid_rows("s", torch.as_tensor(table), image)  # default: column 3, no label
    assert [r["score"] for r in rows] == pytest.approx([0.5, 0.4]) and [r["label"] for r in rows] == ["", ""]
    assert rows[0]["diameter_mm"] == pytest.approx((6.0 * 4 * 8 / np.pi) ** (1 / 3), abs=1e-3)  # 2 mm voxels
    assert (rows[0]["i"], rows[0]["x"]) == (1.0, 2.0) and shape == (8, 8, 8)


def test_rcnn_rows_from_arrays_ties_and_tables_without_raters():
    from bundle.methods.rcnn import rcnn_columns, rcnn_rows

    cols = rcnn_columns(2)
    heads = [0.25] * 8
    table = np.array([[4.0, 5, 6, 0.6, 0.4, 0.3, 0.3, 0.0, 2.0, 0.9, 1, 3, *heads],  # lacune, EPVS equally likely
                      [1.0, 1, 1, 0.5, 0.5, 0.4, 0.1, 0.0, 1.0, 0.4, 0, 2, *heads]])  # fmt: skip
    affine = np.diag([1, 1, 1, 1])  # an integer affine
    rows = rcnn_rows("sub-7", table, cols, affine, min_score=0.5)  # the limit is inclusive
    assert [r["subject"] for r in rows] == ["sub-7", "sub-7"] and rows[0]["label"] == "epvs"  # ties: EPVS
    assert rows[1]["label"] == "lacune" and rows[0]["diameter_mm"] == pytest.approx(2.0)
    no_raters = [c for c in cols if not c.startswith("rater")]
    plain = rcnn_rows("s", table[:, : len(no_raters)], no_raters, affine)
    assert len(plain) == 2 and not any(k.startswith("rater") for r in plain for k in r)
