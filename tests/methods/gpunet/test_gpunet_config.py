# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""GP-Unet from its real configs: training reads counts only (the training subjects' label maps are deleted), a
rerun resumes, inference writes the table, the counts and the maps on the input grid with exactly the predicted
number of objects, evaluation uses the 3-voxel rule, the baselines' configs run, and a scan without objects works."""

from __future__ import annotations

import csv
import json
import os
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_cli import bundle_run
from conftest import REPO, blank_subject, config_files, run_bundle
from monai.bundle import ConfigParser
from scipy import ndimage as ndi

from bundle.data.synth import generate_cohort

TRAIN = ["configs/common.yaml", "configs/gpunet/train.yaml", "configs/gpunet/quick.yaml"]
INFER = TRAIN + ["configs/gpunet/inference.yaml"]
EVAL = INFER + ["configs/gpunet/evaluate.yaml"]
SMALL = ["--roi_size_gpunet", "[36, 28, 24]", "--features", "[4, 8, 8]", "--batch_size", "2",
         "--working_spacing_gpunet", "[2.0, 2.0, 2.0]"]  # the cohort's own 2 mm grid: small crops


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Five 2 mm EPVS subjects (seed 11): three for training and one for validation, as counts only (their label
    maps and lesion records deleted from disk), one for testing, plus a blank test scan (one intensity, no
    object)."""
    root = generate_cohort("epvs", 5, tmp_path_factory.mktemp("gpunet"), seed=11, spacing=(2.0,) * 3, progress=False)
    folder = root.parent
    d = json.loads(root.read_text())
    entries = [e for split in ("training", "validation", "testing") for e in d[split]]
    for e in entries[:4]:
        for key in ("label", "lesions", "mimics"):
            os.remove(folder / e.pop(key))
    test = entries[4]
    blank = blank_subject(folder, test, ("epvs",))
    d.update(training=entries[:3], validation=[entries[3]], testing=[test, blank])
    path = folder / "datalist_gpunet.json"
    path.write_text(json.dumps(d))
    return path


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpunetrun")
    args = [
        "training",
        "--config_file",
        config_files(TRAIN),
        "--datalist",
        str(cohort),
        "--output_dir",
        str(out),
        *SMALL,
    ]
    log = run_bundle(args + ["--max_epochs", "2"])
    return out, args, log


def test_training_from_counts_only(trained, cohort):
    out, _, log = trained
    d = json.loads(cohort.read_text())
    assert all("label" not in e and "lesions" not in e for e in d["training"] + d["validation"])
    assert (out / "models" / "gpunet.pt").is_file() and (out / "models" / "best_count_mae_gpunet.pt").is_file()
    assert "val_count_mae" in log
    parser = ConfigParser()
    parser.read_config([str(REPO / c) for c in TRAIN])
    parser.update({"bundle_root": str(REPO), "datalist": str(cohort), "features": [4, 8, 8]})
    torch.manual_seed(0)
    fresh = parser.get_parsed_content("network_def")
    state = torch.load(out / "models" / "gpunet.pt", weights_only=True)
    fresh.load_state_dict(state, strict=True)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard" / "gpunet"))
    events.Reload()
    losses = [e.value for e in events.Scalars("train_loss")]
    assert len(losses) == 4 and all(np.isfinite(losses))  # 3 scans, batch 2: 2 iterations per epoch, 2 epochs
    assert len(events.Scalars("val_count_mae")) == 2


def test_rerun_resumes_from_the_last_epoch(trained):
    out, args, _ = trained
    log = run_bundle(args + ["--max_epochs", "3"])
    assert "Epoch: 3/3" in log and "Epoch: 1/3" not in log and "Epoch: 2/3" not in log  # only the third epoch ran
    assert (out / "checkpoints" / "gpunet" / "last_checkpoint_epoch=3.pt").is_file()


def test_inference_writes_count_matched_objects_on_the_input_grid(trained, cohort, tmp_path):
    out, _, _ = trained
    run_bundle(["evaluation", "--config_file", config_files(EVAL), "--datalist", str(cohort), "--output_dir",
                str(tmp_path), "--checkpoint", str(out / "models" / "gpunet.pt"), *SMALL])  # fmt: skip
    rows = list(csv.DictReader((tmp_path / "detections.csv").open()))
    counts = {r["subject"]: r for r in csv.DictReader((tmp_path / "count_predictions.csv").open())}
    assert set(counts) == {"sub-0004", "blank"}
    d = json.loads(cohort.read_text())
    for entry in d["testing"]:
        sid = entry["subject"]
        c = counts[sid]
        assert int(c["count_used"]) == max(round(float(c["predicted_count"])), 0)
        mine = [r for r in rows if r["subject"] == sid]
        assert len(mine) == int(c["detected"]) <= int(c["count_used"])
        image = nib.load(cohort.parent / entry["image"][0])
        heat = nib.load(tmp_path / "maps" / f"{sid}_heatmap.nii.gz")
        objects = nib.load(tmp_path / "maps" / f"{sid}_objects.nii.gz")
        for m in (heat, objects):
            assert m.shape == image.shape and np.allclose(m.affine, image.affine, atol=1e-4)
        inst = np.asarray(objects.dataobj)
        roi = np.asarray(nib.load(cohort.parent / entry["roi"]).dataobj) > 0
        assert not inst[~roi].any()  # objects lie in the ROI
        assert set(np.unique(inst)) - {0} == {int(r["lesion_id"]) for r in mine}
        h = np.asarray(heat.dataobj)
        for r in mine:  # the score is the map's maximum over the object
            assert float(r["score"]) == pytest.approx(float(h[inst == int(r["lesion_id"])].max()), rel=1e-4)
        # blobs = basins (the default): each object is one connected piece of the map above the threshold around
        # one of its local maxima in the ROI, so the count is met whenever the ROI has enough maxima
        inside = np.where(roi, h.astype(np.float64), -np.inf)
        is_max = roi & (inside == ndi.maximum_filter(inside, size=3, mode="constant", cval=-np.inf))
        assert int(c["detected"]) == min(int(c["count_used"]), int(is_max.sum()))  # met whenever maxima allow
        for r in mine:
            obj = inst == int(r["lesion_id"])
            assert ndi.label(obj, np.ones((3, 3, 3)))[1] == 1 and is_max[obj].any()
            assert h[obj].min() >= float(c["threshold"]) - 1e-6
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["settings"]["rule"] == "distance_voxels" and metrics["settings"]["max_distance"] == 3.0
    scans = {s["subject"]: s for s in metrics["per_scan"]}
    assert scans["blank"]["n_ref"] == 0 and scans["blank"]["tp"] == 0  # valid data: only FPs
    assert scans["sub-0004"]["n_ref"] == d["testing"][0]["count"]
    assert "false_discovery_rate" in metrics["pooled"]


def test_baseline_configs_run(trained, cohort, tmp_path):
    out, args, _ = trained
    run_bundle(["training", "--config_file", config_files(TRAIN + ["configs/gpunet/methods/d_regression.yaml"]),
                "--datalist", str(cohort), "--output_dir", str(out), *SMALL, "--max_epochs", "1"])  # fmt: skip
    assert (out / "models" / "gpunet_regression.pt").is_file()
    for method, ckpt in (("a_intensity", "gpunet.pt"), ("b_saliency_regression", "gpunet_regression.pt"),
                         ("c_saliency_fcn", "gpunet.pt"), ("d_regression", "gpunet_regression.pt"),
                         ("f_intensity_blend", "gpunet.pt")):  # fmt: skip
        folder = tmp_path / method
        files = INFER + [f"configs/gpunet/methods/{method}.yaml"]
        run_bundle(["inference", "--config_file", config_files(files), "--datalist", str(cohort), "--output_dir",
                    str(folder), "--checkpoint", str(out / "models" / ckpt), *SMALL])  # fmt: skip
        heat = np.asarray(nib.load(folder / "maps" / "sub-0004_heatmap.nii.gz").dataobj)
        roi = np.asarray(nib.load(cohort.parent / json.loads(cohort.read_text())["testing"][0]["roi"]).dataobj) > 0
        expect = {  # every method's map has a checked property (no method falls through)
            "a_intensity": lambda: heat.max() == pytest.approx(1.0, abs=1e-5) and heat.min() >= 0.0,  # scaled
            "f_intensity_blend": lambda: 0.5 - 1e-5 <= heat.max() <= 1.0 + 1e-5 and heat.min() >= 0.0,  # halves
            "b_saliency_regression": lambda: heat.min() >= 0.0 and heat[roi].max() > 0.0,  # absolute gradients
            "c_saliency_fcn": lambda: heat.min() >= 0.0 and heat[roi].max() > 0.0,
            "d_regression": lambda: np.isfinite(heat).all() and heat[roi].std() > 0.0,  # an upsampled class map
        }
        assert expect[method](), method
        counts = {r["subject"]: r for r in csv.DictReader((folder / "count_predictions.csv").open())}
        assert int(counts["sub-0004"]["detected"]) <= int(counts["sub-0004"]["count_used"])


def test_paper_blobs_are_whole_connected_components(trained, cohort, tmp_path):
    out, _, _ = trained
    run_bundle(["inference", "--config_file", config_files(INFER), "--datalist", str(cohort), "--output_dir",
                str(tmp_path), "--checkpoint", str(out / "models" / "gpunet.pt"), *SMALL,
                "--count_blobs", "components"])  # fmt: skip
    entry = json.loads(cohort.read_text())["testing"][0]
    c = {r["subject"]: r for r in csv.DictReader((tmp_path / "count_predictions.csv").open())}["sub-0004"]
    h = np.asarray(nib.load(tmp_path / "maps" / "sub-0004_heatmap.nii.gz").dataobj).astype(np.float64)
    inst = np.asarray(nib.load(tmp_path / "maps" / "sub-0004_objects.nii.gz").dataobj)
    roi = np.asarray(nib.load(cohort.parent / entry["roi"]).dataobj) > 0
    above, k = ndi.label(roi & (h >= float(c["threshold"]) - 1e-6), np.ones((3, 3, 3)))
    assert inst.max() == int(c["detected"]) >= 1
    for i in range(1, inst.max() + 1):  # every object is one whole component of the ROI's map above the threshold
        ids = np.unique(above[inst == i])
        assert len(ids) == 1 and ids[0] > 0 and np.array_equal(above == ids[0], inst == i)
    # an unknown kind of blob stops the run with a message that names the choices
    cmd = [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file", config_files(INFER),
           "--datalist", str(cohort), "--output_dir", str(tmp_path / "bad"), "--checkpoint",
           str(out / "models" / "gpunet.pt"), *SMALL, "--count_blobs", "peaks"]  # fmt: skip
    bad = bundle_run(cmd, REPO)
    assert bad.returncode != 0
    assert "blobs must be one of ('components', 'basins') (see docs/gpunet.md), got 'peaks'" in bad.stderr
