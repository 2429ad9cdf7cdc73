# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""VALDO 2021 importer on synthetic folders in the challenge's layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import sphere, write_nii

from bundle.data import DatalistError, LoadSubjectd, load_datalist
from bundle.data.valdo import import_valdo, instances_from_mask

SHAPE = (20, 20, 12)
AFFINE = np.diag([0.5, 0.5, 3.0, 1.0])


def _task2(root, sid, centres):
    d = root / sid
    d.mkdir(parents=True)
    for mod in ("T2S", "T1", "T2"):
        write_nii(d / f"{sid}_space-T2S_desc-masked_{mod}.nii.gz", np.full(SHAPE, 100.0), AFFINE)
    mask = np.zeros(SHAPE, np.uint8)
    for c in centres:
        mask |= sphere(SHAPE, c, 1.5)
    write_nii(d / f"{sid}_space-T2S_CMB.nii.gz", mask, AFFINE, np.uint8)


def test_task2_binary_masks_become_instances(tmp_path):
    root = tmp_path / "Task2"
    _task2(root, "sub-101", [(4, 4, 3), (14, 14, 8)])
    _task2(root, "sub-102", [])
    path = import_valdo(2, root, tmp_path / "out", modalities=["swi", "t1"])
    data = json.loads(path.read_text())
    assert data["modalities"] == ["swi", "t1"] and data["classes"] == ["cmb"]
    entries = load_datalist(path, "training", modalities=["swi", "t1"])
    assert [e["subject"] for e in entries] == ["sub-101", "sub-102"]
    assert [e["count"] for e in entries] == [2, 0]
    assert entries[0]["image"][0].endswith("sub-101_space-T2S_desc-masked_T2S.nii.gz")
    d = LoadSubjectd()(entries[0])
    assert sorted(np.unique(d["label"].numpy()).tolist()) == [0, 1, 2]
    rec = d["lesions"][0]
    assert rec["class"] == "cmb" and rec["centre_voxel"] == pytest.approx([4, 4, 3], abs=1e-6)
    assert rec["centre_mm"] == pytest.approx([2.0, 2.0, 9.0], abs=1e-6)  # world = affine @ voxel
    assert rec["volume_mm3"] == pytest.approx(rec["n_voxels"] * 0.75)
    empty = LoadSubjectd()(entries[1])
    assert int(empty["label"].max()) == 0 and empty["lesions"] == []


def test_task3_multiple_raters_give_rater_labels(tmp_path):
    root = tmp_path / "Task3"
    d = root / "sub-201"
    d.mkdir(parents=True)
    for mod in ("T1", "T2", "FLAIR"):
        write_nii(d / f"sub-201_space-T1_desc-masked_{mod}.nii.gz", np.ones(SHAPE), AFFINE)
    r1 = sphere(SHAPE, (5, 5, 4), 2) | sphere(SHAPE, (14, 14, 7), 2)
    r2 = sphere(SHAPE, (5, 5, 4), 1)  # the second rater saw only the first lacune
    write_nii(d / "sub-201_space-T1_desc-Rater1_Lacunes.nii.gz", r1, AFFINE, np.uint8)
    write_nii(d / "sub-201_space-T1_desc-Rater2_Lacunes.nii.gz", r2, AFFINE, np.uint8)
    (entry,) = load_datalist(import_valdo(3, root, tmp_path / "out"), "training", modalities=["t1", "t2", "flair"])
    records = LoadSubjectd()(entry)["lesions"]
    assert [r["raters"] for r in records] == [["lacune", "lacune"], ["lacune", "nothing"]]
    with pytest.raises(FileNotFoundError, match=r"sub-201: no mask of rater 3"):
        import_valdo(3, root, tmp_path / "out2", rater=3)
    write_nii(d / "sub-201_space-T1_desc-Rater2_Lacunes.nii.gz", np.zeros((20, 20, 11), np.uint8), AFFINE, np.uint8)
    with pytest.raises(DatalistError, match=r"sub-201: rater 2's mask .*Rater2_Lacunes.nii.gz has shape \(20, 20, 1"):
        import_valdo(3, root, tmp_path / "out3")


def test_missing_modality_and_bad_arguments(tmp_path):
    root = tmp_path / "Task2"
    _task2(root, "sub-101", [(4, 4, 3)])
    (root / "sub-101" / "sub-101_space-T2S_desc-masked_T1.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"sub-101: no sub-101_space-T2S_desc-masked_T1"):
        import_valdo(2, root, tmp_path / "out", modalities=["swi", "t1"])
    with pytest.raises(DatalistError, match=r"VALDO task 2 has no modality \['flair'\]"):
        import_valdo(2, root, tmp_path / "out", modalities=["flair"])
    with pytest.raises(FileNotFoundError, match=r"has no sub-\* subject folders"):
        import_valdo(2, tmp_path / "empty", tmp_path / "out")


@pytest.mark.parametrize("connectivity, expected", [(6, 2), (18, 2), (26, 1)])
def test_connectivity_of_instances(connectivity, expected):
    mask = np.zeros((5, 5, 5), np.uint8)
    mask[1, 1, 1] = mask[2, 2, 2] = 1  # corner neighbours: joined only with 26-connectivity
    assert instances_from_mask(mask, connectivity).max() == expected


def test_records_equal_a_per_lesion_reference():
    """The one-pass records (centres, sizes, which raters touch each lesion) equal the per-lesion definition."""
    from bundle.data.valdo import _records

    rng = np.random.default_rng(3)
    mask = rng.random((30, 30, 20)) > 0.93  # many small components, some touching diagonally
    inst = instances_from_mask(mask)
    rater2 = mask & (rng.random(mask.shape) > 0.7)
    affine = np.array([[0.0, -0.5, 0.1, 10.0], [0.5, 0.0, 0.0, -4.0], [0.0, 0.0, 2.0, 7.0], [0, 0, 0, 1]])
    records = _records(inst, affine, "lacune", [mask, rater2])
    assert len(records) == inst.max() > 50
    for r in records:
        obj = inst == r["id"]
        c = np.argwhere(obj).mean(0)
        assert r["n_voxels"] == obj.sum() and r["centre_voxel"] == pytest.approx(c, abs=1e-3)
        assert r["centre_mm"] == pytest.approx(affine[:3, :3] @ c + affine[:3, 3], abs=1e-3)
        assert r["raters"] == ["lacune", "lacune" if rater2[obj].any() else "nothing"]
    assert {r["raters"][1] for r in records} == {"lacune", "nothing"}
