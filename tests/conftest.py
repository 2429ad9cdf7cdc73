# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Shared fixtures: small synthetic cohorts made by the project's own simulator, and tiny hand-made volumes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bundle_cli import bundle_run

from bundle.data.synth import generate_cohort

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cmb_cohort(tmp_path_factory) -> Path:
    """Three 1 mm microbleed subjects with SWI and T2 (about 20 s)."""
    out = tmp_path_factory.mktemp("cmb")
    return generate_cohort("cmb", 3, out, seed=3, modalities=("swi", "t2"), progress=False)


@pytest.fixture(scope="session")
def epvs_cohort(tmp_path_factory) -> Path:
    """Three 1 mm EPVS/lacune subjects with T1, T2, FLAIR and SWI (about 20 s)."""
    out = tmp_path_factory.mktemp("epvs")
    return generate_cohort("epvs_lacune", 3, out, seed=5, modalities=("t1", "t2", "flair", "swi"), progress=False)


@pytest.fixture(scope="session")
def structural_small(tmp_path_factory) -> tuple[Path, dict, dict]:
    """The EPVS and lacune detectors' configs cohort: three 2 mm EPVS/lacune subjects (seed 6), a blank scan (the
    brain of sub-0002 at one intensity per modality, no object), sub-0001 with T1 and FLAIR only (``t1_flair``
    entry) and sub-0002's T2 alone (``t2only``). Returns ``(folder, the datalist, entries by name)``; each test
    module writes its own datalist from them."""
    import json

    root = generate_cohort("epvs_lacune", 3, tmp_path_factory.mktemp("structural2"), seed=6, spacing=(2.0,) * 3,
                           progress=False)  # fmt: skip
    folder = root.parent
    d = json.loads(root.read_text())
    entries = {e["subject"]: e for split in ("training", "validation", "testing") for e in d[split]}
    entries["blank"] = blank_subject(folder, entries["sub-0002"], ("epvs", "lacune"))
    entries["t1_flair"] = {**entries["sub-0001"], "modalities": ["t1", "flair"],
                           "image": entries["sub-0001"]["image"][::2]}  # fmt: skip
    entries["t2only"] = {**entries["sub-0002"], "subject": "t2only", "modalities": ["t2"],
                         "image": entries["sub-0002"]["image"][1:2]}  # fmt: skip
    return folder, d, entries


@pytest.fixture(scope="session")
def coarse_cohort(tmp_path_factory) -> Path:
    """Two fast 2 mm EPVS/lacune subjects for pipeline tests."""
    out = tmp_path_factory.mktemp("coarse")
    return generate_cohort("epvs_lacune", 2, out, seed=2, spacing=(2.0, 2.0, 2.0), progress=False)


def run_bundle(args, cwd=REPO) -> str:
    """Run ``python -m monai.bundle run ARGS`` (warnings off; forked from a preloaded server, tests/bundle_cli.py),
    assert it succeeded, return stdout + stderr."""
    cmd = [sys.executable, "-m", "monai.bundle", "run", *args]
    res = bundle_run(cmd, cwd, {**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout + res.stderr


def config_files(names) -> str:
    """A list of repository config files as the ``--config_file`` argument (absolute paths)."""
    return str([str(REPO / c) for c in names])


def write_nii(path: Path, array, affine=None, dtype=np.float32) -> str:
    """Write a small NIfTI for hand-made test cases and return its path as a string."""
    affine = np.diag([1.0, 1.0, 1.0, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=dtype), affine), str(path))
    return str(path)


def sphere(shape, centre, radius) -> np.ndarray:
    """Boolean ball of ``radius`` voxels at ``centre``."""
    grid = np.indices(shape)
    return ((grid - np.array(centre)[:, None, None, None]) ** 2).sum(0) <= radius**2


def blank_subject(folder: Path, entry: dict, classes) -> dict:
    """A scan without objects made from a simulated entry (paths relative to ``folder``): the entry's brain at one
    intensity per modality (300, 400, ...), an empty label map and lesion list; returns its datalist entry
    (subject ``blank``, count 0)."""
    (folder / "blank").mkdir()
    mask = nib.load(folder / entry["mask"])
    brain = np.asarray(mask.dataobj) > 0
    images = []
    for n, path in enumerate(entry["image"]):
        images.append(f"blank/blank_{n}.nii.gz")
        nib.save(nib.Nifti1Image(brain * (300.0 + 100 * n), nib.load(folder / path).affine), folder / images[-1])
    nib.save(nib.Nifti1Image(np.zeros(mask.shape, np.int16), mask.affine), folder / "blank/blank_label.nii.gz")
    (folder / "blank/blank_lesions.json").write_text("[]")
    blank = dict(entry, subject="blank", count=0, counts={c: 0 for c in classes}, image=images)
    blank.update(label="blank/blank_label.nii.gz", lesions="blank/blank_lesions.json")
    blank.pop("mimics", None)
    return blank
