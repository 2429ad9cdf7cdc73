# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""LesionDetectionMetric (MONAI cumulative metric) and the LesionDetection ignite handler."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from bundle.handlers import LesionDetection
from bundle.metrics import (
    LesionDetectionMetric,
    evaluate_scan,
    objects_from_instances,
    objects_from_map,
    summarise_scans,
)


def _pair(seed, spacing=(1.0, 1.0, 2.0)):
    rng = np.random.default_rng(seed)
    ref = np.zeros((16, 16, 12), np.int64)
    prob = np.zeros((16, 16, 12), np.float32)
    for i in range(1, 5):
        c = rng.integers(2, 10, 3)
        ref[c[0] : c[0] + 2, c[1] : c[1] + 2, c[2] : c[2] + 2] = i
        if rng.random() < 0.7:
            prob[c[0] : c[0] + 2, c[1] : c[1] + 2, c[2]] = rng.uniform(0.5, 1.0)
    prob[14, 14, 10] = 0.8  # a false positive
    return ref, prob, spacing


def _batch(pairs):
    affine = torch.stack([torch.diag(torch.tensor([*sp, 1.0], dtype=torch.float64)) for _, _, sp in pairs])
    y = MetaTensor(torch.from_numpy(np.stack([r for r, _, _ in pairs]))[:, None], affine=affine)
    y_pred = MetaTensor(torch.from_numpy(np.stack([p for _, p, _ in pairs]))[:, None], affine=affine)
    return y_pred, y


def _expected(pairs, rule="overlap", **kw):
    res = [
        evaluate_scan(objects_from_instances(r, sp), objects_from_map(p, 0.5, 26, sp), rule, **kw) for r, p, sp in pairs
    ]
    return summarise_scans(res)


@pytest.mark.parametrize("rule", ["overlap", "distance_mm", "distance_voxels"])
def test_cumulative_metric_equals_direct_computation(rule):
    pairs = [_pair(s) for s in range(5)]
    metric = LesionDetectionMetric(rule=rule)
    metric(*_batch(pairs[:2]))
    metric(*_batch(pairs[2:]))  # accumulates across iterations
    got, want = metric.aggregate(), _expected(pairs, rule)
    for key in ("tp", "fp", "fn", "sensitivity", "fp_per_scan", "f1", "icc_2_1", "cpm", "count_abs_diff_mean"):
        assert got[key] == pytest.approx(want[key], nan_ok=True), key
    assert got["froc"] == want["froc"] and got["scans"] == 5
    metric.reset()
    assert metric.aggregate()["scans"] == 0


def test_spacing_comes_from_the_affine():
    ref = np.zeros((12, 12, 12), np.int64)
    ref[5, 5, 2] = 1
    prob = np.zeros((12, 12, 12), np.float32)
    prob[5, 5, 5] = 0.9
    for spacing, tp in (((1.0, 1.0, 1.0), 1), ((1.0, 1.0, 2.0), 0)):
        m = LesionDetectionMetric(rule="distance_mm", max_distance=5.0)
        m(*_batch([(ref, prob, spacing)]))
        assert m.aggregate()["tp"] == tp


def test_handler_reports_key_and_all_figures():
    pairs = [_pair(s) for s in range(4)]
    batches = [dict(zip(("pred", "label"), _batch(pairs[i : i + 2]))) for i in (0, 2)]
    engine = Engine(lambda e, batch: batch)
    LesionDetection(key_figure="f1", rule="overlap").attach(engine, "lesion")
    engine.run(batches, max_epochs=1)
    want = _expected(pairs)
    assert engine.state.metrics["lesion"] == pytest.approx(want["f1"])
    assert engine.state.metrics["lesion_sensitivity"] == pytest.approx(want["sensitivity"])
    assert engine.state.metrics["lesion_fp_per_scan"] == pytest.approx(want["fp_per_scan"])
    with pytest.raises(ValueError, match="key_figure must be one of"):
        LesionDetection(key_figure="dice")


def _line_case():
    """A 20-voxel reference line and a 3-voxel prediction on its end: 15 % of it overlapped, 8.5 mm from its
    centre; plus a 1-voxel prediction far from it."""
    ref = np.zeros((6, 6, 24), np.int64)
    ref[2, 2, 0:20] = 1
    prob = np.zeros((6, 6, 24), np.float32)
    prob[2, 2, 0:3] = 0.9
    prob[5, 5, 23] = 0.7
    return ref, prob


def _aggregate(pairs, **kw):
    m = LesionDetectionMetric(**kw)
    m(*_batch(pairs))
    return m.aggregate()


def test_defaults_and_each_matching_option_is_used():
    ref, prob = _line_case()
    iso = [(ref, prob, (1.0, 1.0, 1.0))]
    assert (_aggregate(iso)["tp"], _aggregate(iso)["fp"]) == (1, 1)  # default rule: overlap (15 % >= 10 %)
    assert _aggregate(iso, min_overlap=0.2)["tp"] == 0
    assert _aggregate(iso, rule="distance_mm")["tp"] == 0  # 8.5 mm > the default 5 mm
    assert _aggregate(iso, rule="distance_mm", max_distance=10.0)["tp"] == 1
    assert _aggregate(iso, min_voxels=2)["fp"] == 0  # the 1-voxel prediction is dropped
    by_size = _aggregate(iso, size_bins_mm=(0.0, 100.0))
    assert by_size["references_by_size_mm"] == {"0-100": 1} and by_size["sensitivity_by_size_mm"] == {"0-100": 1.0}


def test_binary_reference_masks_are_split_into_components():
    ref = np.zeros((8, 8, 8), np.float32)
    ref[1:3, 1:3, 1:3] = 1.0
    ref[5:7, 5:7, 5:7] = 1.0
    prob = np.zeros((8, 8, 8), np.float32)
    prob[1:3, 1:3, 1] = 0.8
    got = _aggregate([(ref, prob, (1.0, 1.0, 1.0))], reference_is_instance=False)
    assert (got["tp"], got["fn"], got["fp"]) == (1, 1, 0)
    apart = ref.copy()
    apart[3, 3, 3] = apart[4, 4, 4] = 1.0  # a diagonal bridge: one lesion at 26-connectivity, four at 6
    assert _aggregate([(apart, prob, (1.0, 1.0, 1.0))], reference_is_instance=False)["fn"] == 0
    assert _aggregate([(apart, prob, (1.0, 1.0, 1.0))], reference_is_instance=False, connectivity=6)["fn"] == 3


def test_froc_keeps_the_best_max_detections_but_counts_every_object():
    ref = np.zeros((12, 12, 12), np.int64)
    ref[2, 2, 2] = 1
    prob = np.zeros((12, 12, 12), np.float32)
    prob[2, 2, 2], prob[9, 9, 9], prob[9, 2, 9] = 0.6, 0.9, 0.8  # the hit scores lowest
    with pytest.warns(UserWarning, match="3 predicted objects in one image; FROC keeps the 2 best"):
        got = _aggregate([(ref, prob, (1.0, 1.0, 1.0))], max_detections=2)
    assert (got["tp"], got["fp"]) == (1, 2) and max(got["froc"]["sensitivity"]) == 0.0
    assert max(_aggregate([(ref, prob, (1.0, 1.0, 1.0))])["froc"]["sensitivity"]) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _aggregate([(ref, prob, (1.0, 1.0, 1.0))], max_detections=3)  # exactly k: no warning


def test_inputs_must_be_batched_volumes_and_spacing_defaults_to_1mm():
    m = LesionDetectionMetric()
    with pytest.raises(ValueError, match=r"expected \(B, C, H, W, D\) inputs, got \(1, 1, 4, 4, 4\) and \(1, 4, 4, 4\)"):
        m(torch.zeros(1, 1, 4, 4, 4), torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match=r"got \(1, 4, 4, 4\) and \(1, 1, 4, 4, 4\)"):
        m(torch.zeros(1, 4, 4, 4), torch.zeros(1, 1, 4, 4, 4))
    ref = np.zeros((12, 12, 12), np.int64)
    ref[5, 5, 2] = 1
    prob = np.zeros((12, 12, 12), np.float32)
    prob[5, 5, 6] = 0.9  # 4 voxels away
    plain = LesionDetectionMetric(rule="distance_mm", max_distance=5.0)  # plain tensors: 1 mm voxels
    plain(torch.from_numpy(prob)[None, None], torch.from_numpy(ref)[None, None])
    assert plain.aggregate()["tp"] == 1
    one_affine = LesionDetectionMetric(rule="distance_mm", max_distance=5.0)  # one (4, 4) affine for the batch
    aff = torch.diag(torch.tensor([1.0, 1.0, 2.0, 1.0], dtype=torch.float64))
    one_affine(MetaTensor(torch.from_numpy(prob)[None, None], affine=aff), MetaTensor(torch.from_numpy(ref)[None, None], affine=aff))
    assert one_affine.aggregate()["tp"] == 0  # 8 mm apart
