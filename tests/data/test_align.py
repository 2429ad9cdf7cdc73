# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""A subject's modalities on different grids: brought onto the first's grid through the affines, head motion
undone by rigid registration, and a subject whose scans still do not overlap flagged in alignment.csv and the QC
report (conftest's ``structural_small``: 2 mm T1, T2, FLAIR of one session)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from bundle.data import DatalistError, LoadSubjectd
from bundle.data.synth.regrid import move, reslice
from bundle.handlers import AlignmentWriter, write_index
from bundle.handlers.qc_report import qc_flags

NAMES = ["t1", "t2", "flair"]


@pytest.fixture(scope="module")
def scans(structural_small):
    folder, _, entries = structural_small
    e = entries["sub-0002"]
    return [str(folder / p) for p in e["image"]], str(folder / e["mask"]), str(folder / e["label"])


def _load(images, align, names=NAMES, **extra):
    out = LoadSubjectd(keys=["image", "mask", "label"], align=align, lesions_key=None)(
        {"subject": "s1", "image": images, "modalities": names, **extra}
    )
    return out, json.loads(out["image"].meta["alignment"])


def _corr(a, b, inside) -> float:
    return float(np.corrcoef(np.asarray(a)[inside], np.asarray(b)[inside])[0, 1])


def test_a_scan_on_another_grid_and_rotated_is_brought_onto_the_first_through_the_affines(scans, tmp_path):
    images, mask, _ = scans
    oblique = str(reslice(images[0], tmp_path / "t1_oblique.nii.gz", (1.2, 1.2, 1.2), (10.0, 0.0, 5.0)))
    with pytest.raises(DatalistError, match="s1: image file .*t1_oblique.nii.gz is not on the grid of"):
        _load([images[1], oblique], "fail", ["t2", "t1"])
    same, _ = _load(images, "fail", mask=mask)
    out, report = _load([images[1], oblique, images[2]], "affine", ["t2", "t1", "flair"], mask=mask)
    assert out["image"].shape == same["image"].shape and np.allclose(out["image"].affine, same["image"].affine)
    brain = same["mask"][0].numpy() > 0
    assert _corr(out["image"][1], same["image"][0], brain) > 0.97  # T1 as it was, on T2's grid
    assert [(r["modality"], r["onto"], r["resampled"], r["registered"], r["flagged"]) for r in report] == [
        ("t1", "t2", True, False, False), ("flair", "t2", False, False, False)]  # fmt: skip
    assert min(r["overlap"] for r in report) >= 0.95


def test_head_motion_is_flagged_and_undone_by_rigid_registration(scans, tmp_path, caplog):
    images, mask, _ = scans
    moved_t2 = str(move(images[1], tmp_path / "t2_moved.nii.gz", (10.0, 0.0, 5.0), (3.0, -2.0, 4.0)))
    same, _ = _load(images, "fail", mask=mask)
    brain = same["mask"][0].numpy() > 0
    left, plain = _load([images[0], moved_t2, images[2]], "affine")
    assert plain[0]["flagged"] and plain[0]["overlap"] < 0.95 and not plain[1]["flagged"]
    assert "s1: t2 file" in caplog.text and "after alignment, below 0.95" in caplog.text
    out, fixed = _load([images[0], moved_t2, images[2]], "auto")
    assert fixed[0]["registered"] and not fixed[0]["flagged"] and fixed[0]["overlap"] >= 0.95
    assert fixed[0]["rotation_deg"] == pytest.approx(11.18, abs=1.0)  # (10, 0, 5) degrees Euler: 11.2 about one axis
    assert fixed[0]["shift_mm"] == pytest.approx(np.linalg.norm([3.0, -2.0, 4.0]), abs=1.5)
    assert not fixed[1]["registered"]  # FLAIR did not move: left as it was
    # T2 inside the brain as it was before the motion: 0.17 left moved, 0.92 registered (two linear resamplings of
    # a 2 mm scan blur it)
    before, after = (_corr(v["image"][1], same["image"][1], brain) for v in (left, out))
    assert before < 0.3 and after > 0.9
    assert _load([images[0], moved_t2, images[2]], "auto")[1] == fixed  # the same answer on a rerun
    _, still = _load(images, "rigid")  # registering scans that did not move finds no motion
    assert all(r["registered"] and r["rotation_deg"] < 1.0 and r["shift_mm"] < 1.0 for r in still)


def test_masks_and_labels_must_stay_on_the_image_grid(scans, tmp_path):
    images, mask, label = scans
    oblique_mask = str(reslice(mask, tmp_path / "mask_oblique.nii.gz", (2.0, 2.0, 2.0), (10.0, 0.0, 0.0)))
    with pytest.raises(DatalistError, match="s1: mask file .*mask_oblique.nii.gz is not on the grid of the image"):
        _load(images, "auto", mask=oblique_mask)
    assert _load(images[:1], "auto", ["t1"], label=label)[1] == []  # one image: nothing to align
    with pytest.raises(ValueError, match="align 'resample' is not one of"):
        LoadSubjectd(align="resample")


def test_alignment_csv_and_the_report_list_the_subjects_whose_scans_do_not_overlap(tmp_path):
    ok = {"modality": "t2", "onto": "t1", "resampled": True, "registered": False, "rotation_deg": 0.0,
          "shift_mm": 0.0, "overlap": 0.98, "flagged": False, "file": "a/t2.nii.gz"}  # fmt: skip
    bad = {**ok, "modality": "flair", "registered": True, "rotation_deg": 30.0, "overlap": 0.61, "flagged": True}
    records = [{"subject": "s1", "alignment": [ok]}, {"subject": "s2", "alignment": [ok, bad]},
               {"subject": "s3"}, {"subject": "s4", "failed": "s4: image file x is all zeros"}]  # fmt: skip
    AlignmentWriter(tmp_path).finish(records)
    with open(tmp_path / "alignment.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["subject"], r["modality"], r["flagged"], r["overlap"]) for r in rows] == [
        ("s1", "t2", "False", "0.98"), ("s2", "t2", "False", "0.98"), ("s2", "flair", "True", "0.61")]  # fmt: skip
    assert [qc_flags(r) for r in records[:3]] == [[], ["flair overlaps t1 by 0.61 (head Dice) after alignment"], []]
    subjects = [{"subject": r["subject"], "png": f"{r['subject']}.png", "counts": {"cmb": 0}, "not_shown": [],
                 "flags": qc_flags(r)} for r in records[:3]]  # fmt: skip
    page = write_index(tmp_path / "report", subjects, ["cmb"]).read_text()
    assert "3 subject(s), 1 flagged for QC" in page
    assert page.count("QC: flair overlaps t1 by 0.61") == 1 and page.index("s2") < page.index("QC: flair")
