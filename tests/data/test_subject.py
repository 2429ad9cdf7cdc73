# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""LoadSubjectd: correct tensors and metadata for valid input, one clear error per kind of bad input."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from conftest import sphere, write_nii

from bundle.data import DatalistError, LoadSubjectd, resolve_entry

SHAPE = (24, 20, 16)
AFFINE = np.array([[-0.9, 0, 0, 10.0], [0, 0.9, 0, -5.0], [0, 0, 2.0, 3.0], [0, 0, 0, 1]])


@pytest.fixture
def subject(tmp_path):
    """A valid two-modality subject with two objects (ids 1, 2) and its resolved entry."""
    rng = np.random.default_rng(0)
    t1 = write_nii(tmp_path / "t1.nii.gz", rng.uniform(1, 2, SHAPE), AFFINE)
    t2 = write_nii(tmp_path / "t2.nii.gz", rng.uniform(3, 4, SHAPE), AFFINE)
    label = np.zeros(SHAPE, np.int16)
    label[sphere(SHAPE, (6, 6, 5), 2)] = 1
    label[sphere(SHAPE, (16, 12, 9), 1)] = 2
    lab = write_nii(tmp_path / "label.nii.gz", label, AFFINE, np.int16)
    records = [{"id": 1, "class": "epvs", "raters": ["epvs"] * 5 + ["undecided"]}, {"id": 2, "class": "lacune"}]
    (tmp_path / "lesions.json").write_text(json.dumps(records))
    mask = write_nii(tmp_path / "mask.nii.gz", np.ones(SHAPE), AFFINE, np.uint8)
    entry = {
        "subject": "sub-x",
        "image": [t1, t2],
        "label": lab,
        "lesions": str(tmp_path / "lesions.json"),
        "mask": mask,
    }
    return tmp_path, entry


def test_valid_subject_is_stacked_with_metadata(subject):
    _, entry = subject
    d = LoadSubjectd()(entry)
    assert d["image"].shape == (2, *SHAPE)
    assert d["image"].dtype == torch.float32
    assert 1.0 <= float(d["image"][0].min()) and float(d["image"][0].max()) <= 2.0  # channel order kept
    assert 3.0 <= float(d["image"][1].min())
    np.testing.assert_allclose(d["image"].affine.numpy(), AFFINE, atol=1e-6)
    assert d["image"].meta["spacing"] == pytest.approx([0.9, 0.9, 2.0])
    assert d["image"].meta["subject"] == "sub-x"
    assert d["label"].dtype == torch.int32 and set(torch.unique(d["label"]).tolist()) == {0, 1, 2}
    assert [r["class"] for r in d["lesions"]] == ["epvs", "lacune"]
    assert float(d["mask"].sum()) == np.prod(SHAPE)


def test_zero_object_scan_is_valid(subject):
    tmp, entry = subject
    entry["label"] = write_nii(tmp / "empty.nii.gz", np.zeros(SHAPE), AFFINE, np.int16)
    (tmp / "none.json").write_text("[]")
    entry["lesions"] = str(tmp / "none.json")
    d = LoadSubjectd()(entry)
    assert int(d["label"].max()) == 0 and d["lesions"] == []


def test_image_only_entry(subject):
    _, entry = subject
    d = LoadSubjectd()({"subject": "sub-x", "image": entry["image"]})
    assert d["image"].shape[0] == 2 and "label" not in d


def _err(entry, match, exc=DatalistError, **kwargs):
    with pytest.raises(exc, match=match):
        LoadSubjectd(**kwargs)(entry)


def test_missing_file(subject):
    tmp, entry = subject
    entry["image"] = [entry["image"][0], str(tmp / "nope.nii.gz")]
    _err(entry, r"sub-x: image file .*nope\.nii\.gz does not exist", FileNotFoundError)


def test_missing_file_at_resolve(subject):
    tmp, entry = subject
    with pytest.raises(FileNotFoundError, match=r"sub-x: mask file .*gone\.nii\.gz does not exist"):
        resolve_entry({**entry, "mask": "gone.nii.gz"}, tmp)


def test_corrupt_nifti(subject):
    tmp, entry = subject
    bad = tmp / "corrupt.nii.gz"
    bad.write_bytes(gzip.compress(b"this is not a nifti header" * 20))
    entry["image"] = [str(bad), entry["image"][1]]
    _err(entry, r"sub-x: image file .*corrupt\.nii\.gz could not be read as NIfTI")


def test_truncated_nifti(subject):
    tmp, entry = subject
    data = open(entry["image"][0], "rb").read()
    (tmp / "trunc.nii.gz").write_bytes(data[: len(data) // 2])
    entry["image"] = [str(tmp / "trunc.nii.gz")]
    _err(entry, r"sub-x: image file .*trunc\.nii\.gz could not be read as NIfTI")


def test_not_3d(subject):
    tmp, entry = subject
    entry["image"] = [write_nii(tmp / "4d.nii.gz", np.ones((*SHAPE, 2)), AFFINE)]
    _err(entry, r"sub-x: image file .*4d\.nii\.gz has shape \(24, 20, 16, 2\), expected a 3D volume")


def test_2d(subject):
    tmp, entry = subject
    entry["image"] = [write_nii(tmp / "2d.nii.gz", np.ones((24, 20)), AFFINE)]
    _err(entry, r"sub-x: image file .*2d\.nii\.gz has shape \(24, 20\), expected a 3D volume")


def test_trailing_singleton_is_3d(subject):
    tmp, entry = subject
    entry["image"] = [write_nii(tmp / "x1.nii.gz", np.ones((*SHAPE, 1)), AFFINE)]
    assert LoadSubjectd()(entry)["image"].shape == (1, *SHAPE)


def test_modalities_on_different_shapes(subject):
    tmp, entry = subject
    entry["image"][1] = write_nii(tmp / "small.nii.gz", np.ones((24, 20, 15)), AFFINE)
    _err(entry, r"sub-x: image file .*small\.nii\.gz is not on the grid of .*t1\.nii\.gz: shape \(24, 20, 15\)")


def test_modalities_on_different_affines(subject):
    tmp, entry = subject
    moved = AFFINE.copy()
    moved[0, 3] += 1.5
    entry["image"][1] = write_nii(tmp / "moved.nii.gz", np.ones(SHAPE), moved)
    _err(entry, r"sub-x: image file .*moved\.nii\.gz is not on the grid .* affine differs by up to 1\.5")


def test_affine_within_tolerance_is_accepted(subject):
    tmp, entry = subject
    moved = AFFINE.copy()
    moved[0, 3] += 1e-4
    entry["image"][1] = write_nii(tmp / "moved.nii.gz", np.ones(SHAPE), moved)
    assert LoadSubjectd()(entry)["image"].shape[0] == 2


def test_non_finite_values(subject):
    tmp, entry = subject
    arr = np.ones(SHAPE)
    arr[1, 2, 3] = np.nan
    arr[4, 5, 6] = np.inf
    entry["image"][0] = write_nii(tmp / "nan.nii.gz", arr, AFFINE)
    _err(entry, r"sub-x: image file .*nan\.nii\.gz has 2 non-finite \(NaN/inf\) voxels")


def test_label_not_on_image_grid(subject):
    tmp, entry = subject
    entry["label"] = write_nii(tmp / "lab2.nii.gz", np.zeros((12, 10, 8)), AFFINE, np.int16)
    _err(entry, r"sub-x: label file .*lab2\.nii\.gz is not on the grid of the image: shape")


def test_label_not_integer(subject):
    tmp, entry = subject
    entry["label"] = write_nii(tmp / "soft.nii.gz", np.full(SHAPE, 0.5), AFFINE)
    _err(entry, r"sub-x: label file .*soft\.nii\.gz must hold non-negative integers")


def test_lesion_id_absent_from_label(subject):
    tmp, entry = subject
    records = json.loads((tmp / "lesions.json").read_text()) + [{"id": 7, "class": "epvs"}]
    (tmp / "lesions.json").write_text(json.dumps(records))
    _err(entry, r"sub-x: .*lesions\.json lists lesion ids \[7\] absent from the label map")


def test_label_id_without_record(subject):
    tmp, entry = subject
    (tmp / "lesions.json").write_text(json.dumps([{"id": 1, "class": "epvs"}]))
    _err(entry, r"sub-x: label ids \[2\] have no record in .*lesions\.json")


def test_unknown_class_name(subject):
    tmp, entry = subject
    (tmp / "lesions.json").write_text(json.dumps([{"id": 1, "class": "epvs"}, {"id": 2, "class": "tumour"}]))
    _err(entry, r"sub-x: .*lesions\.json lesion 2 has unknown class 'tumour'")


def test_class_outside_configured_list(subject):
    _, entry = subject
    _err(entry, r"lesion 1 has unknown class 'epvs'; known: \['cmb'\]", classes=["cmb"])


def test_unknown_rater_answer(subject):
    tmp, entry = subject
    (tmp / "lesions.json").write_text(
        json.dumps([{"id": 1, "class": "epvs", "raters": ["maybe"]}, {"id": 2, "class": "lacune"}])
    )
    _err(entry, r"sub-x: .*lesion 1 has unknown rater answers \['maybe'\]")


def test_lesions_not_json(subject):
    tmp, entry = subject
    (tmp / "lesions.json").write_text("{not json")
    _err(entry, r"sub-x: lesions file .*lesions\.json is not valid JSON")


def test_duplicate_lesion_ids(subject):
    tmp, entry = subject
    (tmp / "lesions.json").write_text(json.dumps([{"id": 1, "class": "epvs"}, {"id": 1, "class": "lacune"}]))
    _err(entry, r"sub-x: .*lesions\.json has duplicate lesion ids")


def test_all_zero_image_and_empty_mask_are_named(subject):
    tmp, entry = subject
    good = list(entry["image"])
    entry["image"][1] = write_nii(tmp / "zeros.nii.gz", np.zeros(SHAPE), AFFINE)
    _err(entry, r"sub-x: image file .*zeros\.nii\.gz is all zeros")
    entry["image"] = good
    entry["mask"] = write_nii(tmp / "nomask.nii.gz", np.zeros(SHAPE), AFFINE, np.uint8)
    _err(entry, r"sub-x: mask file .*nomask\.nii\.gz is empty \(no voxel > 0\)")


def test_unreadable_file_reason_is_one_short_line(subject):
    tmp, entry = subject
    (tmp / "text.nii.gz").write_bytes(b"not a NIfTI file")
    entry["image"] = [str(tmp / "text.nii.gz")]
    with pytest.raises(DatalistError) as err:
        LoadSubjectd()(entry)
    msg = str(err.value)
    assert msg == f"sub-x: image file {tmp / 'text.nii.gz'} could not be read as NIfTI (ImageFileError: File " \
        f"{tmp / 'text.nii.gz'} is not a gzip file)"
