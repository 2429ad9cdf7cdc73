# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The main job from ``configs/inference.yaml`` with the shipped weights: the demo input, a folder of NIfTI files
without brain masks, bad input; every written file checked against the detections table."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from bundle_cli import bundle_popen, bundle_run
from conftest import REPO, run_bundle
from PIL import Image

from bundle.inference import read_detections
from scripts.build_configs import build

# the demo run (and the resume test, which compares with it) keeps the configs' regions (affine + B-spline) and
# checks them; runs that test other things take the affine map alone, about 15 s faster per subject and detector
AFFINE = ["--atlas_deformable", "false"]


def test_top_level_configs_are_current():
    assert build(REPO / "configs", check=True) == [], "run `python -m scripts.build_configs` and commit the result"


@pytest.mark.parametrize("config", ["configs/inference.yaml", "configs/evaluate.yaml"])
def test_inference_workflows_have_every_bundle_property(config):
    """What the model-zoo checks: MONAI's infer properties (required and optional) all resolve."""
    from monai.bundle import ConfigWorkflow

    configs = REPO / "configs"
    meta, logs = str(configs / "metadata.json"), str(configs / "logging.conf")
    wf = ConfigWorkflow(config_file=str(REPO / config), workflow_type="infer", meta_file=meta, logging_file=logs)
    wf.initialize()
    assert wf.check_properties() == []
    assert wf.network_def is not None and wf.dataset_dir is not None


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """README command 1's job: default input (two simulated subjects) and default weights, `run` spelling."""
    out = tmp_path_factory.mktemp("main") / "out"
    log = run_bundle(["--config_file", "configs/inference.yaml", "--output_dir", str(out)])
    return out, log


def _truth(out):
    data = json.loads((out / "demo_input" / "input.json").read_text())
    return data["testing"], out / "demo_input"


def test_demo_writes_table_counts_maps_on_the_input_grid(demo_run):
    out, log = demo_run
    entries, root = _truth(out)
    subjects = [e["subject"] for e in entries]
    rows = read_detections(out / "detections.csv")
    assert set(rows) <= set(subjects)
    counts = list(csv.DictReader((out / "counts.csv").open()))
    assert [c["subject"] for c in counts] == subjects
    for c in counts:  # both detectors ran on both subjects: a count for every class
        mine = rows.get(c["subject"], [])
        for label in ("cmb", "epvs", "lacune"):
            assert int(c[label]) == sum(r["label"] == label for r in mine)
        assert int(c["total"]) == len(mine)
    assert "counts per subject" in log and all(s in log for s in subjects)
    plan = list(csv.DictReader((out / "plan.csv").open()))
    assert [(p["subject"], p["detector"], p["run"]) for p in plan] == [
        (s, d, "yes") for s in subjects for d in ("cmb", "structural")]  # fmt: skip
    for e in entries:
        swi = nib.load(str(root / e["image"][0]))
        inst = nib.load(str(out / "maps" / f"{e['subject']}_objects.nii.gz"))
        prob = nib.load(str(out / "maps" / f"{e['subject']}_prob.nii.gz"))
        mask = nib.load(str(out / "maps" / f"{e['subject']}_brainmask.nii.gz"))
        regions = nib.load(str(out / "maps" / f"{e['subject']}_regions.nii.gz"))
        for img in (inst, prob, mask, regions):
            assert img.shape == swi.shape and np.allclose(img.affine, swi.affine)
        given = np.asarray(nib.load(str(root / e["mask"])).dataobj) > 0  # the demo's own mask, used as given
        assert np.mean((np.asarray(mask.dataobj) > 0) == given) > 0.995
        # one registration per subject: the microbleed detector reuses the T1's map (its atlas covers 0.93-0.96 of
        # the brain; registered to the SWI, 0.83-0.86)
        tmap = json.loads((out / "maps" / f"{e['subject']}_template.json").read_text())
        assert tmap == json.loads((out / "structural" / "maps" / f"{e['subject']}_template.json").read_text())
        assert Path(tmap["image"]).name == Path(e["image"][1]).name and tmap["bspline"]  # the T1, B-spline
        in_brain = np.asarray(regions.dataobj)[given]  # the registered atlas covers the brain with its regions
        assert np.mean(in_brain > 0) > 0.9 and len(np.unique(in_brain)) >= 12
        on_t1 = np.asarray(nib.load(str(out / "structural" / "maps" / f"{e['subject']}_regions.nii.gz")).dataobj)
        assert np.mean(on_t1[given] > 0) > 0.9
        ids = np.asarray(inst.dataobj)
        p = np.asarray(prob.dataobj)
        subject_rows = [r for r in rows.get(e["subject"], []) if r["label"] == "cmb"]  # the microbleed detector's maps
        assert sorted(set(np.unique(ids)) - {0}) == sorted(int(r["lesion_id"]) for r in subject_rows)
        for r in subject_rows:
            ijk = tuple(int(round(float(r[a]))) for a in "ijk")  # sub-voxel position: its nearest voxel
            assert ids[ijk] == int(r["lesion_id"]) and p[ijk] >= 0.2  # the detection lies on its own object
            world = swi.affine @ np.array([*(float(r[a]) for a in "ijk"), 1.0])
            assert np.allclose(world[:3], [r["x"], r["y"], r["z"]], atol=1e-3)  # world coordinates of the input


@pytest.mark.parametrize("label, n, least_found, most_fp",
                         [("cmb", 8, 7, 1), ("epvs", 34, 30, 10), ("lacune", 2, 1, 1)])  # fmt: skip
def test_demo_finds_every_simulated_marker(demo_run, label, n, least_found, most_fp):
    """The shipped weights on the demo's simulated markers, each class by its own detector (measured with 0.32.0's:
    8 of 8 microbleeds and no false positive; 34 of 34 EPVS and 7 false positives; 1 of 2 lacunes, none false)."""
    out, _ = demo_run
    entries, root = _truth(out)
    rows = read_detections(out / "detections.csv")
    found = n_true = fp = 0
    for e in entries:
        lesions = json.loads((root / e["lesions"]).read_text())
        centres = [np.asarray(r["centre_mm"]) for r in lesions if r["class"] == label]
        dets = [np.array([r["x"], r["y"], r["z"]]) for r in rows.get(e["subject"], []) if r["label"] == label]
        n_true += len(centres)
        found += sum(any(np.linalg.norm(d - c) <= 5.0 for d in dets) for c in centres)
        fp += sum(all(np.linalg.norm(d - c) > 5.0 for c in centres) for d in dets)
    assert n_true == n
    assert found >= least_found and fp <= most_fp, (found, fp)


def test_demo_detections_have_their_regions(demo_run):
    """Every detection has an atlas region; a found microbleed's region is the one the simulator drew it in (lobar,
    or deep for the basal ganglia and thalamus) for at least 4 of 5; counts.csv splits each subject's count by
    region."""
    from bundle.data.atlas import GROUPS

    out, _ = demo_run
    entries, root = _truth(out)
    table = list(csv.DictReader((out / "detections.csv").open()))
    cmb = [r for r in table if r["label"] == "cmb"]
    assert cmb and all(r["subregion"] in GROUPS[r["region"]] for r in cmb)
    drawn = {"lobar": "lobar", "basal_ganglia": "deep", "thalamus": "deep"}
    agree = []
    for e in entries:
        lesions = [les for les in json.loads((root / e["lesions"]).read_text()) if les["class"] == "cmb"]
        for r in (r for r in cmb if r["subject"] == e["subject"]):
            d = np.array([float(r[a]) for a in "xyz"])
            near = [les for les in lesions if np.linalg.norm(d - les["centre_mm"]) <= 5.0]
            if near:
                agree.append(r["region"] == drawn[near[0]["region"]])
    assert len(agree) >= 5 and sum(agree) >= 0.8 * len(agree), agree
    epvs = {r["region"] for r in table if r["label"] == "epvs"}
    assert {"basal_ganglia", "centrum_semiovale"} <= epvs <= {"basal_ganglia", "centrum_semiovale", "hippocampus",
                                                              "midbrain", "other"}  # fmt: skip
    for c in csv.DictReader((out / "counts.csv").open()):
        mine = [r for r in table if r["subject"] == c["subject"]]
        for label in ("cmb", "lacune"):
            for region in GROUPS:
                assert int(c[f"{label}_{region}"]) == sum(r["label"] == label and r["region"] == region for r in mine)
        n_bg = sum(r["label"] == "epvs" and r["region"] == "basal_ganglia" for r in mine)
        assert int(c["epvs_basal_ganglia"]) == n_bg and int(c["epvs_basal_ganglia_grade"]) == (n_bg > 0) + (n_bg > 10)


def test_report_references_every_subject_and_detection(demo_run):
    """Each detector's QC report draws its own detections (microbleeds at the top, EPVS and lacunes in
    structural/), and the cohort page links both montages of every subject."""
    out, log = demo_run
    entries, _ = _truth(out)
    rows = read_detections(out / "detections.csv")
    for folder, classes in ((out, ("cmb",)), (out / "structural", ("epvs", "lacune"))):
        page = (folder / "report" / "index.html").read_text()
        links = re.findall(r'href="([^"]+\.png)"', page)
        assert links == [f"{e['subject']}.png" for e in entries]
        for e in entries:
            png = Image.open(folder / "report" / f"{e['subject']}.png")
            assert png.size[0] > 200 and png.text["Subject"] == e["subject"]
            drawn = [int(v) for v in png.text["Detections"].split(",") if v]
            mine = [r for r in rows.get(e["subject"], []) if r["label"] in classes]
            assert drawn == sorted(int(r["lesion_id"]) for r in mine)
            counts = "".join(f"<td>{sum(r['label'] == c for r in mine)}</td>" for c in classes)
            assert f"<td>{e['subject']}</td>{counts}<td>{len(mine)}</td>" in page
    cohort = (out / "index.html").read_text()
    for e in entries:
        for montage in (f"report/{e['subject']}.png", f"structural/report/{e['subject']}.png"):
            assert f'href="{montage}"' in cohort
    assert "QC report:" in log


def test_folder_of_nifti_without_masks(demo_run, tmp_path):
    """`run inference` spelling, a folder with one SWI and no brain mask: the brain-mask network's, with a warning."""
    out, _ = demo_run
    entries, root = _truth(out)
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
    saying why; a subject with its brain mask gets the demo run's detections of the same scan."""
    out, _ = demo_run
    entries, root = _truth(out)
    bids = tmp_path / "bids"
    for name, source in (("sub-01/anat/sub-01_swi.nii.gz", entries[0]["image"][0]),
                         ("sub-01/anat/sub-01_desc-brain_mask.nii.gz", entries[0]["mask"]),
                         ("sub-02/ses-1/anat/sub-02_ses-1_T1w.nii.gz", entries[0]["mask"]),
                         ("sub-03/anat/sub-03_T2starw.nii.gz", entries[1]["image"][0])):  # fmt: skip
        (bids / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / source, bids / name)
    res_dir = tmp_path / "res"
    log = run_bundle(["run", "--config_file", "configs/inference.yaml", "--datalist", str(bids),
                      "--output_dir", str(res_dir), "--report", "false", "--progress", "false", *AFFINE])  # fmt: skip
    assert "sub-02_ses-1: microbleed detector not run: no SWI or T2*-weighted image" in log
    counts = list(csv.DictReader((res_dir / "counts.csv").open()))  # sub-02's T1 goes to the EPVS and lacune detector
    assert [(c["subject"], c["cmb"] != "", c["epvs"] != "") for c in counts] == [
        ("sub-01", True, False), ("sub-02_ses-1", False, True), ("sub-03", True, False)]  # fmt: skip
    demo = [r for r in read_detections(out / "detections.csv").get(entries[0]["subject"], []) if r["label"] == "cmb"]
    bids_rows = read_detections(res_dir / "detections.csv").get("sub-01", [])
    key = ("i", "j", "k", "score")
    assert [tuple(r[k] for k in key) for r in bids_rows] == [tuple(r[k] for k in key) for r in demo]
    assert (res_dir / "maps" / "sub-03_objects.nii.gz").is_file()
    assert list(csv.DictReader((res_dir / "failed.csv").open())) == []


def test_a_mixed_cohort_runs_the_detectors_each_subject_allows(demo_run, tmp_path):
    """Subject folders with mixed availability (the demo's two brains): SWI only; T1 + T2 + FLAIR; all four; T1 +
    FLAIR; all four with the T1 on a 1.5 mm grid turned by 10 degrees. plan.csv says what ran, counts.csv has a
    detector's classes exactly where it ran, a subject with the demo's images gets the demo's detections, the
    turned T1 is aligned, and the cohort page lists every subject with its montages."""
    from bundle.data.synth.regrid import reslice

    out, _ = demo_run
    (a, b), root = _truth(out)
    every = ("swi", "t1", "t2", "flair")
    layout = {"sub-01": (a, ("swi",)), "sub-02": (b, ("t1", "t2", "flair")), "sub-03": (a, every),
              "sub-04": (b, ("t1", "flair")), "sub-05": (a, every), "sub-06": (b, ("flair",))}  # fmt: skip
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
    want = {"sub-01": ("yes", "no"), "sub-02": ("no", "yes"), "sub-03": ("yes", "yes"), "sub-04": ("no", "yes"),
            "sub-05": ("yes", "yes"), "sub-06": ("no", "no")}  # fmt: skip
    assert {s: (ran[s, "cmb"], ran[s, "structural"]) for s in layout} == want
    counts = {c["subject"]: c for c in csv.DictReader((res / "counts.csv").open())}
    assert list(counts) == list(layout)[:5]  # sub-06: FLAIR alone, nothing to run
    for s, (cmb, structural) in list(want.items())[:5]:
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
    for s in list(layout)[:5]:
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
    (a, _), root = _truth(out)
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
    entries, root = _truth(out)
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


def test_a_run_killed_after_one_subject_resumes_to_the_same_outputs(demo_run, tmp_path):
    """SIGKILL once the first subject is complete (the EPVS and lacune detector runs first), then the same command
    again: it skips that subject, and the tables and maps equal the uninterrupted demo run's, with no temporary
    file left."""
    import time

    out, _ = demo_run
    res_dir = tmp_path / "res"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.yaml", "--datalist",
           str(out / "demo_input" / "input.json"), "--output_dir", str(res_dir), "--progress", "false"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = bundle_popen(cmd, REPO, env)
    part = res_dir / "structural"
    first = part / "subjects" / "sub-0000.json"  # written after the subject's maps: the subject is complete
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()  # SIGKILL
    proc.wait()
    assert first.exists() and not (part / "detections.csv").exists()  # killed mid-run
    done = {p: p.stat().st_mtime_ns for p in (first, part / "maps" / "sub-0000_epvs_prob.nii.gz")}
    (part / "maps" / ".sub-0001_epvs_prob.k2j_8x0q.nii.gz").write_bytes(b"")  # what a kill mid-write leaves
    res = bundle_run(cmd, REPO, env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in done} == done  # the complete subject was skipped, not redone
    for name in ("detections.csv", "counts.csv", "failed.csv"):
        assert (res_dir / name).read_text() == (out / name).read_text()
    for m in [*sorted((out / "maps").iterdir()), *sorted((out / "structural" / "maps").iterdir())]:
        again = res_dir / m.relative_to(out)
        if m.suffix == ".json":  # the template map: SimpleITK's threads sum in any order (0.16 um apart measured)
            a, b = (json.loads(p.read_text()) for p in (again, m))
            assert a["image"] == b["image"] and a["bspline"]["fixed"] == b["bspline"]["fixed"]
            np.testing.assert_allclose(a["affine"], b["affine"], atol=1e-5)
            np.testing.assert_allclose(a["bspline"]["parameters"], b["bspline"]["parameters"], atol=2e-3)  # mm
            continue
        assert np.array_equal(np.asarray(nib.load(str(again)).dataobj), np.asarray(nib.load(str(m)).dataobj)), m
    hidden = [p for d in (res_dir, part) for f in ("", "maps", "report", "subjects") for p in (d / f).glob(".*")]
    assert hidden == [] and json.loads((res_dir / "run.json").read_text())["status"] == "done"
    assert sorted(p.name for p in (res_dir / "report").glob("*.png")) == ["cohort_counts.png", "sub-0000.png",
                                                                         "sub-0001.png"]  # fmt: skip


def test_torchrun_two_processes_write_the_tables_of_one(demo_run, tmp_path):
    """Four subjects on two gloo processes (torchrun, configs/multi_gpu_inference.yaml): each rank writes its
    subjects, rank 0 merges; the tables equal one process's byte for byte, and the maps and report are complete."""
    out, _ = demo_run
    entries, root = _truth(out)
    four = [{"subject": e["subject"] + tag, "image": e["image"][:1], "mask": e["mask"]} for e in entries for tag in
            ("", "-b")]  # fmt: skip
    (root / "four.json").write_text(json.dumps({"testing": four}))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    args = ["--datalist", str(root / "four.json"), "--progress", "false", *AFFINE]
    single = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.yaml", *args]
    configs = "['configs/inference.yaml','configs/multi_gpu_inference.yaml']"
    multi = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
             "monai.bundle", "run", "--config_file", configs, *args]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    res = bundle_run([*single, "--output_dir", str(one)], REPO, env)
    assert res.returncode == 0, res.stderr[-3000:]
    res = subprocess.run([*multi, "--output_dir", str(two)], capture_output=True, text=True, cwd=REPO, env=env)
    assert res.returncode == 0, res.stderr[-3000:]  # torchrun starts its own processes: a real subprocess
    for name in ("detections.csv", "counts.csv", "failed.csv"):
        assert (two / name).read_bytes() == (one / name).read_bytes()
    assert [c["subject"] for c in csv.DictReader((two / "counts.csv").open())] == [e["subject"] for e in four]
    assert sorted(p.name for p in (two / "maps").iterdir()) == sorted(p.name for p in (one / "maps").iterdir())
    assert sorted(p.name for p in (two / "report").glob("*.png")) == sorted(
        ["cohort_counts.png", *(f"{e['subject']}.png" for e in four)])  # the cohort page's histograms too
    assert json.loads((two / "run.json").read_text())["written"] == [e["subject"] for e in four]


@pytest.fixture(scope="module")
def train_cohort(tmp_path_factory):
    from bundle.data.synth import generate_cohort

    return generate_cohort("cmb", 5, tmp_path_factory.mktemp("data"), seed=6, spacing=(2.0, 2.0, 2.0), progress=False)


def test_train_workflow_has_every_bundle_property(train_cohort, tmp_path):
    """What the model-zoo checks for training: MONAI's train properties (required and optional) resolve, and
    ``train#trainer`` is an ignite engine with ``max_epochs`` and the ``train#handlers`` attached."""
    from ignite.engine import Engine
    from monai.bundle import ConfigWorkflow

    configs = REPO / "configs"
    wf = ConfigWorkflow(
        config_file=str(configs / "train.yaml"),
        workflow_type="train",
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        datalist=str(train_cohort),
        output_dir=str(tmp_path / "run"),
    )
    wf.initialize()
    assert wf.check_properties() == []
    assert isinstance(wf.trainer, Engine) and wf.max_epochs == 1 and len(wf.train_dataset) == 3
    assert all(wf.trainer.has_event_handler(h.iteration_completed) for h in wf.train_handlers)


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")  # MLflow's SQL store
def test_top_level_train_config_trains_a_detector_the_inference_config_loads(train_cohort, tmp_path):
    """`run training` spelling of configs/train.yaml, a few iterations, with `--tracking mlflow`: the weights load
    into the main job, and the MLflow store (SQLite file in the output folder) has the run and its metrics."""
    import torch
    from mlflow.tracking import MlflowClient
    from monai.bundle import ConfigParser

    out = tmp_path / "run"
    log = run_bundle(["training", "--config_file", "configs/train.yaml", "--datalist", str(train_cohort),
                      "--output_dir", str(out), "--stage1_iterations", "3", "--stage2_iterations", "3",
                      "--progress", "false", "--tile_size", "[48, 48, 32]", "--tracking", "mlflow"])  # fmt: skip
    parser = ConfigParser()
    parser.read_config(str(REPO / "configs" / "inference.yaml"))
    net = parser.get_parsed_content("network_def")
    state = torch.load(out / "models" / "cmb_detector.pt", weights_only=True)
    net.load_state_dict(state, strict=True)  # the same architecture in both top-level configs
    shipped = torch.load(REPO / "models" / "model.pt", weights_only=True)
    assert set(shipped) == set(state) and all(shipped[k].shape == state[k].shape for k in state)
    # the steps of the plan in the log: 2 folds x 2 U-Nets, 2 minings, 10 final networks (2 U-Nets, 8 CNNs), export
    # (the export has no loss)
    assert "Iter: 16/17 -- final_cnn_bs30_slices_uniform_loss" in log and "mimics mined" in log

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("brain_mri_eso_detection")
    runs = client.search_runs(experiment.experiment_id)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in losses] == [1, 2, 4, 5, *range(7, 17)]  # the 14 fits; minings and export: none
    assert all(np.isfinite(m.value) and m.value > 0 for m in losses)
    metrics = run.data.metrics
    cnns = ("cnn_bs20", "cnn_bs30", "cnn_bs20_slices", "cnn_bs30_slices")
    members = ("unet_bs20", "unet_bs30", *cnns, *(f"{c}_uniform" for c in cnns))
    assert {f"final_{m}_loss" for m in members} | {"mimics_mined"} <= set(metrics)
    assert metrics["final_cnn_bs30_slices_uniform_loss"] == pytest.approx(losses[-1].value)
    assert run.data.params["max_epochs"] == "1"


def test_main_recipe_samplers_differ_only_where_their_cnns_should():
    """The main recipe's four stage-2 samplers: mimics by stage-1 score cubed or uniformly, thick slices or not,
    every other argument the same; the inference and evaluation configs cascade the second four CNNs and average
    four views of the window on the candidates they score."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(REPO / "configs" / "train.yaml"))
    base = parser.get_parsed_content("stage2_sampler")._init_args
    want = {"stage2_sampler": {}, "stage2_sampler_slices": {"slice_thickness": [1.0, 4.0]},
            "stage2_sampler_uniform": {"mimic_power": 0.0},
            "stage2_sampler_slices_uniform": {"slice_thickness": [1.0, 4.0], "mimic_power": 0.0}}  # fmt: skip
    assert base["mimic_power"] == 3.0 and base["slice_thickness"] is None
    for name, changes in want.items():
        assert parser.get_parsed_content(name)._init_args == {**base, **changes}, name
    for name in ("inference.yaml", "evaluate.yaml"):
        inference = ConfigParser()
        inference.read_config(str(REPO / "configs" / name))
        net = inference.get_parsed_content("network_def")
        assert (len(net.stage2), net.cascade_size, net.cascade_threshold, net.views) == (8, 4, 0.05, 4), name


def test_top_level_evaluate_config_scores_the_demo(tmp_path):
    """`run evaluation` of configs/evaluate.yaml on the demo: every candidate in the table, metrics against labels."""
    out = tmp_path / "ev"
    run_bundle(["evaluation", "--config_file", "configs/evaluate.yaml", "--output_dir", str(out), "--progress", "false",
                *AFFINE])  # fmt: skip  (regions are not what this tests; affine: 20-25 s less)
    metrics = json.loads((out / "metrics.json").read_text())
    pooled = metrics["pooled"]
    assert pooled["scans"] == 2 and pooled["tp"] + pooled["fn"] == 9  # the demo's nine microbleeds
    main = yaml.safe_load((REPO / "configs" / "main" / "inference.yaml").read_text())["main_threshold"]
    assert 0 < main < 1  # the shipped weights' operating point (chosen on validation scans, docs/twostage.md)
    assert metrics["settings"]["rule"] == "distance_mm" and metrics["settings"]["score_threshold"] == main
    n_rows = sum(len(r) for r in read_detections(out / "detections.csv").values())
    assert n_rows >= pooled["tp"] + pooled["fp"]  # the table keeps candidates below the operating threshold too
    assert (out / "froc.png").stat().st_size > 1000 and not (out / "report").exists()
