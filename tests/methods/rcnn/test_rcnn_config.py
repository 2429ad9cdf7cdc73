# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The multirater RCNN from its real configs: every training step runs a few iterations, a rerun resumes, the one
state dict loads strictly into the inference config, inference writes the table and the box maps on the input
grid, evaluation writes the paper's figures, and a scan without objects works."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO, config_files, run_bundle
from monai.bundle import ConfigParser

from bundle.methods.rcnn import rcnn_columns

TRAIN = ["configs/common.yaml", "configs/rcnn/train.yaml", "configs/rcnn/quick.yaml"]
INFER = TRAIN + ["configs/rcnn/inference.yaml"]
EVAL = INFER + ["configs/rcnn/evaluate.yaml"]
STEPS = ("backbone", "rpn_cls", "rpn_joint", "rcn_cls", "rcn_joint")
# a 3 mm working grid: cheaper than 1 mm, and unlike the 2 mm input grid, so rows and maps are mapped back to it
SMALL = ["--patch_size", "[24, 24, 24]", "--patch_margin", "2", "--max_proposals", "20", "--progress", "false",
         "--working_spacing", "[3.0, 3.0, 3.0]"]


@pytest.fixture(scope="module")
def cohort(structural_small):
    """Training sub-0000 and sub-0001 (T1 and FLAIR only), testing sub-0002, a blank scan and sub-0002's T2 alone
    (conftest's ``structural_small``)."""
    folder, d, e = structural_small
    d = {**d, "training": [e["sub-0000"], e["t1_flair"]], "validation": [],
         "testing": [e["sub-0002"], e["blank"], e["t2only"]]}  # fmt: skip
    path = folder / "datalist_rcnn.json"
    path.write_text(json.dumps(d))
    return path


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("rcnnrun")
    iters = ["--backbone_iterations", "3", "--rpn_iterations", "2", "--rcn_iterations", "2"]
    args = ["training", "--config_file", config_files(TRAIN), "--datalist", str(cohort), "--output_dir", str(out)]
    log = run_bundle(args + iters + SMALL)
    return out, args + iters + SMALL, log


def test_every_step_trains_from_the_config(trained):
    out, _, _ = trained
    ckpts = sorted(p.stem for p in (out / "checkpoints").glob("*.pt"))
    assert ckpts == [f"rcnn_detector_{n}_{s}" for n, s in enumerate(STEPS)]
    assert (out / "models" / "rcnn_detector.pt").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    want = {"0_backbone/distance", "1_rpn_cls/rpn_cls", "1_rpn_cls/rpn_reg", "2_rpn_joint/rpn_reg", "3_rcn_cls/rcn_cls",
            "3_rcn_cls/rcn_raters", "4_rcn_joint/rcn_reg"}  # fmt: skip
    assert want <= tags
    assert not any(t.startswith("0_backbone/rpn") or t.startswith("2_rpn_joint/rcn") for t in tags)
    assert len(events.Scalars("0_backbone/loss")) == 3 and len(events.Scalars("4_rcn_joint/loss")) == 2
    # the first RPN step passes the regression term through a sigmoid, the second does not
    assert all(0.5 <= e.value < 1.0 for e in events.Scalars("1_rpn_cls/rpn_reg"))


def test_rerun_resumes_and_trains_nothing(trained):
    out, args, _ = trained
    before = torch.load(out / "models" / "rcnn_detector.pt", weights_only=True)
    log = run_bundle(args)
    assert "resumed after step 4 (rcn_joint)" in log
    after = torch.load(out / "models" / "rcnn_detector.pt", weights_only=True)
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_one_state_dict_loads_strictly_into_the_inference_network(trained, cohort):
    out, _, _ = trained
    parser = ConfigParser()
    parser.read_config([str(REPO / c) for c in INFER])
    parser.update({"bundle_root": str(REPO), "datalist": str(cohort), "patch_size": [24, 24, 24], "patch_margin": 2})
    net = parser.get_parsed_content("network_def")
    state = torch.load(out / "models" / "rcnn_detector.pt", weights_only=True)
    net.load_state_dict(state, strict=True)
    assert {k.split(".")[0] for k in state} == {"backbone", "distance_head", "rpn", "rcn"}


def test_inference_and_evaluation_write_table_maps_and_figures(trained, cohort, tmp_path):
    out, _, _ = trained
    args = ["evaluation", "--config_file", config_files(EVAL), "--datalist", str(cohort), "--output_dir", str(tmp_path),
            "--checkpoint", str(out / "models" / "rcnn_detector.pt"), *SMALL]  # fmt: skip
    run_bundle(args)
    with open(tmp_path / "detections.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    raters = [f"rater{k}" for k in range(1, 7)]
    answers = ("nothing", "lacune", "epvs", "undecided")
    heads = [f"{c}_p_{a}" for c in raters for a in answers]
    assert reader.fieldnames[-34:] == ["p_nothing", "p_lacune", "p_epvs", "p_undecided", *raters, *heads]
    assert {r["subject"] for r in rows} <= {"sub-0002", "blank", "t2only"} and "t2only" in {r["subject"] for r in rows}
    for r in rows:
        p = [float(r[c]) for c in ("p_nothing", "p_lacune", "p_epvs", "p_undecided")]
        assert sum(p) == pytest.approx(1.0, abs=1e-4) and float(r["score"]) == pytest.approx(1 - p[0], abs=1e-5)
        assert r["label"] == ("lacune" if p[1] > p[2] else "epvs")
        for c in raters:  # each head's answer is its most probable one, and its probabilities sum to 1
            ph = [float(r[f"{c}_p_{a}"]) for a in answers]
            assert sum(ph) == pytest.approx(1.0, abs=1e-3) and r[c] == answers[int(np.argmax(ph))]
    d = json.loads(cohort.read_text())
    for entry in d["testing"]:
        sid = entry["subject"]
        boxes = nib.load(tmp_path / "maps" / f"{sid}_boxes.nii.gz")
        image = nib.load(cohort.parent / entry["image"][0])
        assert boxes.shape == image.shape and np.allclose(boxes.affine, image.affine, atol=1e-4)
        ids = set(np.unique(np.asarray(boxes.dataobj))) - {0}
        mine = [r for r in rows if r["subject"] == sid]
        assert ids <= {int(r["lesion_id"]) for r in mine}  # every box drawn belongs to a written row
        for r in mine[:5]:  # a box sits on its row's centre (rows are on the image grid: centres inside it)
            i, j, k = (int(round(float(r[c]))) for c in "ijk")
            assert all(0 <= v < s for v, s in zip((i, j, k), boxes.shape))
            assert np.asarray(boxes.dataobj)[i, j, k] > 0
            world = image.affine[:3, :3] @ [float(r[c]) for c in "ijk"] + image.affine[:3, 3]
            np.testing.assert_allclose(world, [float(r[c]) for c in "xyz"], atol=0.01)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    scans = {s["subject"]: s for s in metrics["per_scan"]}
    assert scans["blank"]["n_ref"] == 0 and scans["blank"]["tp"] == 0  # a scan without objects: only FPs
    assert scans["sub-0002"]["n_ref"] == scans["t2only"]["n_ref"] == 15
    figures = json.loads((tmp_path / "multirater.json").read_text())
    lesions = json.loads((cohort.parent / d["testing"][0]["lesions"]).read_text())
    # the paper's inclusion rule; sub-0002 and its T2 alone hold the same objects
    assert figures["references"] == 2 * sum(r["n_voxels"] >= 5 for r in lesions)
    assert figures["scans"] == 3 and figures["fp_per_scan"] <= figures["settings"]["max_fp"] == 10.0
    # the operating point follows max_fp: at 0.5 FP per scan the threshold rises and nothing is found more often
    from bundle.methods.rcnn import multirater_figures

    strict = multirater_figures(str(cohort), str(tmp_path / "detections.csv"), "testing", max_fp=0.5)
    assert strict["fp_per_scan"] <= 0.5 and strict["threshold"] >= figures["threshold"]
    assert strict["sensitivity"] <= figures["sensitivity"]
    rows_at = [r for r in rows if float(r["score"]) >= figures["threshold"]]
    assert round(figures["fp_per_scan"] * 3) <= len(rows_at)  # FPs are rows at or above the operating score
    assert sum(b["n"] for b in figures["sensitivity_by_size"]) == figures["references"]
    assert set(figures["overlap_vs_agreement"]) == {"all_agree", "some_nothing", "mannwhitney_p"}


def test_columns_of_the_config_match_the_network():
    cols = rcnn_columns(6)
    assert cols[-30:-24] == tuple(f"rater{k}" for k in range(1, 7))  # each head's answer, then its probabilities
    assert cols[-24:-20] == ("rater1_p_nothing", "rater1_p_lacune", "rater1_p_epvs", "rater1_p_undecided")
    assert cols[-1] == "rater6_p_undecided"
