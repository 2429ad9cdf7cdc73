# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Shared fixtures: small synthetic cohorts made by the project's own simulator, the demo run, and tiny hand-made
volumes; the order the test files run in (docs/testing.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# pytest-xdist workers share the cores: each gets its share of threads (torch, OpenMP, BLAS and ITK read these when
# they load, so before the imports below; the commands a test starts inherit them). Two workers of two threads on
# two cores ran the suite slower than one process (docs/testing.md).
THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
#: the thread settings this worker took from the suite (a setting the user gave is kept)
SHARED_THREADS = {}
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    _SHARE = str(max(1, cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _name in THREADS:
        if _name not in os.environ:
            SHARED_THREADS[_name] = os.environ[_name] = _SHARE

import json  # noqa: E402
import shutil  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from bundle_cli import bundle_run  # noqa: E402
from filelock import FileLock  # noqa: E402

from bundle.data.synth import generate_cohort  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: the demo run (and the resume test, which compares with it) keeps the configs' regions (affine + B-spline) and
#: checks them; main-job runs that test other things take the affine map alone, about 15 s less per subject
AFFINE = ["--atlas_deformable", "false"]
#: the two-stage detector's training and evaluation tests on the 2 mm cohort work on its own 2 mm grid: the configs'
#: 1 mm working grid would upsample every scan 8 times for nothing (training tests 2-3 times faster, docs/testing.md)
GRID_2MM = ["--working_spacing", "[2.0, 2.0, 2.0]"]

#: the test files that run first, long ones first (the seconds of their longest tests on one worker of a clean-clone
#: run, 3c8ab6e, docs/testing.md): pytest-xdist hands whole files (``--dist loadfile --no-loadscope-reorder``, so in
#: this order) to a worker that is nearly done, so starting the long ones first keeps both workers busy to the end.
#: The demo run's file comes first; the two other files that use the demo run come after files that do not and take
#: longer than the demo run together, so they do not wait for it.
FIRST = ("tests/configs/test_main_config.py",  # the demo run 80, evaluation 19, training 12
         "tests/methods/twostage/test_twostage_config.py",  # training 22
         "tests/configs/test_multi_gpu_config.py",  # 22
         "tests/inference/test_spacing.py",  # 41 (and conftest's swi_1mm, 16, when this file makes it)
         "tests/configs/test_main_resume.py",  # 66, 51
         "tests/configs/test_main_cohorts.py",  # 71, 16, 15, 13, 9
         "tests/test_package.py")  # 30  # fmt: skip


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (setup.cfg): one worker per core, at most one per 4 GiB of memory (the main job peaks at 1.4-2.1
    GiB, docs/benchmarks.md); pytest-xdist's ``PYTEST_XDIST_AUTO_NUM_WORKERS`` overrides it."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist's own hook reads it
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return max(1, min(cores(), int(memory_gib // 4)))


def pytest_collection_modifyitems(items):
    """The files of :data:`FIRST` first, in its order; the others after them as collected."""
    rank = {name: n for n, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(FIRST)))


def shared(tmp_path_factory, name: str, make):
    """``make(folder)``'s value (JSON: paths as strings), made once per test session in the new folder ``name``:
    under pytest-xdist the first worker to ask makes it, in a folder every worker sees, while the others wait for
    it. A making that fails keeps nothing: the next call makes the value again."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-of-USER/pytest-N, above each worker's own folder
    folder, value = root / name, root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not value.is_file():
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir()
            made = json.dumps(make(folder))
            tmp = root / f".{name}.json.tmp"
            tmp.write_text(made)
            os.replace(tmp, value)  # whole or absent, even if the worker is killed
        return json.loads(value.read_text())


def shared_cohort(tmp_path_factory, name: str, task: str, n: int, **kwargs) -> Path:
    """The datalist of ``generate_cohort(task, n, folder, **kwargs)``, simulated once per session (:func:`shared`)."""
    make = lambda out: str(generate_cohort(task, n, out, progress=False, **kwargs))  # noqa: E731
    return Path(shared(tmp_path_factory, name, make))


@pytest.fixture(scope="session")
def cmb_cohort(tmp_path_factory) -> Path:
    """Three 1 mm microbleed subjects with SWI and T2 (about 20 s)."""
    return shared_cohort(tmp_path_factory, "cmb", "cmb", 3, seed=3, modalities=("swi", "t2"))


@pytest.fixture(scope="session")
def epvs_cohort(tmp_path_factory) -> Path:
    """Three 1 mm EPVS/lacune subjects with T1, T2, FLAIR and SWI (about 20 s)."""
    return shared_cohort(tmp_path_factory, "epvs", "epvs_lacune", 3, seed=5, modalities=("t1", "t2", "flair", "swi"))


def _structural_small(out: Path) -> list:
    root = generate_cohort("epvs_lacune", 3, out, seed=6, spacing=(2.0,) * 3, progress=False)
    d = json.loads(root.read_text())
    entries = {e["subject"]: e for split in ("training", "validation", "testing") for e in d[split]}
    entries["blank"] = blank_subject(out, entries["sub-0002"], ("epvs", "lacune"))
    entries["t1_flair"] = {**entries["sub-0001"], "modalities": ["t1", "flair"],
                           "image": entries["sub-0001"]["image"][::2]}  # fmt: skip
    entries["t2only"] = {**entries["sub-0002"], "subject": "t2only", "modalities": ["t2"],
                         "image": entries["sub-0002"]["image"][1:2]}  # fmt: skip
    return [str(out), d, entries]


@pytest.fixture(scope="session")
def structural_small(tmp_path_factory) -> tuple[Path, dict, dict]:
    """The EPVS and lacune detectors' configs cohort: three 2 mm EPVS/lacune subjects (seed 6), a blank scan (the
    brain of sub-0002 at one intensity per modality, no object), sub-0001 with T1 and FLAIR only (``t1_flair``
    entry) and sub-0002's T2 alone (``t2only``). Returns ``(folder, the datalist, entries by name)``; each test
    module writes its own datalist from them, under a name of its own."""
    folder, d, entries = shared(tmp_path_factory, "structural2", _structural_small)
    return Path(folder), d, entries


@pytest.fixture(scope="session")
def cmb_2mm(tmp_path_factory) -> Path:
    """Five 2 mm microbleed subjects (seed 6) for the training configs: training sub-0000 (no microbleed), sub-0001
    (11), sub-0002 (5); validation sub-0003 (4)."""
    return shared_cohort(tmp_path_factory, "cmb_2mm", "cmb", 5, seed=6, spacing=(2.0, 2.0, 2.0))


@pytest.fixture(scope="session")
def coarse_cohort(tmp_path_factory) -> Path:
    """Two fast 2 mm EPVS/lacune subjects for pipeline tests."""
    return shared_cohort(tmp_path_factory, "coarse", "epvs_lacune", 2, seed=2, spacing=(2.0, 2.0, 2.0))


def swi_acquisition(spacing):
    """The physics SWI simulator's ``train`` acquisition (first draw of seed 0) at 3 T, TE 20 ms, SNR 30, magnitude
    contrast, 10 microbleeds, tilted by 12 degrees, on a grid of ``spacing`` mm."""
    import dataclasses

    from bundle.data.synth.swi_physics import draw_acquisition

    acq = draw_acquisition("train", np.random.default_rng(0))
    return dataclasses.replace(acq, b0=3.0, te_ms=20.0, snr=30.0, n_cmb=10, contrast="magnitude", tilt_deg=12.0,
                               spacing=tuple(spacing))  # fmt: skip


@pytest.fixture(scope="session")
def swi_1mm(tmp_path_factory) -> tuple[Path, dict]:
    """Subject 0 of seed 21 of the physics SWI simulator on :func:`swi_acquisition` at 1 mm (about 20 s): ``(folder,
    datalist entry with paths relative to it)``."""
    from bundle.data.synth.swi_physics import generate_swi_subject

    def make(out):
        return [str(out), generate_swi_subject(0, out, seed=21, acquisition=swi_acquisition((1.0,) * 3))]

    folder, entry = shared(tmp_path_factory, "swi_1mm", make)
    return Path(folder), entry


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> tuple[Path, str]:
    """README command 1's job: default input (two simulated subjects) and default weights, `run` spelling. Returns
    ``(output folder, console log)``; the tests that use it write only new files, under names of their own."""
    def make(folder):
        out = folder / "out"
        return [str(out), run_bundle(["--config_file", "configs/inference.yaml", "--output_dir", str(out)])]

    out, log = shared(tmp_path_factory, "main", make)
    return Path(out), log


def demo_truth(out: Path) -> tuple[list[dict], Path]:
    """The demo run's datalist entries (``testing``) and the folder their paths are relative to."""
    data = json.loads((out / "demo_input" / "input.json").read_text())
    return data["testing"], out / "demo_input"


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
