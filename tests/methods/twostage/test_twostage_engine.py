# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Pieces of the two-stage training: folds, the mimics files, the mimic rule, flags from the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import sphere
from monai.data import MetaTensor

from bundle.methods.twostage import TwoStageTraining, leave_k_out, read_mimics, write_mimics
from bundle.transforms import object_centres
from bundle.utils import as_bool


def test_leave_two_out_covers_every_subject_once():
    assert leave_k_out(5, 2) == [[0, 1], [2, 3], [4]]
    folds = leave_k_out(15, 2)
    assert len(folds) == 8 and sorted(i for f in folds for i in f) == list(range(15))
    for bad in ((1, 1), (4, 4), (4, 0)):
        with pytest.raises(ValueError, match="leave"):
            leave_k_out(*bad)


def test_mimics_file_round_trip(tmp_path):
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    affine[:3, 3] = (-10, 20, 5)
    vox = np.array([[3, 4, 5], [10, 0, 7]])
    path = write_mimics(tmp_path / "m" / "s1_mimics.csv", "s1", vox, affine, [0.3, 0.17], fold=2)
    np.testing.assert_array_equal(read_mimics(path), vox)
    got, scores = read_mimics(path, with_scores=True)
    np.testing.assert_array_equal(got, vox)
    np.testing.assert_allclose(scores, [0.3, 0.17])
    lines = path.read_text().splitlines()
    assert lines[0] == "subject,i,j,k,x,y,z,stage1_score,fold"
    assert lines[1] == "s1,3,4,5,-8.5,22.0,15.0,0.3,2"  # world = affine @ voxel
    empty = write_mimics(tmp_path / "e.csv", "s2", np.zeros((0, 3)), affine, [], fold=0)
    assert read_mimics(empty).shape == (0, 3) and read_mimics(empty, with_scores=True)[1].shape == (0,)
    assert not list((tmp_path / "m").glob(".*"))  # no temporary file left behind


def test_mimics_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_mimics(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="bad.csv.*not a mimics file"):
        read_mimics(bad)
    bad.write_text("subject,i,j,k,x,y,z,stage1_score,fold\ns,1,x,3,0,0,0,0,0\n")
    with pytest.raises(ValueError, match="bad row"):
        read_mimics(bad)


def _mine(label: np.ndarray, prob: np.ndarray, affine: np.ndarray):
    """The mimics the two-stage trainer mines from ``prob`` (threshold 0.15) for a scan labelled ``label``."""
    entry = {"image": MetaTensor(torch.zeros(1, *label.shape), affine=torch.as_tensor(affine)), "label": label[None],
             "centres": object_centres(label)}  # fmt: skip
    return TwoStageTraining([], [], [], None, "unused", mining_threshold=0.15)._mimics(entry, prob)


def test_mined_mimics_exclude_microbleeds():
    """Candidates touching a microbleed or within 5 mm of its centre are not mimics; the others are."""
    shape = (40, 40, 20)
    label = np.zeros(shape, np.int16)
    label[sphere(shape, (10, 10, 10), 1.5)] = 1
    prob = np.zeros(shape, np.float32)
    prob[sphere(shape, (10, 10, 10), 1)] = 0.9  # the microbleed itself
    prob[10, 14, 10] = 0.5  # a separate blob 4 mm from its centre: too close to call a mimic
    prob[sphere(shape, (30, 30, 10), 1)] = 0.4  # a mimic, peaking at its centre
    prob[30, 30, 10] = 0.6
    prob[30, 10, 10] = 0.1  # below the mining threshold
    affine = np.eye(4)
    vox, scores = _mine(label, prob, affine)
    assert vox.tolist() == [[30, 30, 10]] and scores.tolist() == pytest.approx([0.6])


def test_mined_mimics_clearance_is_in_mm_and_touching_excludes():
    """On 0.5 x 0.5 x 2 mm voxels: 8 voxels along i is 4 mm (too close), 3 voxels along k is 6 mm (a mimic); a
    candidate touching the microbleed is no mimic even with its peak 8 mm from the centre."""
    shape = (60, 60, 20)
    label = np.zeros(shape, np.int16)
    label[28:33, 28:33, 9:12] = 1  # centre (30, 30, 10)
    prob = np.zeros(shape, np.float32)
    prob[38, 30, 10] = 0.5  # 8 voxels = 4 mm: within the clearance
    prob[30, 30, 13] = 0.5  # 3 voxels = 6 mm (it touches nothing: the label ends at k = 11)
    prob[30, 33:47, 10] = 0.3  # a tube starting at the label's edge (j = 32 is labelled, 33 its neighbour)...
    prob[30, 46, 10] = 0.8  # ...peaking 16 voxels = 8 mm away
    prob[30, 32, 10] = 0.3  # it touches the microbleed
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    vox, scores = _mine(label, prob, affine)
    assert vox.tolist() == [[30, 30, 13]] and scores.tolist() == pytest.approx([0.5])


def test_flags_from_the_command_line():
    assert as_bool("false") is False and as_bool("True") is True and as_bool(" yes ") is True and as_bool(0) is False
    with pytest.raises(ValueError, match="crossval must be true or false"):
        as_bool("maybe", "crossval")
    with pytest.raises(ValueError, match="crossval needs the datalist"):
        TwoStageTraining([], [], [], None, "unused", crossval="true")
