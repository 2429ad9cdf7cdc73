# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The segmentation workflow config trains for a few iterations with whole-volume lesion-wise validation."""

from __future__ import annotations

import json
import os
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_cli import bundle_run
from conftest import REPO
from monai.bundle import ConfigParser

from bundle.data import load_inference_list
from bundle.inference import COLUMNS, read_detections

CONFIGS = ["configs/common.yaml", "configs/unet/train.yaml", "configs/unet/quick.yaml"]
LOSSES = ("dice", "ce", "gdl", "tversky", "dice_ce", "gdl_ce")


@pytest.fixture(scope="module")
def seg_cohort(cmb_2mm):
    """Five 2 mm microbleed subjects; the validation subject (index 3 of seed 6) holds 4 microbleeds."""
    return cmb_2mm


def test_training_logs_lesion_wise_figures(seg_cohort, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "--config_file", str([str(REPO / c) for c in CONFIGS]),
        "--datalist", str(seg_cohort), "--output_dir", str(out), "--max_iterations", "6", "--val_interval", "3",
        "--loss_name", "dice_ce", "--validate_training_volumes", "true",
    ]  # fmt: skip
    res = bundle_run(cmd, REPO, {**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert "val_lesion_sensitivity" in log and "val_lesion_fp_per_scan" in log and "train_loss" in log
    assert "train_lesion_sensitivity" in log  # the paper also validates on the training volumes
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    for tag in ("train_loss", "val_lesion_sensitivity", "val_lesion_fp_per_scan", "train_lesion_sensitivity"):
        assert tag in tags, tags
    steps = [e.step for e in events.Scalars("val_lesion_fp_per_scan")]
    assert steps == [3, 6]  # logged against training iterations, every val_interval
    sens = [e.value for e in events.Scalars("val_lesion_sensitivity")]
    assert all(0.0 <= v <= 1.0 for v in sens)  # the validation subject has microbleeds: sensitivity is defined
    assert len(events.Scalars("train_loss")) == 6
    assert (out / "checkpoints" / "best_network.pt").is_file()
    last = list((out / "checkpoints").glob("last_checkpoint_epoch=*.pt"))
    state = torch.load(last[0], weights_only=True)
    assert len(last) == 1 and {"network", "optimizer", "trainer", "best_network_score"} <= set(state)
    assert len(state["best_network_score"]["_saved"]) == 1  # the best score so far travels with the state

    # a second run with a larger budget resumes from the last checkpoint instead of starting over
    resume = [*cmd[: cmd.index("--max_iterations")], "--max_iterations", "9", "--val_interval", "3"]
    res = bundle_run(resume, REPO, {**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert (
        "Restored all variables from" in res.stdout + res.stderr
        and "last_checkpoint_epoch=2.pt" in res.stdout + res.stderr
    )
    assert (out / "checkpoints" / "last_checkpoint_epoch=3.pt").is_file()
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("val_lesion_fp_per_scan")] == [3, 6, 9]  # only the new block was trained

    # inference + evaluation configs with the checkpoint just written
    inf = tmp_path / "inference"
    configs = [*CONFIGS, "configs/unet/inference.yaml", "configs/unet/evaluate.yaml"]
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "--config_file", str([str(REPO / c) for c in configs]),
        "--datalist", str(seg_cohort), "--output_dir", str(inf),
        "--checkpoint", str(out / "checkpoints" / "best_network.pt"), "--threshold", "0.3",
    ]  # fmt: skip
    res = bundle_run(cmd, REPO, {**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stderr[-3000:]
    header = (inf / "detections.csv").read_text().splitlines()[0].split(",")
    assert header == list(COLUMNS)
    rows = [r for rows in read_detections(inf / "detections.csv").values() for r in rows]
    testing = load_inference_list(seg_cohort)
    affine = nib.load(testing[0]["image"][0]).affine
    for r in rows:
        assert r["subject"] == testing[0]["subject"] and r["label"] == "cmb"
        np.testing.assert_allclose(
            affine[:3, :3] @ [r["i"], r["j"], r["k"]] + affine[:3, 3], [r["x"], r["y"], r["z"]], atol=0.01
        )
    prob = nib.load(inf / "maps" / f"{testing[0]['subject']}_prob.nii.gz")  # aligned to the input image
    np.testing.assert_allclose(prob.affine, affine, atol=1e-4)
    assert prob.shape == nib.load(testing[0]["image"][0]).shape
    assert 0.0 <= float(prob.get_fdata().min()) and float(prob.get_fdata().max()) <= 1.0
    metrics = json.loads((inf / "metrics.json").read_text())
    assert metrics["settings"]["split"] == "testing" and metrics["pooled"]["scans"] == 1
    assert metrics["pooled"]["tp"] + metrics["pooled"]["fp"] == len(rows)


@pytest.mark.parametrize("loss_name", LOSSES)
def test_each_loss_is_one_override_away(loss_name):
    parser = ConfigParser()
    parser.read_config([str(REPO / c) for c in CONFIGS])
    parser["loss_name"] = loss_name
    loss = parser.get_parsed_content("loss")
    logits = torch.randn(2, 2, 8, 8, 8, requires_grad=True)
    target = (torch.rand(2, 1, 8, 8, 8) > 0.9).float()
    value = loss(logits, target)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value) and logits.grad is not None
    if loss_name == "tversky":
        assert (loss.alpha, loss.beta) == (0.3, 0.7)


@pytest.mark.parametrize("lower, best_of", [(False, 0.8), (True, 0.2)])
def test_key_figure_direction_drives_checkpointing_and_early_stopping(lower, best_of):
    parser = ConfigParser()
    parser.read_config([str(REPO / c) for c in CONFIGS])
    parser.update({"key_figure": "fp_per_scan" if lower else "f1", "key_figure_lower_is_better": lower})
    better = parser.get_parsed_content("better")
    assert better(best_of, 0.5) and not better(0.5, best_of)
    stop = parser.get_parsed_content("early_stopping")

    class _State:
        metrics = {"val_lesion": 0.5}
        key_metric_name = "val_lesion"

    class _Engine:
        state = _State()

    assert stop.score_function(_Engine()) == (-0.5 if lower else 0.5)  # ignite stops when this stops increasing
    saver = parser.get_parsed_content("best_network_saver")  # keeps the best network by the key figure
    assert saver._key_metric_checkpoint.score_function(_Engine()) == (-0.5 if lower else 0.5)


def test_training_starts_from_init_weights_unless_it_resumes(tmp_path):
    """--init_weights (fine-tuning): the network starts from that state dict; a run with its own last checkpoint
    resumes from it instead."""
    from ignite.engine import Engine

    def parsed(out):
        parser = ConfigParser()
        parser.read_config([str(REPO / c) for c in CONFIGS])
        parser.update({"init_weights": str(tmp_path / "start.pt"), "output_dir": str(out), "device": "cpu"})
        return parser

    donor = parsed(tmp_path / "a").get_parsed_content("network_def")
    torch.manual_seed(5)
    for p in donor.parameters():
        torch.nn.init.normal_(p)
    torch.save(donor.state_dict(), tmp_path / "start.pt")
    parser = parsed(tmp_path / "a")
    network, loader = parser.get_parsed_content("network"), parser.get_parsed_content("init_loader")
    assert not torch.equal(next(network.parameters()), next(donor.parameters()))
    engine = Engine(lambda e, b: None)
    loader.attach(engine)
    engine.run([0], max_epochs=1)
    for mine, theirs in zip(network.state_dict().values(), donor.state_dict().values()):
        assert torch.equal(mine, theirs)
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    torch.save({"network": donor.state_dict()}, tmp_path / "b" / "checkpoints" / "last_checkpoint_epoch=1.pt")
    assert parsed(tmp_path / "b").get_parsed_content("init_loader") is None


@pytest.mark.parametrize("workers", [0, 2])
def test_training_loader_keeps_its_workers_between_epochs(workers):
    """One epoch is a few batches (the cached volumes / batch size): without persistent workers the loader forks its
    workers, each a copy of the process holding the cache, again every few iterations (2.5 it/s on a GPU)."""
    parser = ConfigParser()
    parser.read_config([str(REPO / c) for c in CONFIGS])
    parser["train#dataloader#num_workers"] = workers
    assert parser.get_parsed_content("train#dataloader#persistent_workers") is (workers > 0)
