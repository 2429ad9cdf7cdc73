# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""LesionDetectionMetric (MONAI cumulative metric) and the LesionDetection ignite handler."""

from __future__ import annotations

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
