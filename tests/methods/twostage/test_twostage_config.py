# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The two-stage microbleed detector from its real configs: both stages train, mimics are mined, a rerun resumes,
inference writes the detections table, evaluation writes metrics.json, and a scan without microbleeds works."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import GRID_2MM, REPO, config_files, run_bundle
from monai.bundle import ConfigParser

from bundle.inference import COLUMNS, read_detections
from bundle.methods.twostage import read_mimics

TRAIN = ["configs/common.yaml", "configs/twostage/train.yaml", "configs/twostage/quick.yaml"]
INFER = TRAIN + ["configs/twostage/inference.yaml"]
EVAL = INFER + ["configs/twostage/evaluate.yaml"]
MEMBERS = ("unet_bs20", "unet_bs30", "cnn_bs20", "cnn_bs30")


@pytest.fixture(scope="module")
def cohort(cmb_2mm):
    """Five 2 mm subjects (seed 6): training sub-0000 (no microbleed), sub-0001 (11), sub-0002 (5)."""
    return cmb_2mm


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmbrun")
    args = [
        "training", "--config_file", config_files(TRAIN), "--datalist", str(cohort), "--output_dir", str(out),
        "--stage1_iterations", "3", "--stage2_iterations", "3", "--crossval", "true", "--progress", "false",
        "--tile_size", "[48, 48, 32]", *GRID_2MM,
    ]  # fmt: skip
    log = run_bundle(args)
    return out, args, log


def test_training_runs_both_stages_with_out_of_fold_mining(trained, cohort):
    out, _, log = trained
    ckpts = {p.stem for p in (out / "checkpoints").glob("*.pt")}
    # leave-two-out over 3 training subjects: folds {0, 1} and {2}; stage 1 per fold for mining, stage 2 per fold
    # for the cross-validation, then the final four networks
    want = {f"{f}_{m}" for f in ("fold00", "fold01", "final") for m in MEMBERS}
    assert ckpts == want
    # mined mimics: out of fold (the fold that held the subject out), at or above the mining threshold, clear of
    # every microbleed (5 mm from its centre, less the working grid's rounding), world = the voxel's position
    entries = {e["subject"]: e for e in json.loads(cohort.read_text())["training"]}
    n_mimics = 0
    for fold, sid in ((0, "sub-0000"), (0, "sub-0001"), (1, "sub-0002")):
        mimics = read_mimics(out / "mimics" / f"{sid}_mimics.csv")
        assert mimics.ndim == 2 and mimics.shape[1] == 3
        with open(out / "mimics" / f"{sid}_mimics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [[int(r[a]) for a in "ijk"] for r in rows] == mimics.tolist()
        centres = [les["centre_mm"] for les in json.loads((cohort.parent / entries[sid]["lesions"]).read_text())]
        for r in rows:
            assert int(r["fold"]) == fold and float(r["stage1_score"]) >= 0.15 and r["subject"] == sid
            world = np.array([float(r[a]) for a in "xyz"])
            assert all(np.linalg.norm(world - np.asarray(c)) >= 5.0 - 1.8 for c in centres)
        n_mimics += len(rows)
    assert n_mimics > 0
    assert "mimics mined" in log and "saved the detector (2 + 2 networks)" in log
    summary = json.loads((out / "crossval" / "summary.json").read_text())
    for stage in ("stage1", "two_stage"):
        assert summary[stage]["pooled"]["scans"] == 3
        assert [f["subjects"] for f in summary[stage]["per_fold"]] == [["sub-0000", "sub-0001"], ["sub-0002"]]
        assert summary[stage]["pooled"]["tp"] + summary[stage]["pooled"]["fn"] == 16  # 0 + 11 + 5 microbleeds
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {f"final_{m}/loss" for m in MEMBERS} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("final_unet_bs30/loss")) == 3


def test_the_detector_is_one_state_dict_loaded_by_the_inference_config(trained, cohort):
    out, _, _ = trained
    parser = ConfigParser()
    parser.read_config([str(REPO / c) for c in INFER])
    parser.update({"bundle_root": str(REPO), "datalist": str(cohort), "device": "cpu"})
    net = parser.get_parsed_content("network_def")
    state = torch.load(out / "models" / "cmb_detector.pt", weights_only=True)
    net.load_state_dict(state)  # strict: every key of the four networks, nothing else
    final = torch.load(out / "checkpoints" / "final_cnn_bs30.pt", weights_only=True)
    torch.testing.assert_close(net.stage2[1].state_dict()["classifier.3.weight"], final["classifier.3.weight"])
    assert len(net.stage1) == 2 and len(net.stage2) == 2 and net.threshold == 0.2


def test_a_rerun_resumes_from_the_finished_networks(trained):
    out, args, _ = trained
    before = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").glob("*.pt")}
    log = run_bundle(args)
    assert log.count("loaded the finished network") == 12 and "SupervisedTrainer - INFO - Epoch[1] Complete" not in log
    assert "SupervisedTrainer - INFO - Epoch[1] Complete" in trained[2]  # the first run did train
    assert before == {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").glob("*.pt")}


def test_inference_and_evaluation_write_the_table_and_metrics(trained, cohort, tmp_path):
    out, _, _ = trained
    ev = tmp_path / "eval"
    args = ["--datalist", str(cohort), "--output_dir", str(ev), "--checkpoint", str(out / "models/cmb_detector.pt")]
    run_bundle(["--config_file", config_files(EVAL), *args, "--tile_size", "[48, 48, 32]", *GRID_2MM])
    header = (ev / "detections.csv").read_text().splitlines()[0].split(",")
    assert tuple(header) == COLUMNS
    rows = read_detections(ev / "detections.csv")
    assert set(rows) <= {"sub-0004"}  # the testing subject only
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["settings"]["score_threshold"] == 0.5 and metrics["settings"]["rule"] == "distance_mm"
    assert metrics["pooled"]["tp"] + metrics["pooled"]["fn"] == 3  # sub-0004 holds 3 microbleeds
    n_all = sum(len(v) for v in rows.values())
    assert metrics["per_scan"][0]["n_pred"] == sum(1 for r in rows.get("sub-0004", []) if r["score"] >= 0.5)
    assert n_all >= metrics["per_scan"][0]["n_pred"]  # the table keeps every candidate for the FROC curve


def test_detector_on_a_scan_without_microbleeds(trained, cohort, tmp_path):
    """sub-0000 has no microbleed: inference runs, every row is a false positive, sensitivity is undefined."""
    out, _, _ = trained
    d = json.loads(cohort.read_text())
    d["testing"] = [e for e in d["training"] if e["subject"] == "sub-0000"]
    datalist = cohort.parent / "no_cmb.json"
    datalist.write_text(json.dumps(d))
    ev = tmp_path / "eval0"
    args = ["--datalist", str(datalist), "--output_dir", str(ev), "--checkpoint", str(out / "models/cmb_detector.pt")]
    run_bundle(["--config_file", config_files(EVAL), *args, "--tile_size", "[48, 48, 32]", *GRID_2MM])
    metrics = json.loads((ev / "metrics.json").read_text())
    scan = metrics["per_scan"][0]
    assert scan["subject"] == "sub-0000" and scan["n_ref"] == 0 and scan["tp"] == 0 and scan["fp"] == scan["n_pred"]
    assert metrics["pooled"]["sensitivity"] is None  # NaN written as null: no microbleed to find
