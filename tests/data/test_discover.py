# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Subjects as users have them (BIDS, subject folders) and the per-subject plan of detectors."""

from __future__ import annotations

import csv
import logging

import pytest
import yaml
from conftest import REPO

from bundle.data import DatalistError, inference_entries
from bundle.data.discover import STRUCTURAL_SUBSETS, detector_entries, discover, layout, main, plan


def _touch(root, *names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


@pytest.fixture
def bids(tmp_path):
    root = tmp_path / "bids"
    _touch(root, "dataset_description.json",
           "sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_T2w.nii.gz", "sub-01/anat/sub-01_FLAIR.nii.gz",
           "sub-01/anat/sub-01_swi.nii.gz", "sub-01/anat/sub-01_part-phase_swi.nii.gz",
           "sub-01/anat/sub-01_desc-brain_mask.nii.gz", "sub-01/anat/sub-01_T1w.json",
           "sub-02/ses-1/anat/sub-02_ses-1_run-1_T1w.nii.gz", "sub-02/ses-1/anat/sub-02_ses-1_run-2_T1w.nii.gz",
           "sub-02/ses-1/anat/sub-02_ses-1_T2w.nii", "sub-02/ses-2/anat/sub-02_ses-2_FLAIR.nii.gz",
           "sub-03/anat/sub-03_T2starw.nii.gz", "sub-04/func/sub-04_bold.nii.gz")  # fmt: skip
    return root


def test_bids_subjects_sessions_masks_and_choices(bids):
    assert layout(bids) == "bids"
    found = {s["subject"]: s for s in discover(bids)}
    assert list(found) == ["sub-01", "sub-02_ses-1", "sub-02_ses-2", "sub-03", "sub-04"]
    s1 = found["sub-01"]
    assert set(s1["modalities"]) == {"t1", "t2", "flair", "swi"}
    assert s1["modalities"]["swi"].endswith("sub-01_swi.nii.gz")  # not the phase image
    assert s1["mask"].endswith("sub-01_desc-brain_mask.nii.gz")
    assert s1["notes"] == ["skipped sub-01_part-phase_swi.nii.gz"]
    s2 = found["sub-02_ses-1"]
    assert s2["modalities"]["t1"].endswith("run-1_T1w.nii.gz") and s2["modalities"]["t2"].endswith("_T2w.nii")
    assert "2 t1 images: used sub-02_ses-1_run-1_T1w.nii.gz, not sub-02_ses-1_run-2_T1w.nii.gz" in s2["notes"]
    assert "no image" in found["sub-04"]["problem"] and "problem" not in s1


def test_plan_says_what_runs_on_which_images_and_why_not(bids):
    plans = {s["subject"]: plan(s) for s in discover(bids)}
    assert plans["sub-01"]["cmb"] == {"run": True, "inputs": ["swi"], "why": "SWI"}
    assert plans["sub-01"]["structural"]["inputs"] == ["t1", "t2", "flair"]
    t1_t2 = plans["sub-02_ses-1"]["structural"]  # not a trained input: T2 alone, the better single input
    assert t1_t2["run"] and t1_t2["inputs"] == ["t2"] and "T1 not used" in t1_t2["why"]
    assert plans["sub-02_ses-1"]["cmb"] == {"run": False, "inputs": [], "why": "no SWI or T2*-weighted image"}
    flair = plans["sub-02_ses-2"]["structural"]
    assert not flair["run"] and flair["why"].startswith("FLAIR alone is not a trained input")
    assert plans["sub-03"]["cmb"]["inputs"] == ["t2star"] and not plans["sub-03"]["structural"]["run"]
    assert not any(p["run"] for p in plans["sub-04"].values())


def test_structural_subsets_are_the_configs_trained_inputs():
    config = yaml.safe_load((REPO / "configs" / "unet" / "structural.yaml").read_text())
    names = yaml.safe_load((REPO / "configs" / "common.yaml").read_text())["modalities_rcnn"]
    assert sorted(STRUCTURAL_SUBSETS) == sorted(tuple(names[i] for i in s) for s in config["modality_subsets"])


def test_subject_folders_with_common_names(tmp_path):
    _touch(tmp_path, "p1/T1_MPRAGE.nii.gz", "p1/t2_flair.nii.gz", "p1/SWI.nii.gz", "p1/SWI_mIP.nii.gz",
           "p1/brainmask.nii.gz", "p1/readme.txt", "p2/anat/T2w.nii", "p2/anat/scan.nii.gz", "p3/notes.txt",
           ".hidden/t1.nii.gz")  # fmt: skip
    assert layout(tmp_path) == "subjects"
    found = {s["subject"]: s for s in discover(tmp_path)}
    assert list(found) == ["p1", "p2", "p3"]
    mods = {m: p.rsplit("/", 1)[1] for m, p in found["p1"]["modalities"].items()}
    assert mods == {"t1": "T1_MPRAGE.nii.gz", "flair": "t2_flair.nii.gz", "swi": "SWI.nii.gz"}
    assert found["p1"]["mask"].endswith("p1/brainmask.nii.gz") and found["p1"]["notes"] == ["skipped SWI_mIP.nii.gz"]
    assert list(found["p2"]["modalities"]) == ["t2"] and found["p2"]["notes"] == ["skipped anat/scan.nii.gz"]
    assert "no image" in found["p3"]["problem"]


def test_inference_entries_take_the_subjects_each_detector_runs_on(bids, caplog):
    with caplog.at_level(logging.WARNING):
        cmb = inference_entries(bids, modalities=["swi"])
    assert [e["subject"] for e in cmb] == ["sub-01", "sub-03"]
    assert cmb[1]["modalities"] == ["swi"] and cmb[1]["image"][0].endswith("sub-03_T2starw.nii.gz")
    assert cmb[0]["mask"].endswith("sub-01_desc-brain_mask.nii.gz") and "mask" not in cmb[1]
    assert "sub-02_ses-2: microbleed detector not run: no SWI or T2*-weighted image" in caplog.text
    structural = inference_entries(bids, modalities=["t1", "t2", "flair"], optional_modalities=True)
    assert [(e["subject"], e["modalities"]) for e in structural] == [
        ("sub-01", ["t1", "t2", "flair"]), ("sub-02_ses-1", ["t2"])]
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # a config that needs a brain mask: the subjects without one are left out
        assert [e["subject"] for e in inference_entries(bids, modalities=["swi"], require=["mask"])] == ["sub-01"]
    assert "sub-03: not run: no mask found in its folder, which this config needs" in caplog.text
    with pytest.raises(DatalistError, match="no subject has the \\['roi'\\] this config needs"):
        inference_entries(bids, modalities=["swi"], require=["roi"])
    with pytest.raises(DatalistError, match="not for inputs \\['t2'\\]; write a datalist"):
        inference_entries(bids, modalities=["t2"])  # a config of another method
    with pytest.raises(ValueError, match="unknown detector"):
        detector_entries(discover(bids), "gpunet")


def test_unsafe_folder_name_is_a_problem_of_that_subject_only(tmp_path):
    _touch(tmp_path, "ok/swi.nii.gz", "bad name/swi.nii.gz")
    found = {s["subject"]: s for s in discover(tmp_path)}
    assert "not a safe name" in found["bad name"]["problem"] and "problem" not in found["ok"]
    assert [e["subject"] for e in inference_entries(tmp_path, modalities=["swi"])] == ["ok"]


def test_command_line_plan(bids, tmp_path, capsys):
    out = tmp_path / "plan.csv"
    assert main([str(bids), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 10 and rows[0] == {"subject": "sub-01", "detector": "cmb", "run": "yes", "inputs": "swi",
                                           "why": "SWI", "notes": "skipped sub-01_part-phase_swi.nii.gz"}  # fmt: skip
    assert "sub-04\tcmb\tno\tno image" in capsys.readouterr().out
    assert main([str(bids), "--out", str(out)]) == 1  # never overwritten
    assert "exists" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 1
