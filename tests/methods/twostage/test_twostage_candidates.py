# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Candidates: one per component of the thresholded map, at its peak."""

from __future__ import annotations

import numpy as np
import pytest

from bundle.methods.twostage import candidates_from_map


def test_one_candidate_per_component_at_its_peak():
    prob = np.zeros((12, 12, 12), np.float32)
    prob[2:6, 2:4, 2:4] = 0.3
    prob[4, 3, 2] = 0.9  # the peak of the first blob, away from its centre of mass
    prob[8:10, 8:10, 8:10] = 0.25
    prob[9, 8, 9] = 0.6
    prob[0, 11, 11] = 0.1  # below threshold 0.2
    c = candidates_from_map(prob, threshold=0.2)
    assert len(c) == 2
    assert c.centres.tolist() == [[4.0, 3.0, 2.0], [9.0, 8.0, 9.0]]
    assert c.scores.tolist() == [np.float32(0.9), np.float32(0.6)]
    assert c.sizes.tolist() == [16, 8]


def test_ties_and_empty_maps():
    prob = np.zeros((6, 6, 6), np.float32)
    prob[1:3, 1, 1] = 0.5  # two voxels with the same peak value: the first in scan order
    assert candidates_from_map(prob).centres.tolist() == [[1.0, 1.0, 1.0]]
    assert len(candidates_from_map(np.zeros((4, 4, 4)))) == 0


def test_threshold_is_inclusive_and_used():
    prob = np.zeros((8, 8, 8), np.float32)
    prob[1, 1, 1] = 0.25  # exactly at the threshold (exact in float32): a candidate
    prob[5, 5, 5] = np.nextafter(np.float32(0.25), np.float32(0))  # just below: not
    prob[3, 6, 2] = 0.4
    c = candidates_from_map(prob, threshold=0.25)
    assert c.centres.tolist() == [[1.0, 1.0, 1.0], [3.0, 6.0, 2.0]]
    assert candidates_from_map(prob, threshold=0.3).centres.tolist() == [[3.0, 6.0, 2.0]]


def test_connectivity_and_spacing_are_used():
    prob = np.zeros((6, 6, 6), np.float32)
    prob[1, 1, 1], prob[2, 2, 2] = 0.9, 0.5  # corner neighbours
    assert candidates_from_map(prob).centres.tolist() == [[1.0, 1.0, 1.0]]  # one component at 26
    assert candidates_from_map(prob, connectivity=6).centres.tolist() == [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
    c = candidates_from_map(prob, spacing=(0.5, 0.5, 2.0))
    assert c.spacing.tolist() == [0.5, 0.5, 2.0] and c.sizes.tolist() == [2]
    assert c.diameters_mm[0] == pytest.approx((6.0 * 2 * 0.5 / np.pi) ** (1 / 3))  # 2 voxels of 0.5 mm^3
    # the map is read as float32 (the networks' precision), whatever its dtype
    assert candidates_from_map(prob.astype(np.float64) + 1e-9).scores.tolist() == [float(np.float32(0.9))]
