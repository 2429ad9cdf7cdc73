# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The bundle zip: the model-zoo layout, `monai.bundle download` from a file URL, the main job run from the
downloaded folder, and `monai.bundle.load` giving the detector with the shipped weights."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch
from conftest import REPO

from bundle import __version__
from scripts.package import package

NAME = "brain_mri_eso_detection"


def _run(cmd, cwd):
    res = subprocess.run([sys.executable, "-m", "monai.bundle", *cmd], capture_output=True, text=True, cwd=cwd,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout + res.stderr


@pytest.mark.filterwarnings("ignore:parsing config_file")  # MONAI's notice that configs run code: ours, trusted
def test_zip_downloads_runs_and_loads(tmp_path):
    path = package(tmp_path / "dist", REPO)
    assert path.name == f"{NAME}_v{__version__}.zip"
    names = zipfile.ZipFile(path).namelist()
    assert all(n.startswith(f"{NAME}/") for n in names)  # one top-level folder named after the bundle
    for need in ("configs/inference.yaml", "configs/inference.json", "configs/metadata.json", "models/model.pt",
                 "bundle/__init__.py", "LICENSE", "docs/README.md"):  # fmt: skip
        assert f"{NAME}/{need}" in names
    tracked = subprocess.run(["git", "ls-files", "bundle", "configs", "models"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()  # fmt: skip
    assert len(tracked) > 100 and {f"{NAME}/{f}" for f in tracked} <= set(names)  # both detectors' code and files
    assert not any(n.startswith((f"{NAME}/tests/", f"{NAME}/.ci/")) for n in names)
    assert json.loads(zipfile.ZipFile(path).read(f"{NAME}/configs/metadata.json"))["version"] == __version__

    from monai.bundle import download, load

    bundles = tmp_path / "bundles"  # `python -m monai.bundle download` calls this function with the same arguments
    download(name=NAME, version=__version__, url=path.as_uri(), bundle_dir=str(bundles))
    root = bundles / NAME
    assert (root / "models" / "model.pt").is_file()
    out = tmp_path / "out"
    log = _run(["run", "--config_file", "configs/inference.yaml", "--output_dir", str(out), "--progress", "false",
                "--atlas_deformable", "false", "--structural_detector", "false"], cwd=root)  # fmt: skip
    # (this tests the package: affine regions, and the microbleed detector alone; the demo run, conftest's, runs both
    # detectors on the same demo from the repository, and the zip holds the other detector's files, checked above)
    counts = list(csv.DictReader((out / "counts.csv").open()))
    assert [c["subject"] for c in counts] == ["sub-0000", "sub-0001"] and "QC report:" in log
    assert sum(int(c["total"]) for c in counts) >= 1

    net = load(NAME, bundle_dir=str(bundles), workflow_type="inference", device="cpu")
    want = torch.load(REPO / "models" / "model.pt", weights_only=True)
    assert type(net).__name__ == "TwoStageCMBDetector"
    assert all(torch.equal(net.state_dict()[k], v) for k, v in want.items())
