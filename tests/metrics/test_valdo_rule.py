# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The VALDO 2021 rule (``bundle.metrics.valdo_scan``, ``--rule valdo``): the official code's answers on minimal
cases (read from it and checked by running it; docs/evaluation.md), and the command line."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest

from bundle.evaluation import main as evaluate_main
from bundle.metrics import valdo_scan

S = (10, 6, 8)


def _pts(points, value=1.0, shape=S):
    a = np.zeros(shape)
    for p in points:
        a[tuple(p)] = value
    return a


CASES = [  # (what, ref voxels, pred voxels, zooms, limit, official F1, TP, FP, FN)
    ("exactly at the limit: not a hit (strict <)", [(2, 2, 2)], [(2, 2, 4)], (1, 1, 1), 2.0, 0.0, 0, 1, 1),
    ("contested reference: the loser is not moved", [(2, 2, 2), (7, 2, 2)], [(2, 2, 2), (4, 2, 2)], (1, 1, 1),
     3.5, 0.5, 1, 1, 1),
    ("equidistant: the lower reference label", [(2, 2, 2), (6, 2, 2)], [(2, 2, 2), (4, 2, 2)], (1, 1, 1), 3.0,
     0.5, 1, 1, 1),
    ("distance in the prediction's voxel size", [(2, 2, 2)], [(2, 2, 3)], (1, 1, 5), 3.0, 0.0, 0, 1, 1),
    ("half-voxel slices", [(2, 2, 2)], [(2, 2, 3)], (1, 1, 0.5), 1.0, 1.0, 1, 0, 0),
    ("26-connected reference corner pair is one lesion", [(2, 2, 2), (3, 3, 3)], [(2, 2, 2)], (1, 1, 1), 1.0, 1.0,
     1, 0, 0),
    ("prediction empty", [(2, 2, 2)], [], (1, 1, 1), 3.0, 0.0, 0, 0, 1),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_official_answers_on_minimal_cases(case):
    _, ref, pred, zooms, limit, f1, tp, fp, fn = case
    res = valdo_scan(_pts(ref), _pts(pred), zooms, "microbleeds", limit)
    assert (res["tp"], res["fp"], res["fn"]) == (tp, fp, fn) and res["f1"] == pytest.approx(f1)
    assert res["count_abs_diff"] == abs(res["n_ref"] - res["n_pred"])
    assert valdo_scan(_pts(ref), _pts(pred), zooms, "lacunes", limit)["count_abs_diff"] is None  # not reported


def test_ties_empty_references_threshold_and_volume():
    ref, pred = _pts([(4, 2, 4)]), _pts([(4, 2, 2), (4, 2, 6)])  # two predictions 2 mm either side
    assert valdo_scan(ref, pred, (1, 1, 1), "microbleeds", 3.0)["f1"] == pytest.approx(2 / 3)
    official = valdo_scan(ref, pred, (1, 1, 1), "microbleeds", 3.0, official_ties=True)
    assert (official["tp"], official["fp"], official["f1"]) == (2, 0, 1.0)  # the official tie bug, on request
    for r, p in ((np.zeros(S), np.zeros(S)), (np.zeros(S), _pts([(2, 2, 2)]))):
        assert math.isnan(valdo_scan(r, p, (1, 1, 1), "microbleeds", 3.0)["f1"])  # empty reference: NaN
    soft = _pts([(2, 2, 2)], 0.5) + _pts([(7, 2, 2)], 0.49)  # >= 0.5 counts; its values give the volume
    res = valdo_scan(_pts([(2, 2, 2)]), soft, (1, 1, 2), "microbleeds", 1.0)
    assert res["n_pred"] == 1 and res["f1"] == 1.0 and res["abs_volume_diff"] == pytest.approx(0.5 * 2)
    assert res["mean_dice"] == pytest.approx(1.0)
    assert res["table"] == [[1, 1, 0.0, "TP"]]


def test_soft_reference_weights_and_threshold_check():
    """A 0.5 reference (raters disagree) weighs half in F1 and Dice (the official code's notes case E11: its own
    output, 0.8, puts the weights on the wrong rows; the intended weighting gives 0.75)."""
    ref = _pts([(2, 2, 2)], 0.5) + _pts([(6, 2, 2)], 1.0)
    pred = _pts([(2, 2, 2), (2, 2, 4), (6, 2, 2)])
    res = valdo_scan(ref, pred, (1, 1, 1), "microbleeds", 3.0)
    assert (res["tp"], res["fp"], res["fn"]) == (2, 1, 0)
    assert res["f1"] == pytest.approx(2 * 1.5 / (0 + 1 + 2 * 1.5)) and res["mean_dice"] == pytest.approx(0.7)
    assert res["abs_volume_diff"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="threshold"):
        valdo_scan(ref, pred, (1, 1, 1), threshold=0.0)


def test_epvs_rule_by_overlap():
    ref = _pts([(2, 2, 2)])
    ref[5, 1:5, 5] = 1  # a 4-voxel tube
    pred = _pts([(2, 2, 2)])
    pred[5, 1, 5] = 1  # IoU 1/4 with the tube
    res = valdo_scan(ref, pred, (1, 1, 1), "epvs", 0.25)
    # IoU must exceed the limit; the tube is overlapped, so it is not an FN (official), and the weak one is FP
    assert (res["tp"], res["fp"], res["fn"]) == (1, 1, 0) and res["f1"] == pytest.approx(2 / 3)
    assert valdo_scan(ref, pred, (1, 1, 1), "epvs", 0.2)["tp"] == 2
    # no prediction overlaps any reference (the official code raises KeyError here): all FP, all FN
    far = valdo_scan(ref, _pts([(8, 4, 1)]), (1, 1, 1), "epvs", 0.1)
    assert (far["tp"], far["fp"], far["fn"], far["f1"]) == (0, 1, 2, 0.0)


def test_command_line_rule_valdo(tmp_path, capsys):
    entries = []
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    for sid, ref, pred in (("a", [(2, 2, 2), (7, 2, 2)], [(2, 2, 2), (4, 2, 2)]), ("b", [], [(2, 2, 2)])):
        nib.save(nib.Nifti1Image(_pts(ref).astype(np.uint8), affine), str(tmp_path / f"{sid}_ref.nii.gz"))
        nib.save(nib.Nifti1Image(_pts(pred).astype(np.float32), affine), str(pred_dir / f"{sid}.nii.gz"))
        entries.append({"subject": sid, "image": [str(tmp_path / f"{sid}_ref.nii.gz")],
                        "label": str(tmp_path / f"{sid}_ref.nii.gz")})  # fmt: skip
    dl = tmp_path / "d.json"
    dl.write_text(json.dumps({"modalities": ["swi"], "classes": ["cmb"], "testing": entries}))
    args = ["--datalist", str(dl), "--predictions", str(pred_dir), "--output_dir", str(tmp_path / "o"),
            "--rule", "valdo", "--valdo_limit", "3.5"]  # fmt: skip
    assert evaluate_main(args) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["settings"]["task"] == "microbleeds" and m["settings"]["limit"] == 3.5
    assert [s["f1"] for s in m["per_scan"]][0] == 0.5 and m["per_scan"][1]["f1"] is None  # NaN -> null
    assert (m["pooled"]["tp"], m["pooled"]["fp"], m["pooled"]["fn"]) == (1, 2, 1)
    assert m["pooled"]["f1_mean"] == 0.5 and m["pooled"]["scans_f1_undefined"] == 1
    assert "TP 1, FP 2, FN 1" in capsys.readouterr().out
    # a soft (0/0.5/1) label keeps its 0.5 (half weight); an instance label is made 0/1
    soft = _pts([(2, 2, 2)], 0.5) + _pts([(7, 2, 2)], 1.0)
    nib.save(nib.Nifti1Image(soft.astype(np.float32), affine), str(tmp_path / "a_ref.nii.gz"))
    m = json.loads((tmp_path / "o" / "metrics.json").read_text()) if evaluate_main(args) == 0 else None
    assert m["per_scan"][0]["f1"] == pytest.approx(2 * 0.5 / (1.0 + 1 + 2 * 0.5))  # TP weighs 0.5, FN 1
    nib.save(nib.Nifti1Image((_pts([(2, 2, 2)]) + 6 * _pts([(7, 2, 2)])).astype(np.int16), affine),
             str(tmp_path / "a_ref.nii.gz"))  # fmt: skip
    assert evaluate_main(args) == 0
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["per_scan"][0]["f1"] == 0.5
    assert evaluate_main([*args, "--max_distance", "3"]) == 1 and "--valdo_limit" in capsys.readouterr().err
    assert evaluate_main([*args, "--instances"]) == 1 and "takes no instances" in capsys.readouterr().err
    table = tmp_path / "t.csv"
    table.write_text("subject,score,i,j,k\na,0.5,1,1,1\n")
    assert evaluate_main(["--datalist", str(dl), "--detections", str(table), "--output_dir", str(tmp_path / "x"),
                          "--rule", "valdo"]) == 1  # fmt: skip
    assert "give predictions, not a table" in capsys.readouterr().err


# ---- against the official code's answers, recorded as facts (tests/benchmarks/compare_valdo_official.py) ----------
FIXTURES = json.loads((__import__("pathlib").Path(__file__).parent / "valdo_official.json").read_text())
NEIGHBOURS = {1: 6, 2: 18, 3: 26}


def _arrays(pair):
    ref, pred = np.zeros(pair["shape"], np.float32), np.zeros(pair["shape"], np.float32)
    for i, j, k in pair["ref"]:
        ref[i, j, k] = 1.0
    for i, j, k, v in pair["pred"]:
        pred[i, j, k] = v
    return ref, pred


def _ours(pair, official_ties):
    ref, pred = _arrays(pair)
    zooms = np.asarray(pair["pred_zooms"], np.float32)  # the official code uses the prediction's header zooms
    return valdo_scan(ref, pred, zooms, pair["task"], pair["thresh_assign"], NEIGHBOURS[pair["connectivity"]],
                      official_ties=official_ties)  # fmt: skip


def _close(a, b):
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1e-6 * max(1, abs(b)))


def test_every_recorded_pair_equals_the_official_figures():
    """On 142 mask pairs (hand-made edge cases and random ones, 1 mm and 0.5 x 0.5 x 2 mm, Tasks 1-3) the valdo
    rule with the official tie behaviour gives the official TP, FP, FN, F1, count difference, mean Dice and volume
    difference, and the same match table."""
    pairs = FIXTURES["pairs"]
    assert len(pairs) >= 140 and {p["task"] for p in pairs} == {"microbleeds", "lacunes", "epvs"}
    for pair in pairs:
        off, res = pair["official"], _ours(pair, official_ties=True)
        got = {"TP": res["tp"], "FP": res["fp"], "FN_official": res["fn"], "n_ref": res["n_ref"],
               "n_pred": res["n_pred"]}  # fmt: skip
        assert got == {k: off[k] for k in got}, pair["id"]
        f1 = None if math.isnan(res["f1"]) else res["f1"]
        dice = None if math.isnan(res["mean_dice"]) else res["mean_dice"]
        assert _close(f1, off["F1"]) and _close(dice, off["mean_dice"]), pair["id"]
        assert _close(res["abs_volume_diff"], off["abs_vol_diff"]), pair["id"]
        assert _close(None if res["count_abs_diff"] is None else float(res["count_abs_diff"]), off["abs_count_diff"])
        official_rows = sorted((r["seg"], r["ref"], r["category"]) for r in off["table"])
        assert sorted((a, b, c) for a, b, _, c in res["table"]) == official_rows, pair["id"]


def test_without_the_tie_bug_only_tied_pairs_differ():
    tied = [p for p in FIXTURES["pairs"] if p["official"]["ties"]]
    assert len(tied) >= 10
    for pair in FIXTURES["pairs"]:
        res = _ours(pair, official_ties=False)
        if pair["official"]["ties"]:  # one TP per reference: the extra TPs become FPs
            assert res["tp"] < pair["official"]["TP"] and res["tp"] <= res["n_ref"], pair["id"]
        else:
            assert (res["tp"], res["fp"]) == (pair["official"]["TP"], pair["official"]["FP"]), pair["id"]


def test_official_crash_cases_give_all_false_positives():
    """Where the official code raises (EPVS: no prediction overlaps any reference), every prediction is FP."""
    assert len(FIXTURES["skipped"]) == 5
    for pair in FIXTURES["skipped"]:
        res = _ours(pair, official_ties=True)
        assert res["tp"] == 0 and res["fp"] == res["n_pred"] > 0 and res["fn"] == res["n_ref"] > 0 and res["f1"] == 0


def test_defaults_and_input_checks():
    ref = _pts([(2, 2, 2), (7, 2, 2)])
    on, off = _pts([(2, 2, 2)]), _pts([(2, 2, 3)])
    assert valdo_scan(ref, on, (0.5, 0.5, 0.5))["tp"] == 1  # default task microbleeds, limit 0.1 mm
    assert valdo_scan(ref, off, (0.5, 0.5, 0.5))["tp"] == 0  # 0.5 mm is beyond the default limit
    assert valdo_scan(ref, on * 0.6, (1, 1, 1), threshold=0.7)["n_pred"] == 0
    assert valdo_scan(ref, on, (1, 1, 1), threshold=1.0)["n_pred"] == 1  # 1 is a valid threshold
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=rf"threshold must be in \(0, 1\], got {bad}"):
            valdo_scan(ref, on, (1, 1, 1), threshold=bad)
    with pytest.raises(ValueError, match=r"task must be one of \('epvs', 'microbleeds', 'lacunes'\), got 'cmb'"):
        valdo_scan(ref, on, (1, 1, 1), task="cmb")
    with pytest.raises(ValueError, match=r"reference \(10, 6, 8\) and prediction \(10, 6, 7\) must be 3D of one shape"):
        valdo_scan(ref, on[..., :7], (1, 1, 1))
    with pytest.raises(ValueError, match=r"reference \(10, 6\) and prediction \(10, 6\) must be 3D"):
        valdo_scan(ref[..., 0], on[..., 0], (1, 1, 1))
    faint = ref + _pts([(5, 5, 7)], 0.04)  # rounded to 0.1 like the official code: no lesion
    assert valdo_scan(faint, on, (1, 1, 1))["n_ref"] == 2


def test_epvs_table_marks_a_prediction_overlapping_nothing():
    ref = _pts([(2, 2, 2)])
    res = valdo_scan(ref, _pts([(2, 2, 2), (7, 4, 6)]), (1, 1, 1), "epvs")
    assert res["table"] == [[1, 1, 1.0, "TP"], [2, 0, -math.inf, "FP"]]
