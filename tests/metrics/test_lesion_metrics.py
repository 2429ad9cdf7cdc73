# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Lesion-wise figures against slow, obviously-correct reference implementations (property-based) and hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bundle.metrics import (
    LUNA16_FPS,
    cpm_score,
    evaluate_scan,
    froc_curve,
    icc,
    objects_from_instances,
    objects_from_map,
    objects_from_table,
    summarise_scans,
)

SHAPE = (10, 9, 7)
SCORES = [0.2, 0.5, 0.5, 0.8, 0.9]  # repeated values exercise ties

# ---------------------------------------------------------------- reference implementations (slow, plain loops)


def ref_objects(inst):
    """[(id, voxel list, centre)] for every id present, in increasing id order."""
    out = []
    for i in sorted(set(inst[inst > 0].tolist())):
        vox = [tuple(v) for v in np.argwhere(inst == i)]
        out.append((i, vox, np.mean(vox, axis=0)))
    return out


def ref_match(ref_inst, pred_inst, scores, rule, spacing, limit):
    refs, preds = ref_objects(ref_inst), ref_objects(pred_inst)
    if rule != "overlap":  # every pair in range, by (-score, distance, reference, prediction), when both are free
        scale = np.array(spacing) if rule == "distance_mm" else np.ones(3)
        pairs = []
        for p, (_, _, pc) in enumerate(preds):
            for r, (_, _, rc) in enumerate(refs):
                d = math.sqrt(sum(((a - b) * s) ** 2 for a, b, s in zip(rc, pc, scale)))
                if d <= limit + 1e-9:
                    pairs.append((-scores[p], round(d, 9), r, p))
        match, taken = [-1] * len(preds), set()
        for _, _, r, p in sorted(pairs):
            if match[p] < 0 and r not in taken:
                match[p] = r
                taken.add(r)
        return match
    order = sorted(range(len(preds)), key=lambda p: (-scores[p], p))
    taken, match = set(), [-1] * len(preds)
    for p in order:
        best = None
        for r, (_, rvox, rc) in enumerate(refs):
            if r in taken:
                continue
            if rule == "overlap":
                shared = len(set(rvox) & set(preds[p][1]))
                if shared / len(rvox) >= limit:
                    key = (-shared, r)
                else:
                    continue
            else:
                scale = np.array(spacing) if rule == "distance_mm" else np.ones(3)
                d = math.sqrt(sum(((a - b) * s) ** 2 for a, b, s in zip(rc, preds[p][2], scale)))
                if d <= limit + 1e-9:
                    key = (d, r)
                else:
                    continue
            if best is None or key < best[0]:
                best = (key, r)
        if best is not None:
            match[p] = best[1]
            taken.add(best[1])
    return match


def ref_sens_at(fps_points, sens_points, f):
    """Sensitivity at f FP per scan: linear between the last point at or below f and the next one above."""
    lo = max(i for i, x in enumerate(fps_points) if x <= f)
    above = [i for i, x in enumerate(fps_points) if x > f]
    if not above:
        return sens_points[lo]
    hi = above[0]
    t = (f - fps_points[lo]) / (fps_points[hi] - fps_points[lo])
    return sens_points[lo] + t * (sens_points[hi] - sens_points[lo])


# ---------------------------------------------------------------- strategies


@st.composite
def instance_map(draw, max_objects=5):
    inst = np.zeros(SHAPE, np.int64)
    for i in range(1, draw(st.integers(0, max_objects)) + 1):
        c = [draw(st.integers(0, s - 1)) for s in SHAPE]  # centres may sit on the border
        h = [draw(st.integers(0, 3)) for _ in range(3)]
        inst[tuple(slice(max(a - b, 0), a + b + 1) for a, b in zip(c, h))] = i
    return inst  # later boxes may hide earlier ones entirely: ids need not be consecutive


@st.composite
def scan(draw):
    ref = draw(instance_map())
    pred = draw(instance_map())
    n_pred = len(set(pred[pred > 0].tolist()))
    scores = [draw(st.sampled_from(SCORES)) for _ in range(n_pred)]
    return ref, pred, scores


SPACINGS = st.sampled_from([(1.0, 1.0, 1.0), (0.5, 0.5, 2.0)])
RULES = st.sampled_from([("overlap", 0.1), ("distance_mm", 2.0), ("distance_voxels", 3.0)])


def _evaluate(ref, pred, scores, rule, limit, spacing):
    r = objects_from_instances(ref, spacing)
    p = objects_from_instances(pred, spacing)
    p.scores = np.array(scores, float)
    key = "min_overlap" if rule == "overlap" else "max_distance"
    return evaluate_scan(r, p, rule, **{key: limit})


@settings(max_examples=150, deadline=None)
@given(scan(), RULES, SPACINGS)
def test_per_scan_matching_equals_reference(s, rule_limit, spacing):
    ref, pred, scores = s
    rule, limit = rule_limit
    res = _evaluate(ref, pred, scores, rule, limit, spacing)
    expected = ref_match(ref, pred, scores, rule, spacing, limit)
    assert res["match"].tolist() == expected
    tp = sum(m >= 0 for m in expected)
    assert (res["tp"], res["fp"], res["fn"]) == (tp, len(expected) - tp, len(ref_objects(ref)) - tp)


@settings(max_examples=60, deadline=None)
@given(st.lists(scan(), min_size=1, max_size=4), RULES, SPACINGS)
def test_pooled_figures_equal_reference(scans, rule_limit, spacing):
    rule, limit = rule_limit
    results = [_evaluate(r, p, sc, rule, limit, spacing) for r, p, sc in scans]
    got = summarise_scans(results)
    tp = fp = fn = 0
    per_scan_f1, counts, all_preds = [], [], []
    for ref, pred, scores in scans:
        m = ref_match(ref, pred, scores, rule, spacing, limit)
        t = sum(x >= 0 for x in m)
        f, n = len(m) - t, len(ref_objects(ref)) - t
        tp, fp, fn = tp + t, fp + f, fn + n
        per_scan_f1.append(1.0 if t + f + n == 0 else 2 * t / (2 * t + f + n))
        counts.append((len(ref_objects(ref)), len(m)))
        all_preds += [(sc, x >= 0) for sc, x in zip(scores, m)]
    nan = float("nan")
    expected = {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "sensitivity": tp / (tp + fn) if tp + fn else nan,
        "fp_per_scan": fp / len(scans),
        "precision": tp / (tp + fp) if tp + fp else nan,
        "false_discovery_rate": fp / (tp + fp) if tp + fp else nan,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan,
        "f1_median_per_scan": float(np.median(per_scan_f1)),
        "count_abs_diff_mean": sum(abs(a - b) for a, b in counts) / len(counts),
    }
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, nan_ok=True), key
    # count agreement: ICC from the two-way ANOVA written out with loops
    if len(counts) >= 2:
        n, k = len(counts), 2
        grand = sum(a + b for a, b in counts) / (n * k)
        row_means = [(a + b) / 2 for a, b in counts]
        col_means = [sum(c[j] for c in counts) / n for j in range(k)]
        ssr = k * sum((m - grand) ** 2 for m in row_means)
        ssc = n * sum((m - grand) ** 2 for m in col_means)
        sse = sum((c[j] - row_means[i] - col_means[j] + grand) ** 2 for i, c in enumerate(counts) for j in range(k))
        msr, msc, mse = ssr / (n - 1), ssc / (k - 1), sse / ((n - 1) * (k - 1))
        d2, d3 = msr + (k - 1) * mse + k * (msc - mse) / n, msr + (k - 1) * mse
        assert got["icc_2_1"] == pytest.approx((msr - mse) / d2 if d2 else nan, nan_ok=True, abs=1e-9)
        assert got["icc_3_1"] == pytest.approx((msr - mse) / d3 if d3 else nan, nan_ok=True, abs=1e-9)
    # sensitivity by size: equivalent-sphere diameter of each reference object, binned 0-3-5-10-inf mm
    edges = [0.0, 3.0, 5.0, 10.0, math.inf]
    found_by_bin, n_by_bin = [0] * 4, [0] * 4
    for ref, pred, scores in scans:
        m = ref_match(ref, pred, scores, rule, spacing, limit)
        for r, (_, vox, _) in enumerate(ref_objects(ref)):
            d = (6.0 * len(vox) * float(np.prod(spacing)) / math.pi) ** (1 / 3)
            b = next(i for i in range(4) if edges[i] <= d < edges[i + 1])
            n_by_bin[b] += 1
            found_by_bin[b] += r in m
    for i, key in enumerate(["0-3", "3-5", "5-10", "10-inf"]):
        assert got["references_by_size_mm"][key] == n_by_bin[i]
        want = found_by_bin[i] / n_by_bin[i] if n_by_bin[i] else nan
        assert got["sensitivity_by_size_mm"][key] == pytest.approx(want, nan_ok=True)
    # FROC: one point per distinct score threshold, from the highest
    thresholds = sorted({sc for sc, _ in all_preds}, reverse=True)
    fps_points = [0.0] + [sum(1 for sc, h in all_preds if sc >= t and not h) / len(scans) for t in thresholds]
    if tp + fn:
        sens_points = [0.0] + [sum(1 for sc, h in all_preds if sc >= t and h) / (tp + fn) for t in thresholds]
        assert got["froc"]["fp_per_scan"] == pytest.approx(fps_points)
        assert got["froc"]["sensitivity"] == pytest.approx(sens_points)
        cpm = np.mean([ref_sens_at(fps_points, sens_points, f) for f in LUNA16_FPS])
        assert got["cpm"] == pytest.approx(cpm)
    else:
        assert math.isnan(got["cpm"])


# ---------------------------------------------------------------- hand cases


def _ball(shape, centre, r):
    g = np.indices(shape)
    return ((g - np.array(centre)[:, None, None, None]) ** 2).sum(0) <= r * r


def test_no_reference_objects():
    pred = np.zeros((8, 8, 8))
    pred[2:4, 2:4, 2:4] = 0.9
    res = evaluate_scan(objects_from_instances(np.zeros((8, 8, 8), int)), objects_from_map(pred))
    s = summarise_scans(
        [res, evaluate_scan(objects_from_instances(np.zeros((8, 8, 8), int)), objects_from_map(pred * 0))]
    )
    assert (s["tp"], s["fp"], s["fn"]) == (0, 1, 0)
    assert s["fp_per_scan"] == 0.5  # the empty scan counts in the denominator
    assert math.isnan(s["sensitivity"]) and s["precision"] == 0.0 and math.isnan(s["cpm"])


def test_no_predictions():
    ref = np.zeros((8, 8, 8), int)
    ref[1:3, 1:3, 1:3] = 1
    s = summarise_scans([evaluate_scan(objects_from_instances(ref), objects_from_map(np.zeros((8, 8, 8))))])
    assert (s["tp"], s["fp"], s["fn"], s["sensitivity"], s["fp_per_scan"]) == (0, 0, 1, 0.0, 0.0)
    assert math.isnan(s["precision"]) and s["f1"] == 0.0 and s["cpm"] == 0.0


def test_one_prediction_over_two_objects_counts_once():
    ref = np.zeros((12, 12, 12), int)
    ref[2:5, 2:4, 2:5] = 1  # 18 voxels
    ref[2:5, 5:8, 2:5] = 2  # 27 voxels
    pred = np.zeros((12, 12, 12))
    pred[2:5, 2:8, 2:5] = 0.8  # covers all of object 1 (18 voxels) and all of object 2 (27)
    res = evaluate_scan(objects_from_instances(ref), objects_from_map(pred), "overlap")
    assert res["match"].tolist() == [1]  # the object it overlaps most, not the first one
    assert (res["tp"], res["fp"], res["fn"]) == (1, 0, 1)


def test_duplicates_are_false_positives():
    ref = np.zeros((12, 12, 12), int)
    ref[3:7, 3:7, 3:7] = 1
    pred = np.zeros((12, 12, 12), int)
    pred[3:5, 3:7, 3:7] = 1
    pred[5:7, 3:7, 3:7] = 2  # two predictions over one object
    p = objects_from_instances(pred)
    p.scores = np.array([0.4, 0.9])
    res = evaluate_scan(objects_from_instances(ref), p, "overlap")
    assert res["match"].tolist() == [-1, 0]  # the higher score wins the object
    assert (res["tp"], res["fp"], res["fn"]) == (1, 1, 0)


@pytest.mark.parametrize("on_first", [False, True])
def test_equal_scores_match_the_closest_pairs_whatever_the_scan_order(on_first):
    """Binary predictions all score 1: the one lying on a reference takes it whichever comes first in scan order
    (greedy in scan order gave it the other reference, 4 mm away, when a neighbour came first)."""
    ref = np.zeros((20, 8, 8), int)
    ref[8, 4, 4], ref[12, 4, 4] = 1, 2
    pred = np.zeros((20, 8, 8), int)
    pred[8, 4, 4], pred[7, 4, 4] = (1, 2) if on_first else (2, 1)  # on ref 1; 1 mm from ref 1 and 5 mm from ref 2
    res = evaluate_scan(objects_from_instances(ref), objects_from_instances(pred), "distance_mm", max_distance=5.0)
    on, near = (0, 1) if on_first else (1, 0)
    assert res["match"][on] == 0 and res["match"][near] == 1 and (res["tp"], res["fp"], res["fn"]) == (2, 0, 0)
    p = objects_from_instances(pred)
    p.scores = np.where(np.arange(2) == near, 0.9, 0.5)  # a higher score goes first: the near one takes ref 1
    res = evaluate_scan(objects_from_instances(ref), p, "distance_mm", max_distance=5.0)
    assert res["match"][near] == 0 and res["match"][on] == 1


def test_overlap_threshold_is_ten_percent_inclusive():
    ref = np.zeros((10, 10, 12), int)
    ref[0:2, 0:5, 0:10] = 1  # 100 voxels
    for covered, hit in ((10, True), (9, False)):
        pred = np.zeros((10, 10, 12))
        pred.reshape(-1)[np.flatnonzero(ref.reshape(-1))[:covered]] = 1.0
        res = evaluate_scan(objects_from_instances(ref), objects_from_instances((pred > 0).astype(int)), "overlap")
        assert (res["tp"] == 1) is hit


def test_objects_touching_the_border():
    ref = np.zeros((6, 6, 6), int)
    ref[0, 0, 0] = 1
    ref[5, 5, 4:6] = 2
    pred = np.zeros((6, 6, 6))
    pred[0:2, 0, 0] = 0.7
    pred[5, 5, 5] = 0.9
    res = evaluate_scan(objects_from_instances(ref), objects_from_map(pred), "overlap")
    assert (res["tp"], res["fp"], res["fn"]) == (2, 0, 0)


def test_distance_rule_uses_anisotropic_spacing():
    ref = np.zeros((10, 10, 10), int)
    ref[5, 5, 2] = 1
    pred = np.zeros((10, 10, 10))
    pred[5, 5, 5] = 1.0  # 3 voxels away along k
    mm = lambda sp: evaluate_scan(  # noqa: E731
        objects_from_instances(ref, sp), objects_from_map(pred, spacing=sp), "distance_mm", max_distance=5.0
    )
    assert mm((1.0, 1.0, 1.0))["tp"] == 1  # 3 mm
    assert mm((1.0, 1.0, 2.0))["tp"] == 0  # 6 mm
    vox = evaluate_scan(
        objects_from_instances(ref, (1, 1, 2)), objects_from_map(pred, spacing=(1, 1, 2)), "distance_voxels"
    )
    assert vox["tp"] == 1  # GP-Unet rule: 3 voxels, whatever the spacing


@pytest.mark.parametrize("connectivity, n", [(6, 2), (18, 2), (26, 1)])
def test_connectivity(connectivity, n):
    m = np.zeros((5, 5, 5))
    m[1, 1, 1] = m[2, 2, 2] = 1
    assert len(objects_from_map(m, connectivity=connectivity)) == n


def test_table_objects_and_scores():
    rows = [{"i": 1, "j": 2, "k": 3, "score": 0.7, "label": "cmb", "volume_mm3": 8.0}]
    t = objects_from_table(rows, spacing=(0.5, 0.5, 2.0))
    assert t.centres.tolist() == [[1.0, 2.0, 3.0]] and t.sizes.tolist() == [16] and t.instance is None
    pred = np.zeros((6, 6, 6))
    pred[1:3, 1, 1] = [0.6, 0.95]
    assert objects_from_map(pred).scores.tolist() == [pytest.approx(0.95)]  # an object scores its maximum


def test_icc_matches_shrout_fleiss_table():
    # Shrout & Fleiss (1979), Table 2: 6 targets, 4 judges; ICC(2,1) = 0.29, ICC(3,1) = 0.71
    data = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    icc2, icc3 = icc(data)
    assert round(icc2, 2) == 0.29 and round(icc3, 2) == 0.71
    assert icc(np.array([[1, 1], [3, 3], [5, 5]])) == pytest.approx((1.0, 1.0))  # identical counts
    assert icc(np.array([[1, 2], [3, 4], [5, 6]]))[1] == pytest.approx(1.0)  # constant offset: consistent
    assert icc(np.array([[1, 2], [3, 4], [5, 6]]))[0] < 1.0  # but not in absolute agreement


def test_size_bins_and_classes():
    ref = np.zeros((20, 20, 20), int)
    ref[_ball(ref.shape, (5, 5, 5), 1)] = 1  # 7 voxels: diameter 2.4 mm
    ref[_ball(ref.shape, (14, 14, 14), 3)] = 2  # 123 voxels: 6.2 mm
    r = objects_from_instances(ref, labels={1: "epvs", 2: "lacune"})
    pred = np.zeros((20, 20, 20), int)
    pred[_ball(ref.shape, (14, 14, 14), 2)] = 1
    p = objects_from_instances(pred)
    p.labels = np.array(["epvs"], dtype=object)  # found, but with the wrong class
    s = summarise_scans([evaluate_scan(r, p, "overlap")])
    assert s["sensitivity_by_size_mm"]["0-3"] == 0.0 and s["sensitivity_by_size_mm"]["5-10"] == 1.0
    assert s["references_by_size_mm"] == {"0-3": 1, "3-5": 0, "5-10": 1, "10-inf": 0}
    assert s["sensitivity_by_class"] == {"epvs": 0.0, "lacune": 0.0}
    p.labels = np.array(["lacune"], dtype=object)
    assert summarise_scans([evaluate_scan(r, p, "overlap")])["sensitivity_by_class"]["lacune"] == 1.0


def test_froc_and_cpm_by_hand():
    # 2 scans, 4 references; predictions (score, hit): 0.9 T, 0.8 F, 0.7 T, 0.6 F, 0.5 F
    fps, sens, thr = froc_curve([0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 0, 0], num_references=4, num_scans=2)
    assert fps.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0, 1.5]
    assert sens.tolist() == [0.0, 0.25, 0.25, 0.5, 0.5, 0.5]
    # at 1/8: 0.25 + (0.125/0.5) * 0 = 0.25; 1/4: 0.25; 1/2: 0.5; 1, 2, 4, 8: 0.5
    assert cpm_score(fps, sens) == pytest.approx((0.25 + 0.25 + 0.5 + 0.5 * 4) / 7)
