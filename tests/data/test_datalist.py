# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Datalist loading: path resolution, round trip, and errors naming the culprit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_nii

from bundle.data import DatalistError, folder_entries, load_datalist, save_datalist


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "s1").mkdir()
    for name in ("t1", "t2", "label", "mask"):
        write_nii(tmp_path / "s1" / f"{name}.nii.gz", [[[0.0 if name == "label" else 1.0]]])
    (tmp_path / "s1" / "lesions.json").write_text("[]")
    entry = {
        "subject": "s1",
        "image": ["s1/t1.nii.gz", "s1/t2.nii.gz"],
        "label": "s1/label.nii.gz",
        "lesions": "s1/lesions.json",
        "mask": "s1/mask.nii.gz",
        "count": 0,
    }
    data = {"modalities": ["t1", "t2"], "training": [entry], "testing": [{"subject": "s1", "image": "s1/t1.nii.gz"}]}
    (tmp_path / "datalist.json").write_text(json.dumps(data))
    return tmp_path


def test_relative_paths_resolve_against_datalist_folder(folder):
    (entry,) = load_datalist(folder / "datalist.json", "training", modalities=["t1", "t2"])
    assert entry["image"] == [str(folder / "s1/t1.nii.gz"), str(folder / "s1/t2.nii.gz")]
    assert entry["lesions"] == str(folder / "s1/lesions.json")
    assert entry["count"] == 0 and entry["subject"] == "s1"


def test_dataset_dir_overrides_base(folder, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    (other / "datalist.json").write_text((folder / "datalist.json").read_text())
    (entry,) = load_datalist(other / "datalist.json", "training", dataset_dir=folder)
    assert Path(entry["mask"]) == folder / "s1/mask.nii.gz"


def test_single_image_string_becomes_list(folder):
    data = json.loads((folder / "datalist.json").read_text())
    data.pop("modalities")
    (folder / "datalist.json").write_text(json.dumps(data))
    (entry,) = load_datalist(folder / "datalist.json", "testing")
    assert entry["image"] == [str(folder / "s1/t1.nii.gz")]


def test_round_trip_keeps_entries(folder, tmp_path):
    entries = load_datalist(folder / "datalist.json", "training")
    out = save_datalist({"modalities": ["t1", "t2"], "training": entries}, folder / "copy.json")
    saved = json.loads(out.read_text())
    assert saved["training"][0]["image"] == ["s1/t1.nii.gz", "s1/t2.nii.gz"]  # written relative again
    assert load_datalist(out, "training") == entries


@pytest.mark.parametrize(
    "mutate, split, exc, match",
    [
        (lambda d: d, "validation", DatalistError, r"has no 'validation' list"),
        (lambda d: d, "train", DatalistError, r"unknown split 'train'"),
        (lambda d: d["training"][0].pop("subject"), "training", DatalistError, r"has no 'subject'"),
        (lambda d: d["training"][0].pop("image"), "training", DatalistError, r"s1: datalist entry has no 'image'"),
        (lambda d: d["training"][0].update(count=-1), "training", DatalistError, r"s1: 'count' must be a non-negative"),
        (
            lambda d: d["training"][0].update(count=2.5),
            "training",
            DatalistError,
            r"s1: 'count' must be a non-negative",
        ),
        (
            lambda d: d["training"][0].update(label="s1/x.nii.gz"),
            "training",
            FileNotFoundError,
            r"s1: label file .*x\.nii\.gz does not exist",
        ),
        (
            lambda d: d.update(modalities=["t2", "t1"]),
            "training",
            DatalistError,
            r"modalities \['t2', 't1'\], the config expects \['t1', 't2'\]",
        ),
        (
            lambda d: d["training"][0]["image"].pop(),
            "training",
            DatalistError,
            r"s1: 1 images given, 2 modalities expected \(datalist .*datalist.json\)",
        ),
    ],
)
def test_invalid_datalists(folder, mutate, split, exc, match):
    data = json.loads((folder / "datalist.json").read_text())
    mutate(data)
    (folder / "datalist.json").write_text(json.dumps(data))
    with pytest.raises(exc, match=match):
        load_datalist(folder / "datalist.json", split, modalities=["t1", "t2"])


def test_missing_datalist(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"datalist .*none\.json does not exist"):
        load_datalist(tmp_path / "none.json")


def test_datalist_not_json(tmp_path):
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DatalistError, match=r"datalist .*bad\.json is not valid JSON"):
        load_datalist(tmp_path / "bad.json")


def test_validate_cli_reports_every_bad_subject(folder, capsys):
    import numpy as np

    from bundle.data.validate import main as validate_main

    assert validate_main([str(folder / "datalist.json"), "--split", "training", "--modalities", "t1,t2"]) == 0
    assert "1 subject(s) valid, 0 problem(s)" in capsys.readouterr().out
    data = json.loads((folder / "datalist.json").read_text())
    good = data["training"][0]
    write_nii(folder / "s1" / "nan.nii.gz", np.full((1, 1, 1), np.nan))
    data["training"] = [
        good,
        {**good, "subject": "s2", "image": ["s1/nan.nii.gz", "s1/t2.nii.gz"]},
        {**good, "subject": "s3", "mask": "s3/missing.nii.gz"},
    ]
    (folder / "datalist.json").write_text(json.dumps(data))
    assert validate_main([str(folder / "datalist.json"), "--split", "training"]) == 1
    out = capsys.readouterr().out
    assert "problem: s2: image file" in out and "nan.nii.gz has 1 non-finite" in out
    assert "problem: s3: mask file" in out and "missing.nii.gz does not exist" in out
    assert "1 subject(s) valid, 2 problem(s)" in out
    assert validate_main([str(folder / "nothing.json")]) == 1


def test_inference_list_prefers_testing_then_validation(folder):
    from bundle.data import load_inference_list

    data = json.loads((folder / "datalist.json").read_text())
    data.pop("modalities")
    data["testing"] = []
    data["validation"] = [data["training"][0] | {"subject": "v1"}]
    (folder / "datalist.json").write_text(json.dumps(data))
    assert [e["subject"] for e in load_inference_list(folder / "datalist.json")] == ["v1"]  # empty testing list
    data["testing"] = [data["training"][0] | {"subject": "t1"}]
    (folder / "datalist.json").write_text(json.dumps(data))
    assert [e["subject"] for e in load_inference_list(folder / "datalist.json")] == ["t1"]
    data.pop("testing"), data.pop("validation")
    (folder / "datalist.json").write_text(json.dumps(data))
    with pytest.raises(DatalistError, match="has no testing or validation entries"):
        load_inference_list(folder / "datalist.json")


def test_required_keys_are_reported_with_the_subject(folder):
    from bundle.data import load_inference_list

    (entry,) = load_datalist(folder / "datalist.json", "training", require=["mask", "label"])
    data = json.loads((folder / "datalist.json").read_text())
    data["modalities"] = ["t1"]
    (folder / "datalist.json").write_text(json.dumps(data | {"training": []}))
    assert entry["mask"].endswith("s1/mask.nii.gz")
    with pytest.raises(DatalistError, match=r"s1: the testing entry in .*datalist.json has no \['mask'\], which"):
        load_inference_list(folder / "datalist.json", modalities=["t1"], require=["mask"])


def test_a_count_of_zero_is_data_not_a_missing_key(folder):
    """GP-Unet requires "count"; a scan without lesions has count 0 and must be accepted (a null mask is not)."""
    data = json.loads((folder / "datalist.json").read_text())
    data["training"][0]["count"] = 0
    (folder / "datalist.json").write_text(json.dumps(data))
    (entry,) = load_datalist(folder / "datalist.json", "training", require=["count"])
    assert entry["count"] == 0
    data["training"][0]["mask"] = None
    (folder / "datalist.json").write_text(json.dumps(data))
    with pytest.raises(DatalistError, match=r"s1: .* has no \['mask'\]"):
        load_datalist(folder / "datalist.json", "training", require=["mask"])


def test_folder_input_pairs_masks_and_rejects_bad_folders(tmp_path):
    from bundle.data import folder_entries, inference_entries

    for name in ("b.nii.gz", "a.nii", "a_brainmask.nii.gz", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.nii.gz").write_bytes(b"x")  # subfolders are not read
    entries = inference_entries(tmp_path, modalities=["swi"])
    assert [e["subject"] for e in entries] == ["a", "b"]
    assert entries[0]["image"] == [str((tmp_path / "a.nii").resolve())]
    assert entries[0]["mask"] == str((tmp_path / "a_brainmask.nii.gz").resolve()) and "mask" not in entries[1]
    with pytest.raises(DatalistError, match="b: no \\['mask'\\] beside"):
        inference_entries(tmp_path, require=["mask"])
    with pytest.raises(DatalistError, match="needs the modalities \\['t1', 't2', 'flair'\\]"):
        inference_entries(tmp_path, modalities=["t1", "t2", "flair"])
    (tmp_path / "z_mask.nii.gz").write_bytes(b"x")
    with pytest.raises(DatalistError, match="masks without an image beside them: \\['z_mask'\\]"):
        folder_entries(tmp_path)
    with pytest.raises(DatalistError, match="holds no NIfTI image"):
        folder_entries(_empty(tmp_path))
    with pytest.raises(FileNotFoundError, match="input folder .* does not exist"):
        folder_entries(tmp_path / "missing")


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    (d / "readme.txt").write_text("no images")
    return d


@pytest.mark.parametrize("bad", ["../../ESCAPED", "/tmp/abs", "a/b", "a b", "", ".hidden", "x" * 201, 7])
def test_unsafe_subject_ids_are_refused_by_the_loader_and_validate(folder, bad):
    from bundle.data.validate import validate_datalist

    data = json.loads((folder / "datalist.json").read_text())
    data["testing"] = [{"subject": bad, "image": ["s1/t1.nii.gz", "s1/t2.nii.gz"]}]
    (folder / "datalist.json").write_text(json.dumps(data))
    with pytest.raises(DatalistError, match=r"subject id .* is not a safe name"):
        load_datalist(folder / "datalist.json", "testing")
    ok, problems = validate_datalist(folder / "datalist.json", ("testing",))
    assert ok == 0 and len(problems) == 1 and "is not a safe name" in problems[0]


def test_duplicate_subject_ids_are_refused_and_reported(folder):
    from bundle.data.validate import validate_datalist

    data = json.loads((folder / "datalist.json").read_text())
    data["testing"] = [{"subject": "t1", "image": ["s1/t1.nii.gz", "s1/t2.nii.gz"]}] * 2
    (folder / "datalist.json").write_text(json.dumps(data))
    with pytest.raises(DatalistError, match=r"t1: the subject id appears more than once in the testing list"):
        load_datalist(folder / "datalist.json", "testing")
    assert load_datalist(folder / "datalist.json", "training")[0]["subject"] == "s1"  # other splits still load
    data["testing"] = [{"subject": "s1", "image": ["s1/t1.nii.gz", "s1/t2.nii.gz"]}]  # in training too: a leak
    (folder / "datalist.json").write_text(json.dumps(data))
    _, problems = validate_datalist(folder / "datalist.json")
    assert [p for p in problems if "more than once" in p] == [
        f"s1: the subject id appears more than once in {folder / 'datalist.json'} (training, testing)"
    ]


def test_split_given_as_a_dict_is_named(folder):
    data = json.loads((folder / "datalist.json").read_text())
    data["testing"] = {"subject": "t1", "image": "s1/t1.nii.gz"}
    (folder / "datalist.json").write_text(json.dumps(data))
    with pytest.raises(DatalistError, match=r"'testing' must be a list of entries, got dict"):
        load_datalist(folder / "datalist.json", "testing")


def test_folder_input_refuses_two_files_of_one_subject_and_unsafe_file_names(tmp_path):
    write_nii(tmp_path / "sub.nii.gz", [[[0.0]]])
    write_nii(tmp_path / "sub.nii", [[[0.0]]])
    with pytest.raises(DatalistError, match=r"sub.nii and sub.nii.gz would both be subject sub"):
        folder_entries(tmp_path)
    (tmp_path / "sub.nii").unlink()
    write_nii(tmp_path / "my scan.nii.gz", [[[0.0]]])
    with pytest.raises(DatalistError, match=r"subject id 'my scan' \(file .*my scan.nii.gz\) is not a safe name"):
        folder_entries(tmp_path)


def test_optional_modalities_take_any_subset_in_order_and_name_the_subject(folder):
    data = json.loads((folder / "datalist.json").read_text())
    data["modalities"] = ["t1", "t2", "flair"]
    only_t2 = {**data["training"][0], "subject": "s2", "modalities": ["t2"], "image": ["s1/t2.nii.gz"]}
    data["training"] = [{**data["training"][0], "modalities": ["t1", "t2"]}, only_t2]
    (folder / "datalist.json").write_text(json.dumps(data))
    mods = ["t1", "t2", "flair"]
    entries = load_datalist(folder / "datalist.json", modalities=mods, optional_modalities=True)
    assert [e["modalities"] for e in entries] == [["t1", "t2"], ["t2"]]
    with pytest.raises(DatalistError, match=r"s1 \(datalist .*\): has the modalities \['t1', 't2'\]; this config"):
        load_datalist(folder / "datalist.json", modalities=mods)  # a config that needs all three
    assert len(load_datalist(folder / "datalist.json")) == 2  # no config modalities (evaluation): each its own
    for bad, match in ((["t2", "t1"], "in that order"), (["dwi"], "subset"), ([], "non-empty")):
        data["training"][1]["modalities"] = bad
        (folder / "datalist.json").write_text(json.dumps(data))
        with pytest.raises(DatalistError, match=rf"^s2 \(datalist .*\): modalities .* {match}"):
            load_datalist(folder / "datalist.json", modalities=mods, optional_modalities=True)
    data["training"][1]["modalities"] = ["t2", "flair"]  # two names, one image
    (folder / "datalist.json").write_text(json.dumps(data))
    with pytest.raises(DatalistError, match=r"s2: 1 images given, 2 modalities expected \(datalist .*datalist.json\)"):
        load_datalist(folder / "datalist.json", modalities=mods, optional_modalities=True)
