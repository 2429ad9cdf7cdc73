# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Rater heads of the structural U-Net: the object features they read, their fitting on detections matched to the
raters' answers (a profile is learnt, the file loads with weights_only and names a feature mismatch), their columns
in the detections, and the profile figures that tell heads apart where answer agreement cannot."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from bundle.data.vocabulary import ANSWERS
from bundle.methods.unet import (
    ClassMapDetections,
    RaterHeads,
    brain_medians,
    feature_names,
    fit_rater_heads,
    load_rater_heads,
    object_features,
)
from bundle.methods.unet.raters import rater_loss
from bundle.metrics import rater_profiles


def _tube_and_ball():
    """A 40^3 brain (T1 and T2 at 1, FLAIR absent): a tube along i (11 voxels, cross-section a 3 x 3 plus) and a
    ball of radius 8 whose one-voxel shell is brighter in T2 (1.5, a rim; fewer voxels than the ball, so a shell that
took in the ball would read the ball); both dark in T1 (0.2), bright in T2 (3)."""
    g = np.indices((40, 40, 40))
    inst = np.zeros((40, 40, 40), np.int32)
    plus = (np.abs(g[1] - 10) + np.abs(g[2] - 10) <= 1) & (g[0] >= 5) & (g[0] < 16)
    d2 = ((g - np.array([27, 27, 27])[:, None, None, None]) ** 2).sum(0)
    inst[plus], inst[d2 <= 64] = 1, 2
    t1, t2 = np.ones((40, 40, 40), np.float32), np.ones((40, 40, 40), np.float32)
    t2[(d2 > 64) & (d2 <= 100)] = 1.5
    t1[inst > 0], t2[inst > 0] = 0.2, 3.0
    return np.stack([t1, t2, np.zeros_like(t1)]), inst


def test_object_features_describe_shape_signal_and_rim():
    images, inst = _tube_and_ball()
    names = feature_names(["epvs", "lacune"], 3)
    inside = np.ones(inst.shape, bool)
    f = object_features(images, inst, np.array([0.9, 0.7]), np.array([[0.8, 0.2], [0.1, 0.9]]), inside,
                        brain_medians(images, inside))  # fmt: skip
    row = [dict(zip(names, r)) for r in f]
    tube, ball = row
    assert tube["log_volume_mm3"] == pytest.approx(np.log1p(55)) and ball["log_volume_mm3"] == pytest.approx(
        np.log1p((inst == 2).sum()))
    assert tube["elongation"] > 3.0 and ball["elongation"] < 1.1  # a tube is long, a ball is not
    assert 1.5 < tube["width_mm"] < 3.0 and 13.0 < ball["width_mm"] < 16.0  # 3 mm across the plus; 2 x 8 mm ball
    assert (tube["score"], tube["p_lacune"], ball["p_lacune"]) == pytest.approx((0.9, 0.2, 0.9))
    assert tube["c0_core"] == pytest.approx(-0.8) and tube["c1_core"] == pytest.approx(2.0)
    assert ball["c1_shell"] == pytest.approx(0.5) and tube["c1_shell"] == pytest.approx(0.0)  # only the ball's rim
    assert [tube[f"c{k}_present"] for k in range(3)] == [1.0, 1.0, 0.0]
    assert tube["c2_core"] == tube["c2_shell"] == 0.0  # the absent FLAIR


def _scan(folder, rng, n_side: int = 7):
    """A label map of single-voxel objects on an 8-voxel grid with lesion records whose raters answer by a profile:
    rater 2 says "nothing" about objects of feature a > 0.5, the others give the class; and detection rows with the
    feature columns at every object plus, far from any, false detections (feature b = 1)."""
    lab = np.zeros((8 * n_side,) * 3, np.int16)
    names = feature_names(["epvs", "lacune"], 1)
    records, rows = [], []
    for n, c in enumerate(np.ndindex(n_side, n_side, n_side)):
        ijk = np.array(c) * 8 + 3
        lab[tuple(ijk)] = n + 1
        a = float(rng.random())
        records.append({"id": n + 1, "class": "epvs",
                        "raters": ["epvs", "nothing" if a > 0.5 else "epvs", "epvs", "epvs", "epvs", "epvs"]})
        rows.append({"subject": "s", "score": 1.0, **dict(zip("ijk", ijk.astype(float))),
                     **{f"f_{k}": 0.0 for k in names}, "f_log_volume_mm3": a})  # fmt: skip
    for ijk in rng.integers(0, 8 * n_side, (60, 3)) // 8 * 8 + 7:  # between the objects: > 5 mm from each
        rows.append({"subject": "s", "score": 0.5, **dict(zip("ijk", ijk.astype(float))),
                     **{f"f_{k}": 0.0 for k in names}, "f_log_volume_mm3": float(rng.random()), "f_score": 1.0})
    nib.save(nib.Nifti1Image(lab, np.eye(4)), folder / "s_label.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(lab.shape, np.float32), np.eye(4)), folder / "s_t2.nii.gz")
    (folder / "s_lesions.json").write_text(json.dumps(records))
    entry = {"subject": "s", "image": ["s_t2.nii.gz"], "label": "s_label.nii.gz", "lesions": "s_lesions.json"}
    empty = {**entry, "subject": "no-detections"}  # a scan where nothing was detected adds nothing
    (folder / "datalist.json").write_text(json.dumps({"testing": [entry, empty]}))
    cols = list(rows[0])
    (folder / "detections.csv").write_text("\n".join([",".join(cols)] + [",".join(str(r[c]) for c in cols)
                                                                          for r in rows]) + "\n")  # fmt: skip
    return names


def test_fitted_heads_learn_each_raters_profile_and_load_safely(tmp_path):
    names = _scan(tmp_path, np.random.default_rng(0))
    out = tmp_path / "heads.pt"
    info = fit_rater_heads(str(tmp_path / "datalist.json"), str(tmp_path / "detections.csv"), str(out), steps=600,
                           lr=1e-2)  # fmt: skip
    assert info["objects"] == 343 + 60 and info["features"] == list(names)
    heads = load_rater_heads(out, names)  # torch.load(weights_only=True) inside
    x = torch.zeros(3, len(names))
    x[:, 0] = torch.tensor([0.9, 0.1, 0.3])
    x[2, names.index("score")] = 1.0  # a false detection: every rater says "nothing"
    with torch.no_grad():
        answer = heads(x).argmax(-1).numpy()
    nothing, epvs = ANSWERS.index("nothing"), ANSWERS.index("epvs")
    assert answer[0].tolist() == [epvs, nothing, epvs, epvs, epvs, epvs]  # rater 2's profile, and only theirs
    assert answer[1].tolist() == [epvs] * 6 and answer[2].tolist() == [nothing] * 6
    with pytest.raises(ValueError, match="heads.pt"):
        load_rater_heads(out, names[::-1])  # features of another detector
    only = fit_rater_heads(str(tmp_path / "datalist.json"), str(tmp_path / "detections.csv"),
                           str(tmp_path / "objects.pt"), steps=1, unmatched=False)  # fmt: skip
    with open(tmp_path / "detections.csv", newline="") as f:
        doubtful = sum(float(r["f_log_volume_mm3"]) > 0.5 for r in list(csv.DictReader(f))[:343])
    assert only["objects"] == 343 and only["answers"]["nothing"] == doubtful  # rater 2's answers only
    with pytest.raises(FileExistsError):
        fit_rater_heads(str(tmp_path / "datalist.json"), str(tmp_path / "detections.csv"), str(out), steps=1)


def test_detections_carry_each_heads_answer_and_probabilities(tmp_path):
    prob = torch.zeros(3, 20, 20, 20)
    prob[0] = 1.0
    prob[:, 3:6, 4, 4] = torch.tensor([0.0, 0.9, 0.1])[:, None]  # an EPVS-like call
    prob[:, 12:15, 12:15, 12:15] = torch.tensor([0.0, 0.2, 0.8])[:, None, None, None]  # a lacune-like call
    image = MetaTensor(torch.ones(6, 20, 20, 20), affine=torch.eye(4))
    image.meta.update(original_affine=np.eye(4), spatial_shape=np.array([20, 20, 20]))
    names = feature_names(["epvs", "lacune"], 3)
    heads = RaterHeads(len(names), 6, 4)
    torch.nn.init.normal_(heads.heads[1].weight, std=3.0)
    torch.save({"state_dict": heads.state_dict(), "features": list(names)}, tmp_path / "h.pt")
    det = ClassMapDetections(["epvs", "lacune"], 0.5, rater_heads=str(tmp_path / "h.pt"), features=True)
    rows = det("s", image, {"pred": prob})
    assert len(rows) == 2 and det.raters[:6] == tuple(f"rater{k}" for k in range(1, 7))
    x = np.array([[r[f"f_{f}"] for f in names] for r in rows], np.float32)
    assert x[0, names.index("log_volume_mm3")] == pytest.approx(np.log1p(3), abs=1e-4)
    with torch.no_grad():
        want = torch.softmax(heads(torch.as_tensor(x)), -1).numpy()
    for row, w in zip(rows, want):
        for k in range(6):
            p = [row[f"rater{k + 1}_p_{a}"] for a in ANSWERS]
            assert p == pytest.approx(w[k], abs=2e-4) and sum(p) == pytest.approx(1.0, abs=1e-3)
            assert row[f"rater{k + 1}"] == ANSWERS[int(np.argmax(w[k]))]
    plain = ClassMapDetections(["epvs", "lacune"], 0.5)("s", image, {"pred": prob})
    assert not any(c.startswith(("rater", "f_")) for c in plain[0])  # nothing added without heads or features
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": heads.state_dict(), "features": list(names[:-1])}, bad)
    with pytest.raises(ValueError, match="bad.pt"):
        ClassMapDetections(["epvs", "lacune"], rater_heads=str(bad))  # at config time


def test_profiles_tell_heads_apart_where_answer_agreement_cannot():
    """Three raters who all give the class most often, one leaning to "nothing", one to "undecided": every head's
    most probable answer is the class, so agreement is the same for all heads; the likelihood finds each rater's."""
    rng = np.random.default_rng(0)
    lean = np.array([[0.02, 0.03, 0.9, 0.05], [0.3, 0.03, 0.6, 0.07], [0.05, 0.03, 0.6, 0.32]])
    answers = np.stack([rng.choice(4, 2000, p=p) for p in lean], 1)
    f = rater_profiles(answers, np.broadcast_to(lean[None], (2000, 3, 4)))
    assert f["own_head_best"] == [True, True, True] and f["best_head"] == [0, 1, 2]
    assert min(f["own_head_best_bootstrap"]) > 0.95 and min(f["own_head_margin"]) > 0
    agree = np.array(f["agreement"])
    assert np.allclose(agree, agree[0]) and agree[0].argmax() == 0  # every head agrees most with rater 1
    np.testing.assert_allclose(f["answer_share"][1][0], 0.3, atol=0.03)
    swapped = rater_profiles(answers, np.broadcast_to(lean[[1, 0, 2]][None], (2000, 3, 4)))
    assert swapped["best_head"] == [1, 0, 2] and swapped["own_head_best"] == [False, False, True]


def test_ability_heads_recover_each_raters_skill_and_leaning(tmp_path):
    """Raters simulated by an item-response process (a shared difficulty per object, each rater's own ability and
    leaning among the wrong answers): the "ability" heads recover the abilities' order and each leaning, give
    proper answer distributions, and save and load with their kind."""
    rng = np.random.default_rng(0)
    n, ability = 4000, np.array([1.5, 1.0, 1.0, 0.5, 0.0, 2.2])
    leaning = np.ones((6, 3))  # wrong answers: nothing, the other class, undecided
    leaning[1, 0], leaning[2, 2], leaning[3, 1] = 6.0, 6.0, 6.0  # rater 2 "nothing", 3 "undecided", 4 the other
    x = rng.normal(size=(n, 3)).astype(np.float32)
    truth = np.where(x[:, 1] > 0, ANSWERS.index("epvs"), ANSWERS.index("lacune"))
    answers = np.repeat(truth[:, None], 6, 1)
    wrong = rng.random((n, 6)) < 1 / (1 + np.exp(-(1.5 * x[:, :1] - 1.0 - ability)))
    for i, r in zip(*np.nonzero(wrong)):
        other = ANSWERS.index("lacune") if truth[i] == ANSWERS.index("epvs") else ANSWERS.index("epvs")
        options = [ANSWERS.index("nothing"), other, ANSWERS.index("undecided")]
        answers[i, r] = options[rng.choice(3, p=leaning[r] / leaning[r].sum())]
    torch.manual_seed(0)
    heads = RaterHeads(3, 6, 8, kind="ability")
    xt, yt, tt = torch.as_tensor(x), torch.as_tensor(answers), torch.as_tensor(truth)
    opt = torch.optim.Adam(heads.parameters(), lr=2e-2)
    for _ in range(400):
        opt.zero_grad()
        rater_loss(heads, xt, yt, tt).backward()
        opt.step()
    learnt = heads.ability.detach().numpy()
    assert list(np.argsort(learnt[[0, 1, 3, 4, 5]])) == [3, 2, 1, 0, 4], learnt  # 5 < 4 < 2 < 1 < 6
    assert abs(learnt[1] - learnt[2]) < 0.3  # raters 2 and 3 are as able
    with torch.no_grad():
        p = heads(xt).exp()
    assert torch.allclose(p.sum(-1), torch.ones(n, 6), atol=1e-5)
    ep = torch.as_tensor((x[:, 0] > 1.0) & (truth == ANSWERS.index("epvs")))  # doubtful EPVS: errors are likely
    q = p[ep].mean(0)
    q[:, ANSWERS.index("epvs")] = 0.0
    q = q / q.sum(-1, keepdim=True)  # each head's wrong answers about them
    for r, answer in ((1, "nothing"), (2, "undecided"), (3, "lacune")):
        k = ANSWERS.index(answer)
        assert abs(q[r, k] - 0.75) < 0.1, (r, answer, q[:, k])  # 6 / (6 + 1 + 1)
        assert (q[[0, 4, 5], k] - 1 / 3).abs().max() < 0.1, (r, answer, q[:, k])  # the raters without a leaning
    names = [f"f{k}" for k in range(3)]
    torch.save({"state_dict": heads.state_dict(), "features": names, "kind": "ability"}, tmp_path / "a.pt")
    back = load_rater_heads(tmp_path / "a.pt", names)
    assert back.kind == "ability" and back.n_raters == 6 and torch.allclose(back(xt[:5]), heads(xt[:5]))
    with pytest.raises(ValueError, match="kind"):
        RaterHeads(3, 6, 8, kind="confusion")
