# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The bundle as MONAI sees it: metadata against the schema, configs that run, the demo job."""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest
from bundle_cli import bundle_run
from conftest import REPO
from monai.bundle import ConfigParser, verify_metadata
from monai.transforms import Compose

from bundle.data import load_datalist
from bundle.transforms import histogram_peak

SCHEMA = REPO / "tests" / "data" / "meta_schema.json"


def _verify(meta: dict, tmp_path):
    """MONAI's verify_metadata with the offline schema copy (a file already at `filepath` is not downloaded)."""
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    shutil.copy(SCHEMA, tmp_path / "schema.json")
    verify_metadata(meta_file=str(tmp_path / "metadata.json"), filepath=str(tmp_path / "schema.json"))


def test_metadata_validates_against_schema(tmp_path):
    meta = json.loads((REPO / "configs" / "metadata.json").read_text())
    _verify(meta, tmp_path)
    assert meta["name"] == "brain_mri_eso_detection"
    assert meta["version"] in meta["changelog"]
    for key in (
        "image_classes",
        "label_classes",
        "pred_classes",
        "eval_metrics",
        "intended_use",
        "references",
        "data_source",
        "data_type",
        "required_packages_version",
    ):
        assert key in meta
    assert set(meta["network_data_format"]) == {"inputs", "outputs"}
    assert "image" in meta["network_data_format"]["inputs"] and "pred" in meta["network_data_format"]["outputs"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.pop("monai_version"),
        lambda m: m["network_data_format"]["inputs"]["image"].pop("num_channels"),
        lambda m: m.update(version="one"),
        lambda m: m["network_data_format"].pop("outputs"),
    ],
)
def test_schema_rejects_broken_metadata(tmp_path, mutate):
    meta = json.loads((REPO / "configs" / "metadata.json").read_text())
    mutate(meta)
    with pytest.raises(ValueError):
        _verify(meta, tmp_path)


def test_metadata_versions_match_setup():
    meta = json.loads((REPO / "configs" / "metadata.json").read_text())
    import bundle

    assert meta["version"] == bundle.__version__
    assert "torch==2.13.0" in (REPO / "setup.cfg").read_text()


def _chain(name: str):
    parser = ConfigParser()
    parser.read_config(str(REPO / "configs" / "common.yaml"))
    return Compose(parser.get_parsed_content(name))


@pytest.fixture(scope="module")
def coarse_entry(coarse_cohort):
    return load_datalist(coarse_cohort, "training", modalities=["t1", "t2", "flair"])[0]


def test_cmb_preprocessing_from_config(coarse_entry):
    d = _chain("preprocessing_cmb")(coarse_entry)
    brain = d["mask"][0].numpy() > 0
    for c in range(d["image"].shape[0]):
        assert histogram_peak(d["image"][c].numpy()[brain]) == pytest.approx(0.5, abs=0.02)


def test_rcnn_preprocessing_from_config(coarse_entry):
    """The 1 mm working grid, each modality's brain histogram peak at 0.5, then one availability flag per modality;
    a subject without T2 gets a zero T2 channel and a zero flag."""
    d = _chain("preprocessing_rcnn")(coarse_entry)
    img, brain = d["image"].numpy(), d["mask"][0].numpy() > 0
    assert img.shape[0] == 6 and np.allclose(d["image"].pixdim, 1.0) and img.shape[1:] == brain.shape
    for c in range(3):
        assert histogram_peak(img[c][brain]) == pytest.approx(0.5, abs=0.02)
    assert np.all(img[3:] == 1.0)
    no_t2 = {**coarse_entry, "modalities": ["t1", "flair"], "image": coarse_entry["image"][::2]}
    d = _chain("preprocessing_rcnn")(no_t2)
    img = d["image"].numpy()
    assert not img[1].any() and not img[4].any() and np.all(img[[3, 5]] == 1.0)
    assert histogram_peak(img[2][brain]) == pytest.approx(0.5, abs=0.02)


def test_gpunet_preprocessing_from_config(coarse_entry):
    d = _chain("preprocessing_gpunet")(coarse_entry)
    raw = _chain("load_subject")(coarse_entry)
    roi = raw["roi"][0].numpy() > 0
    img = d["image"].numpy()
    assert img.min() >= 0.0 and 0.9 < img.max() <= 1.0  # trimmed on the whole scan, the ROI's brightest near 1
    assert all(s_out < s_in for s_out, s_in in zip(img.shape[1:], roi.shape))  # cropped around the ROI
    idx = np.argwhere(roi)
    roi_extent = idx.max(0) - idx.min(0) + 1
    assert all(s >= e for s, e in zip(img.shape[1:], roi_extent))  # the crop holds the whole (dilated) ROI
    dilated = d["roi"][0].numpy() > 0
    for c in range(img.shape[0]):  # the ROI's tissue is floored at its 90th percentile: most of the ROI is 0
        assert 0.0 < np.mean(img[c][dilated] > 0) < 0.25


def test_demo_config_runs_as_documented(tmp_path):
    out = tmp_path / "demo"
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(REPO / "configs" / "demo.yaml"),
        "--n_subjects",
        "2",
        "--spacing",
        "[2.0, 2.0, 2.0]",
        "--output_dir",
        str(out),
        "--task",
        "epvs_lacune",
    ]
    res = bundle_run(cmd, REPO, {**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "subjects: training 2" in res.stdout and "epvs:" in res.stdout
    data = json.loads((out / "datalist.json").read_text())
    assert len(data["training"]) == 2 and data["modalities"] == ["t1", "t2", "flair"]
    assert (out / "montage.png").stat().st_size > 10_000
