# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Subjects as users have them (BIDS, subject folders) and the per-subject plan of detectors."""

from __future__ import annotations

import csv
import logging

import pytest
import yaml
from conftest import REPO

from bundle.data import DatalistError, inference_entries
from bundle.data.discover import discover, layout
from bundle.data.plan import STRUCTURAL_SUBSETS, detector_entries, main, plan


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


def test_folder_names_become_safe_ids_and_clashes_are_those_subjects_problem(tmp_path):
    _touch(tmp_path, "ok/swi.nii.gz", "Patient 001/swi.nii.gz", "a b/swi.nii.gz", "a_b/swi.nii.gz", "%%/swi.nii.gz")
    found = {s["folder"].rsplit("/", 1)[1]: s for s in discover(tmp_path)}
    assert found["Patient 001"]["subject"] == "Patient_001" and "problem" not in found["Patient 001"]
    assert found["Patient 001"]["notes"] == ["subject id 'Patient_001' from the folder name 'Patient 001'"]
    assert found["a b"]["problem"] == found["a_b"]["problem"] == "2 folders give the subject id a_b"
    assert "not a safe name" in found["%%"]["problem"] and "problem" not in found["ok"]
    assert [e["subject"] for e in inference_entries(tmp_path, modalities=["swi"])] == ["Patient_001", "ok"]


@pytest.mark.parametrize("name, modality", [
    ("T1_MPRAGE", "t1"), ("3DT1", "t1"), ("Ax_FSPGR_3D", "t1"), ("sT1W_3D_TFE", "t1"), ("t1_tse_tra", "t1"),
    ("t1_gre_3d", "t1"), ("T1_FLAIR", "t1"), ("FLAIR_3D", "flair"), ("t2_flair_tra", "flair"), ("SWI_Images", "swi"),
    ("swi_mag", "swi"), ("T2star", "t2star"), ("T2_star", "t2star"), ("T2-FFE", "t2star"), ("gre_hemo", "t2star"),
    ("t2_tse_tra", "t2"), ("T2w", "t2"), ("T1_post_contrast", None), ("T1_MPRAGE_post", None), ("pd_tse", None),
    ("gre_field_mapping", None), ("SWI_mIP", None), ("swi_pha", None), ("DWI", None), ("ADC", None),
    ("localizer", None), ("T1map", None), ("lesion_mask", None), ("CMB_mask", None), ("T1_brain_mask", "mask"),
    ("brainmask", "mask")])  # fmt: skip
def test_scanner_names_are_read_as_their_modality_or_skipped(name, modality):
    from bundle.data.discover import _name_modality

    assert _name_modality(name) == modality


def test_layout_edge_cases_sessions_hidden_files_links_and_case(tmp_path):
    _touch(tmp_path, "p1/ses1/t1.nii.gz", "p1/ses1/swi.nii.gz", "p1/ses2/t1.nii.gz", "p1/ses2/flair.nii.gz",
           "p2/T1/t1.nii.gz", "p2/FLAIR/flair.nii.gz", "p3/T1.NII.GZ", "p3/lesion_mask.nii.gz", "p3/brainmask.nii.gz",
           "store/abc123")  # fmt: skip
    (tmp_path / "p4").mkdir()
    (tmp_path / "p4" / "swi.nii.gz").symlink_to(tmp_path / "store" / "abc123")
    (tmp_path / "p4" / "t1.nii.gz").symlink_to(tmp_path / "store" / "missing")
    found = {s["subject"]: s for s in discover(tmp_path)}
    assert set(found["p1_ses1"]["modalities"]) == {"t1", "swi"}  # sessions: the same modality twice
    assert set(found["p1_ses2"]["modalities"]) == {"t1", "flair"}
    assert set(found["p2"]["modalities"]) == {"t1", "flair"}  # one folder per series: one subject
    assert found["p3"]["modalities"]["t1"].endswith("T1.NII.GZ") and found["p3"]["mask"].endswith("brainmask.nii.gz")
    assert found["p4"]["modalities"] == {"swi": str(tmp_path / "p4" / "swi.nii.gz")}  # the link's name, not abc123
    assert found["p4"]["notes"] == ["skipped t1.nii.gz: a broken link"]


def test_bids_entities_and_folders_without_anat(tmp_path):
    _touch(tmp_path, "sub-01/anat/._sub-01_T1w.nii.gz", "sub-01/anat/sub-01_T1w.nii.gz",
           "sub-01/anat/sub-01_ce-gadolinium_T1w.nii.gz", "sub-01/anat/sub-01_part-imag_swi.nii.gz",
           "sub-01/anat/sub-01_part-mag_swi.nii.gz", "sub-01/anat/sub-01_space-MNI152_desc-brain_mask.nii.gz",
           "sub-01/anat/sub-01_T2star.nii.gz", "sub-02/t1.nii.gz", "sub-02/flair.nii.gz")  # fmt: skip
    found = {s["subject"]: s for s in discover(tmp_path)}
    s1 = found["sub-01"]
    assert {m: p.rsplit("/", 1)[1] for m, p in s1["modalities"].items()} == {
        "t1": "sub-01_T1w.nii.gz", "swi": "sub-01_part-mag_swi.nii.gz", "t2star": "sub-01_T2star.nii.gz"}
    assert "mask" not in s1 and sorted(s1["notes"]) == sorted(["skipped sub-01_ce-gadolinium_T1w.nii.gz",
        "skipped sub-01_part-imag_swi.nii.gz", "skipped sub-01_space-MNI152_desc-brain_mask.nii.gz"])  # fmt: skip
    assert set(found["sub-02"]["modalities"]) == {"t1", "flair"}  # a plain subject folder named sub-*


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


def test_a_brain_mask_on_another_grid_is_left_out_with_a_line(tmp_path, caplog):
    """BIDS masks are often made on the T1: on the SWI's grid it is used, on another it is not (the microbleed
    detector then makes its own head mask)."""
    import nibabel as nib
    import numpy as np

    def nii(name, affine):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), affine), str(tmp_path / name))

    nii("sub-01/anat/sub-01_swi.nii.gz", np.eye(4))
    nii("sub-01/anat/sub-01_desc-brain_mask.nii.gz", np.eye(4))
    nii("sub-02/anat/sub-02_swi.nii.gz", np.eye(4))
    nii("sub-02/anat/sub-02_desc-brain_mask.nii.gz", np.diag([2.0, 2.0, 2.0, 1.0]))
    with caplog.at_level(logging.WARNING):
        entries = {e["subject"]: e for e in inference_entries(tmp_path, modalities=["swi"])}
    assert "mask" in entries["sub-01"] and "mask" not in entries["sub-02"]
    assert "sub-02: brain mask" in caplog.text and "is not on the grid of" in caplog.text
