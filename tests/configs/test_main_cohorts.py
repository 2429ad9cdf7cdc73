# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The main job on other input than the demo's, with the shipped weights: a folder of NIfTI files without brain
masks, a BIDS dataset, a cohort of mixed modalities, MONAI Label's path, bad input and bad subjects; the demo run
(conftest's ``demo_run``) gives the scans and the detections to compare with."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bundle_cli import bundle_run
from conftest import AFFINE, REPO, demo_truth, run_bundle

from bundle.inference import read_detections


def test_folder_of_nifti_without_masks(demo_run, tmp_path):
    """`run inference` spelling, a folder with one SWI and no brain mask: the brain-mask network's, with a warning."""
    out, _ = demo_run
    entries, root = demo_truth(out)
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(root / entries[1]["image"][0], folder / "patient_a.nii.gz")
    res_dir = tmp_path / "res"
    log = run_bundle(["inference", "--config_file", "configs/inference.yaml", "--datalist", str(folder),
                      "--output_dir", str(res_dir), "--report", "false", "--progress", "false"])  # fmt: skip
    assert "patient_a: no brain mask given; using the bundle's brain-mask network" in log
    tmap = json.loads((res_dir / "maps" / "patient_a_template.json").read_text())  # an SWI alone: the affine only
    assert tmap["bspline"] is None and tmap["image"] == str(folder / "patient_a.nii.gz")
    counts = list(csv.DictReader((res_dir / "counts.csv").open()))
    assert [c["subject"] for c in counts] == ["patient_a"]
    assert not (res_dir / "report").exists()
    inst = nib.load(str(res_dir / "maps" / "patient_a_objects.nii.gz"))
    assert inst.shape == nib.load(str(folder / "patient_a.nii.gz")).shape
    # the same scan with its brain mask (demo run) and with the network's: the same detections but one at most
    with_mask = {(int(r["i"]), int(r["j"]), int(r["k"])) for r in read_detections(out / "detections.csv").get(
        entries[1]["subject"], []) if r["label"] == "cmb"}  # fmt: skip
    head = {(int(r["i"]), int(r["j"]), int(r["k"])) for r in read_detections(res_dir / "detections.csv").get(
        "patient_a", [])}  # fmt: skip
    assert len(with_mask & head) >= len(with_mask) - 1
    # MONAI Label's path through the same config (docs/monai_label.md): `pre_transforms` on {"image": path},
    # `detector` with `network_def` and the shipped weights, `post_transforms`; boxes in LPS mm
    boxes = _monai_label_flow(folder / "patient_a.nii.gz")
    rows = read_detections(res_dir / "detections.csv").get("patient_a", [])
    main_lps = np.array([[-r["x"], -r["y"], r["z"]] for r in rows], float).reshape(-1, 3)
    dist = np.linalg.norm(main_lps[:, None] - boxes[None, :, :3].astype(float), axis=2)
    same = int((dist < 0.5).sum())  # the same detection: centres within 0.5 mm
    assert len(boxes) >= 1 and same >= max(len(main_lps), len(boxes)) - 1
    for b in boxes:  # side = the equivalent-sphere diameter of the detection, at least 2 mm
        assert b[3] == b[4] == b[5] and 2.0 <= b[3] <= 12.0


def test_bids_dataset_runs_the_microbleed_detector_where_its_input_is(demo_run, tmp_path):
    """A BIDS dataset with mixed modalities: the subjects with SWI (or T2*) get detections, the others a log line
    saying why; a subject with its brain mask gets the demo run's detections of the same scan. The plan sends the T1
    to the EPVS and lacune detector (switched off here: the mixed cohort below runs it from the main job, and
    tests/methods/unet/test_structural_unet.py on a BIDS dataset)."""
    out, _ = demo_run
    entries, root = demo_truth(out)
    bids = tmp_path / "bids"
    for name, source in (("sub-01/anat/sub-01_swi.nii.gz", entries[0]["image"][0]),
                         ("sub-01/anat/sub-01_desc-brain_mask.nii.gz", entries[0]["mask"]),
                         ("sub-02/ses-1/anat/sub-02_ses-1_T1w.nii.gz", entries[0]["mask"]),
                         ("sub-03/anat/sub-03_T2starw.nii.gz", entries[1]["image"][0])):  # fmt: skip
        (bids / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / source, bids / name)
    res_dir = tmp_path / "res"
    log = run_bundle(["run", "--config_file", "configs/inference.yaml", "--datalist", str(bids),
                      "--output_dir", str(res_dir), "--report", "false", "--progress", "false", *AFFINE,
                      "--structural_detector", "false"])  # fmt: skip
    assert "sub-02_ses-1: microbleed detector not run: no SWI or T2*-weighted image" in log
    ran = [(p["subject"], p["detector"], p["run"]) for p in csv.DictReader((res_dir / "plan.csv").open())]
    assert sorted(ran) == [("sub-01", "cmb", "yes"), ("sub-01", "structural", "no"), ("sub-02_ses-1", "cmb", "no"),
                           ("sub-02_ses-1", "structural", "yes"), ("sub-03", "cmb", "yes"),
                           ("sub-03", "structural", "no")]  # fmt: skip  (sub-02's T1: the EPVS and lacune detector)
    counts = list(csv.DictReader((res_dir / "counts.csv").open()))
    assert [(c["subject"], c["cmb"] != "") for c in counts] == [("sub-01", True), ("sub-03", True)]
    demo = [r for r in read_detections(out / "detections.csv").get(entries[0]["subject"], []) if r["label"] == "cmb"]
    bids_rows = read_detections(res_dir / "detections.csv").get("sub-01", [])
    key = ("i", "j", "k", "score")
    assert [tuple(r[k] for k in key) for r in bids_rows] == [tuple(r[k] for k in key) for r in demo]
    assert (res_dir / "maps" / "sub-03_objects.nii.gz").is_file()
    assert list(csv.DictReader((res_dir / "failed.csv").open())) == []


def test_a_mixed_cohort_runs_the_detectors_each_subject_allows(demo_run, tmp_path):
    """Subject folders with mixed availability (the demo's two brains): SWI only; all four; T1 + FLAIR; all four
    with the T1 on a 1.5 mm grid turned by 10 degrees; FLAIR alone. plan.csv says what ran, counts.csv has a
    detector's classes exactly where it ran, a subject with the demo's images gets the demo's detections, the
    turned T1 is aligned, and the cohort page lists every subject with its montages."""
    from bundle.data.synth.regrid import reslice

    out, _ = demo_run
    (a, b), root = demo_truth(out)
    every = ("swi", "t1", "t2", "flair")
    layout = {"sub-01": (a, ("swi",)), "sub-03": (a, every), "sub-04": (b, ("t1", "flair")), "sub-05": (a, every),
              "sub-06": (b, ("flair",))}  # fmt: skip
    cohort = tmp_path / "cohort"
    for sub, (e, mods) in layout.items():
        (cohort / sub).mkdir(parents=True)
        files = dict(zip(("swi", "t1", "t2", "flair"), e["image"]))
        for m in mods:
            src, dst = root / files[m], cohort / sub / f"{sub}_{m}.nii.gz"
            if sub == "sub-05" and m == "t1":
                reslice(src, dst, (1.5, 1.5, 1.5), (10.0, 0.0, 0.0))
            else:
                shutil.copy(src, dst)
        shutil.copy(root / e["mask"], cohort / sub / f"{sub}_brainmask.nii.gz")
    res = tmp_path / "res"
    run_bundle(["run", "--config_file", "configs/inference.yaml", "--datalist", str(cohort), "--output_dir", str(res),
                "--progress", "false", *AFFINE])  # fmt: skip
    ran = {(p["subject"], p["detector"]): p["run"] for p in csv.DictReader((res / "plan.csv").open())}
    want = {"sub-01": ("yes", "no"), "sub-03": ("yes", "yes"), "sub-04": ("no", "yes"), "sub-05": ("yes", "yes"),
            "sub-06": ("no", "no")}  # fmt: skip
    assert {s: (ran[s, "cmb"], ran[s, "structural"]) for s in layout} == want
    counts = {c["subject"]: c for c in csv.DictReader((res / "counts.csv").open())}
    assert list(counts) == list(layout)[:4]  # sub-06: FLAIR alone, nothing to run
    for s, (cmb, structural) in list(want.items())[:4]:
        assert (counts[s]["cmb"] != "", counts[s]["epvs"] != "", counts[s]["lacune"] != "") == \
            (cmb == "yes", structural == "yes", structural == "yes")  # fmt: skip
    demo, mixed = read_detections(out / "detections.csv"), read_detections(res / "detections.csv")
    key = ("label", "i", "j", "k", "score")
    assert [tuple(r[k] for k in key) for r in mixed["sub-03"]] == \
        [tuple(r[k] for k in key) for r in demo[a["subject"]]]  # fmt: skip
    assert {r["label"] for rs in mixed.values() for r in rs} == {"cmb", "epvs", "lacune"}
    aligned = [r for r in csv.DictReader((res / "structural" / "alignment.csv").open()) if r["subject"] == "sub-05"]
    assert [(r["modality"], r["resampled"], r["flagged"]) for r in aligned] == [("t1", "True", "False"),
                                                                                ("flair", "False", "False")]
    page = (res / "index.html").read_text()
    for s in list(layout)[:4]:
        assert f"<td>{s}" in page
    assert "<b>sub-06</b>: no detector ran: no SWI or T2*-weighted image; FLAIR alone is not a trained input" in page
    assert 'href="structural/report/sub-04.png"' in page and 'href="report/sub-01.png"' in page
    assert list(csv.DictReader((res / "failed.csv").open())) == []


def _monai_label_flow(image, labels=(1,)) -> np.ndarray:
    """What MONAI Label 0.8.5's BundleInferTask does for a detection bundle, in this environment; every box's label
    must be one of ``labels`` (1 cmb, 2 epvs, 3 lacune)."""
    import torch
    from monai.bundle import ConfigParser
    from monai.data import decollate_batch

    parser = ConfigParser()
    parser.read_config(str(REPO / "configs" / "inference.json"))  # MONAI Label reads the JSON first
    parser.config.update({"bundle_root": str(REPO)})
    data = parser.get_parsed_content("pre_transforms")({"image": str(image), "image_path": str(image)})
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(REPO / "models" / "model.pt", weights_only=True))
    detector = parser.get_parsed_content("detector")
    parser.get_parsed_content("detector_ops")  # MONAI Label parses it right after the detector
    detector.network = network
    detector.eval()
    out = decollate_batch(detector(data["image"][None], use_inferer=True))[0]
    data.update(out)
    data = parser.get_parsed_content("post_transforms")(data)
    assert set(data["label"].tolist()) <= set(labels)
    return data["box"].numpy()


def test_monai_label_serves_epvs_and_lacunes_on_a_t2_volume(demo_run, tmp_path, monkeypatch):
    """A volume whose name says T2 gets the EPVS and lacune detector's boxes (labels 2 and 3), at simulated EPVS
    and lacunes, registering the template affinely only (boxes carry no region); one named FLAIR (not a trained
    input alone) gets none."""
    from bundle.data import atlas

    registered, register = [], atlas.template_transform
    monkeypatch.setattr(atlas, "template_transform", lambda *a, **k: registered.append(k) or register(*a, **k))
    out, _ = demo_run
    (a, _), root = demo_truth(out)
    t2 = tmp_path / "sub-0000_T2w.nii.gz"
    shutil.copy(root / a["image"][2], t2)
    boxes = _monai_label_flow(t2, labels=(2, 3))
    truth = [les["centre_mm"] for les in json.loads((root / a["lesions"]).read_text()) if les["class"] != "cmb"]
    ras = boxes[:, :3] * np.array([-1.0, -1.0, 1.0])
    near = [np.linalg.norm(np.asarray(truth) - c, axis=1).min() <= 5.0 for c in ras]
    assert len(boxes) >= 5 and np.mean(near) >= 0.7, (len(boxes), np.mean(near))
    assert [k.get("deformable") for k in registered] == [False]
    flair = tmp_path / "sub-0000_FLAIR.nii.gz"
    shutil.copy(root / a["image"][3], flair)
    assert len(_monai_label_flow(flair, labels=())) == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.json", "datalist .*missing.json does not exist"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "input folder .*empty holds no NIfTI image"),
    ],
)
def test_bad_input_names_the_problem(tmp_path, make, message):
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.yaml",
           "--datalist", str(make(tmp_path)), "--output_dir", str(tmp_path / "o")]  # fmt: skip
    res = bundle_run(cmd, REPO, {**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode != 0 and re.search(message, res.stderr)
    assert not (tmp_path / "o" / "detections.csv").exists()


def test_an_error_that_stops_the_run_is_one_line_with_the_traceback_saved(demo_run, tmp_path):
    """A run-level error (here a network setting the U-Net refuses): one line naming the problem and the file
    holding the traceback, no traceback on the console; ``--debug true`` prints it."""
    out, _ = demo_run
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.yaml", "--datalist",
           str(out / "demo_input" / "input.json"), "--unet_channels", "[16]", "--progress", "false"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = bundle_run([*cmd, "--output_dir", str(tmp_path / "a")], REPO, env)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "a" / "structural").exists()  # stopped before the EPVS and lacune detector ran
    last = res.stderr.rstrip().splitlines()[-1]
    found = re.fullmatch(r"error: ValueError: the length of `channels` should be no less than 2\. \(traceback: "
                         r"(\S+); --debug true prints it\)", last)  # fmt: skip
    assert found, last
    saved = Path(found.group(1)).read_text()
    assert saved.startswith("Traceback") and "Failed to evaluate" in saved
    debug = [*cmd, "--output_dir", str(tmp_path / "b"), "--debug", "true"]
    res = bundle_run(debug, REPO, env)
    assert res.returncode == 1 and "Traceback" in res.stderr


def test_bad_subjects_are_listed_and_the_others_written(demo_run, tmp_path):
    """A folder with a good scan, a truncated file and an all-zero image: the good one written, the two bad ones
    in failed.csv and the report with one line each, exit status 3, the last lines of the console naming them."""
    out, _ = demo_run
    entries, root = demo_truth(out)
    folder = tmp_path / "scans"
    folder.mkdir()
    good = root / entries[1]["image"][0]
    shutil.copy(good, folder / "a_good.nii.gz")
    whole = good.read_bytes()
    (folder / "b_truncated.nii.gz").write_bytes(whole[: len(whole) // 2])
    img = nib.load(str(good))
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.float32), img.affine), str(folder / "c_zeros.nii.gz"))
    res_dir = tmp_path / "res"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.yaml", "--datalist",
           str(folder), "--output_dir", str(res_dir), "--progress", "false", *AFFINE]  # fmt: skip
    res = bundle_run(cmd, REPO, {**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 3, res.stderr[-3000:]
    assert [c["subject"] for c in csv.DictReader((res_dir / "counts.csv").open())] == ["a_good"]
    assert set(read_detections(res_dir / "detections.csv")) <= {"a_good"}
    assert sorted(p.name for p in (res_dir / "maps").iterdir()) == [
        *(f"a_good_{m}.nii.gz" for m in ("brainmask", "objects", "prob", "regions")), "a_good_template.json"]
    failed = list(csv.DictReader((res_dir / "failed.csv").open()))
    assert [f["subject"] for f in failed] == ["b_truncated", "c_zeros"]
    truncated = r"b_truncated: image file .*b_truncated\.nii\.gz could not be read as NIfTI \(.*\)"
    assert re.fullmatch(truncated, failed[0]["reason"])
    assert failed[1]["reason"] == f"c_zeros: image file {folder / 'c_zeros.nii.gz'} is all zeros"
    assert res.stderr.rstrip().splitlines()[-2:] == [f"  {f['reason']}" for f in failed]
    page = (res_dir / "report" / "index.html").read_text()
    assert "2 subject(s) failed" in page and "<b>c_zeros</b>: c_zeros: image file" in page


def test_a_shard_without_a_microbleed_subject_ends_normally(demo_run, tmp_path):
    """``--shard 1/2`` of an input whose second subject has a T1 and no SWI: the microbleed detector has no subject
    in this shard (one log line), the run ends with status 0 and its run.json lists the other subject as pending.
    The EPVS and lacune detector, which would run the T1 here, is switched off (the resume test runs it in shards)."""
    out, _ = demo_run
    (a, _), root = demo_truth(out)
    two = [{"subject": s, "modalities": [m], "image": [str(root / a["image"][n])], "mask": str(root / a["mask"])}
           for s, m, n in (("swi", "swi", 0), ("t1", "t1", 1))]  # fmt: skip
    (tmp_path / "two.json").write_text(json.dumps({"modalities": ["swi", "t1"], "testing": two}))
    res_dir = tmp_path / "res"
    log = run_bundle(["--config_file", "configs/inference.yaml", "--datalist", str(tmp_path / "two.json"),
                      "--output_dir", str(res_dir), "--progress", "false", "--shard", "1/2", "--structural_detector",
                      "false"])  # fmt: skip
    assert "--shard 1/2: no subject of this share for this detector" in log
    run = json.loads((res_dir / "run.json").read_text())
    assert (run["status"], run["written"], run["pending"]) == ("incomplete", [], ["swi"])
    assert not (res_dir / "subjects").exists() and not (res_dir / "maps").exists()
