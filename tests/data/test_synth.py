# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The simulator's promises: labels match records, sizes and counts in range, contrast signs, raters, determinism."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from bundle.data import LoadSubjectd, load_datalist
from bundle.data.synth import generate_cohort, generate_subject, summarise
from bundle.data.synth.__main__ import main as synth_main

SPLITS = ("training", "validation", "testing")


def _entries(datalist: Path) -> list[dict]:
    return [e for s in SPLITS for e in load_datalist(datalist, s)]


@lru_cache(maxsize=4)
def _loaded(datalist: Path) -> tuple:
    return tuple((entry, LoadSubjectd()(entry)) for entry in _entries(datalist))


def _subjects(datalist: Path):
    """(entry, loaded data) of every subject; loaded once per cohort for the whole session."""
    return _loaded(datalist)


@pytest.mark.parametrize("cohort", ["cmb_cohort", "epvs_cohort"])
def test_labels_match_records(cohort, request):
    datalist = request.getfixturevalue(cohort)
    meta = json.loads(datalist.read_text())
    for entry, d in _subjects(datalist):  # LoadSubjectd itself checks ids both ways and class names
        label = d["label"][0].numpy()
        records = d["lesions"]
        assert [r["id"] for r in records] == list(range(1, len(records) + 1))
        assert entry["count"] == len(records) == int(label.max())
        assert entry["counts"] == {c: sum(r["class"] == c for r in records) for c in meta["classes"]}
        sizes = np.bincount(label.ravel(), minlength=len(records) + 1)[1:]
        assert [r["n_voxels"] for r in records] == sizes.tolist()
        affine = d["image"].affine.numpy()
        for r in records:
            np.testing.assert_allclose(affine[:3, :3] @ r["centre_voxel"] + affine[:3, 3], r["centre_mm"], atol=0.01)
            assert label[tuple(np.clip(np.round(r["centre_voxel"]).astype(int), 0, np.array(label.shape) - 1))] in (
                0,
                r["id"],
            )


def test_sizes_and_counts_in_range(cmb_cohort, epvs_cohort):
    for entry, d in _subjects(cmb_cohort):
        assert 0 <= entry["count"] <= 15
        assert all(2.0 <= r["diameter_mm"] <= 10.0 for r in d["lesions"])
        assert all(r["class"] == "cmb" for r in d["lesions"])
        mimics = json.loads(Path(entry["mimics"]).read_text())
        assert sum(m["kind"] == "vein" for m in mimics) >= 4  # veins are present, never labelled
        assert {m["kind"] for m in mimics} <= {"vein", "calcification", "artefact"}
    for entry, d in _subjects(epvs_cohort):
        epvs = [r for r in d["lesions"] if r["class"] == "epvs"]
        lacunes = [r for r in d["lesions"] if r["class"] == "lacune"]
        assert len(epvs) >= 9 and len(lacunes) <= 4
        assert all(1.0 <= r["diameter_mm"] <= 3.0 and 3.0 <= r["length_mm"] <= 15.0 for r in epvs)
        assert all(3.0 <= r["diameter_mm"] <= 15.0 for r in lacunes)
        assert {r["region"] for r in epvs} <= {"basal_ganglia", "centrum_semiovale"}


def _objects(d: dict, cls: str, min_voxels: int = 1, pad: int = 5):
    """(record, box, object mask in box) of every object of class ``cls``; boxes keep the work local."""
    label = d["label"][0].numpy()
    boxes = ndi.find_objects(label)
    for r in d["lesions"]:
        if r["class"] == cls and r["n_voxels"] >= min_voxels:
            box = tuple(slice(max(b.start - pad, 0), b.stop + pad) for b in boxes[r["id"] - 1])
            yield r, box, label[box] == r["id"]


def _contrast(img: np.ndarray, obj: np.ndarray, brain: np.ndarray) -> float:
    """Mean inside the object over mean of a ring 2-3 voxels around it (inside the brain)."""
    ring = ndi.binary_dilation(obj, iterations=3) & ~ndi.binary_dilation(obj, iterations=1) & brain
    return float(img[obj].mean() / img[ring].mean())


def _class_contrast(datalist: Path, cls: str, channel: int, min_voxels: int = 4) -> float:
    ratios = []
    for _, d in _subjects(datalist):
        brain, img = d["mask"][0].numpy() > 0, d["image"][channel].numpy()
        ratios += [_contrast(img[box], obj, brain[box]) for _, box, obj in _objects(d, cls, min_voxels)]
    assert len(ratios) >= 3, f"too few {cls} objects to measure contrast"
    return float(np.median(ratios))


def test_contrast_signs(cmb_cohort, epvs_cohort):
    assert _class_contrast(cmb_cohort, "cmb", 0) < 0.6  # SWI: dark with blooming
    assert _class_contrast(cmb_cohort, "cmb", 1) < 0.95  # T2: mildly dark (true core only)
    # epvs cohort channels: t1, t2, flair, swi
    assert _class_contrast(epvs_cohort, "epvs", 0) < 0.85  # T1 dark
    assert _class_contrast(epvs_cohort, "epvs", 1) > 1.2  # T2 bright
    assert _class_contrast(epvs_cohort, "epvs", 2) < 0.9  # FLAIR suppressed, no rim


def test_lacune_centre_and_flair_rim(epvs_cohort):
    core, rim = [], []
    for entry, d in _subjects(epvs_cohort):
        brain = d["mask"][0].numpy() > 0
        flair, t2 = d["image"][2].numpy(), d["image"][1].numpy()
        for r, box, obj in _objects(d, "lacune", pad=6):
            core.append((_contrast(flair[box], obj, brain[box]), _contrast(t2[box], obj, brain[box])))
            if r["rim_mm"] >= 1.0:
                shell = ndi.binary_dilation(obj) & ~obj
                outer = ndi.binary_dilation(obj, iterations=4) & ~ndi.binary_dilation(obj, iterations=2) & brain[box]
                rim.append(flair[box][shell].mean() / flair[box][outer].mean())
    assert core and rim, "the fixture cohort should hold lacunes, some with a rim"
    assert all(f < 0.7 and t > 1.2 for f, t in core)  # CSF-like centre: dark FLAIR, bright T2
    assert all(x > 1.05 for x in rim)  # the gliotic rim is bright on FLAIR


def test_rater_agreement_rate(epvs_cohort):
    s = summarise(epvs_cohort)
    assert 0.2 <= s["perfect_rater_agreement"] <= 0.6
    records = [r for _, d in _subjects(epvs_cohort) for r in d["lesions"]]
    for r in records:
        assert len(r["raters"]) == 6
        assert sum(r["soft_label"].values()) == pytest.approx(1.0, abs=1e-3)
    # agreement falls with size: tiny objects disagree more often than large ones
    small = [len(set(r["raters"])) == 1 for r in records if r["n_voxels"] < 8]
    large = [len(set(r["raters"])) == 1 for r in records if r["n_voxels"] >= 20]
    assert small and large and np.mean(small) < np.mean(large)


def test_deterministic_for_a_seed(tmp_path, cmb_cohort):
    entry = generate_subject("cmb", 1, tmp_path, seed=3, modalities=("swi", "t2"))
    ref = json.loads(cmb_cohort.read_text())
    ref_entry = next(e for s in SPLITS for e in ref[s] if e["subject"] == "sub-0001")
    for key in ("label", "image"):
        a = entry[key] if isinstance(entry[key], list) else [entry[key]]
        b = ref_entry[key] if isinstance(ref_entry[key], list) else [ref_entry[key]]
        for pa, pb in zip(a, b):
            np.testing.assert_array_equal(
                nib.load(tmp_path / pa).get_fdata(), nib.load(cmb_cohort.parent / pb).get_fdata()
            )
    assert json.loads((tmp_path / entry["lesions"]).read_text()) == json.loads(
        (cmb_cohort.parent / ref_entry["lesions"]).read_text()
    )
    other = generate_subject("cmb", 1, tmp_path / "other", seed=4, modalities=("swi",))
    assert not np.array_equal(
        nib.load(tmp_path / "other" / other["image"][0]).get_fdata(), nib.load(tmp_path / entry["image"][0]).get_fdata()
    )


def test_anisotropic_grid(tmp_path):
    entry = generate_subject("cmb", 0, tmp_path, seed=3, spacing=(0.9, 0.9, 3.0))
    img = nib.load(tmp_path / entry["image"][0])
    assert img.header.get_zooms() == pytest.approx((0.9, 0.9, 3.0))
    assert img.shape[2] < img.shape[0]  # thick slices: fewer of them
    np.testing.assert_allclose(nib.load(tmp_path / entry["label"]).affine, img.affine)
    assert entry["spacing"] == pytest.approx([0.9, 0.9, 3.0])


def test_cli_with_montage_and_reuse(tmp_path, capsys):
    out = tmp_path / "cli"
    args = [
        "--task",
        "epvs_lacune",
        "--n",
        "1",
        "--out",
        str(out),
        "--seed",
        "4",
        "--spacing",
        "2",
        "--montage",
        "--quiet",
    ]
    assert synth_main(args) == 0
    text = capsys.readouterr().out
    assert "subjects: training 1" in text and "epvs:" in text and "lacune:" in text
    png = out / "montage.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    before = (out / "datalist.json").stat().st_mtime_ns
    assert synth_main(args) == 0  # same settings: the cohort is reused, not rewritten
    assert (out / "datalist.json").stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="already holds a datalist.json made with other settings"):
        generate_cohort("epvs_lacune", 1, out, seed=5, spacing=(2.0, 2.0, 2.0), progress=False)
    with pytest.raises(SystemExit):
        synth_main(["--task", "cmb", "--n", "1", "--out", str(out), "--modalities", "pet"])


def test_epvs_task_puts_every_object_in_the_roi_so_count_is_the_roi_count(tmp_path):
    from bundle.data.synth import generate_subject

    entry = generate_subject("epvs", 0, tmp_path, seed=11, spacing=(2.0, 2.0, 2.0))
    assert len(entry["image"]) == 1 and entry["image"][0].endswith("_t2.nii.gz")
    records = json.loads((tmp_path / entry["lesions"]).read_text())
    assert entry["count"] == len(records) == entry["counts"]["epvs"] > 0
    assert {r["class"] for r in records} == {"epvs"} and {r["region"] for r in records} == {"basal_ganglia"}
    label = np.asarray(nib.load(tmp_path / entry["label"]).dataobj)
    roi = np.asarray(nib.load(tmp_path / entry["roi"]).dataobj) > 0
    assert len(np.unique(label)) - 1 == entry["count"]
    centres = [tuple(int(round(v)) for v in r["centre_voxel"]) for r in records]
    grown = ndi.binary_dilation(roi)  # centres of mass within a voxel of the ROI (tubes may poke out at their ends)
    assert all(grown[c] for c in centres)


def test_each_rater_keeps_a_profile():
    """Over many doubtful objects, rater 2 answers "nothing" most often, rater 3 "undecided", rater 4 the other
    class, and the skilled rater 6 errs least: the same leanings in every scan."""
    from bundle.data.synth.objects import SimObject
    from bundle.data.synth.raters import rate
    from bundle.data.synth.shapes import Ellipsoid, Tube

    rng = np.random.default_rng(0)
    answers = []
    for n in range(3000):
        if n % 2:
            obj = SimObject("epvs", Tube(np.array([[0.0, 0, 0], [0, 0, 4.0]]), 1.2), "basal_ganglia")
        else:
            obj = SimObject("lacune", Ellipsoid(np.zeros(3), np.array([2.0, 2.0, 2.0])), "basal_ganglia")
        answers.append((obj.kind, rate(obj, int(rng.integers(4, 30)), rng)))
    share = np.zeros((6, 4))  # per rater: nothing, other class, undecided, wrong at all
    for kind, said in answers:
        for k, a in enumerate(said):
            share[k] += [a == "nothing", a not in ("nothing", "undecided", kind), a == "undecided", a != kind]
    share /= len(answers)
    assert np.argmax(share[:, 0]) == 1 and np.argmax(share[:, 2]) == 2 and np.argmax(share[:, 1]) == 3
    assert np.argmin(share[:, 3]) == 5


def test_a_head_around_the_brain_only_when_asked(tmp_path):
    """head=True: skull (dark), scalp (fat bright on T1 and SWI) and the air's noise outside the brain mask, the same
    brain inside it; by default nothing outside the mask (skull-stripped)."""
    plain = generate_subject("cmb", 0, tmp_path / "plain", seed=3, spacing=(2.0, 2.0, 2.0), modalities=("swi", "t1"))
    head = generate_subject("cmb", 0, tmp_path / "head", seed=3, spacing=(2.0, 2.0, 2.0), modalities=("swi", "t1"),
                            head=True)  # fmt: skip
    load = lambda folder, path: np.asarray(nib.load(tmp_path / folder / path).dataobj, np.float32)  # noqa: E731
    brain_p, brain_h = load("plain", plain["mask"]) > 0, load("head", head["mask"]) > 0
    assert brain_h.sum() == pytest.approx(brain_p.sum(), rel=0.02)  # the same brain, on a wider grid
    assert all(brain_h.shape[i] - brain_p.shape[i] == 20 for i in range(3))  # 20 mm (10 voxels) more on each side
    from scipy import ndimage as ndi

    spacing = np.array([2.0, 2.0, 2.0])
    dist = ndi.distance_transform_edt(~brain_h, sampling=spacing)
    for k, modality in enumerate(("swi", "t1")):
        assert not load("plain", plain["image"][k])[~brain_p].any()  # skull-stripped by default
        img = load("head", head["image"][k])
        wm = np.median(img[brain_h])
        scalp = np.percentile(img[(dist > 12) & (dist < 16)], 90)
        air = np.median(img[dist > 30])
        assert scalp > 0.6 * wm and air < 0.15 * wm < scalp, (modality, scalp, air, wm)
