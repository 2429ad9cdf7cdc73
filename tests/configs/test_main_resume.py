# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The main job killed and run again, and split over two processes by torchrun: the same outputs as the demo run
(conftest's ``demo_run``) and as one process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
from bundle_cli import bundle_popen, bundle_run
from conftest import AFFINE, REPO, demo_truth


def test_a_sharded_run_killed_after_one_subject_resumes_to_the_same_outputs(demo_run, tmp_path):
    """The demo in two shards, as a SLURM array's two tasks (one after the other here): ``--shard 1/2`` runs both
    detectors on its subject only; ``--shard 0/2`` is killed (SIGKILL) once its subject is complete in the EPVS and
    lacune detector (which runs first); then the command without ``--shard``, with ``--processes 2``, runs both
    shards again at once (they skip every complete subject and run what the kill left) and merges. The tables and
    maps equal the uninterrupted demo run's, with no temporary file left."""
    import time

    out, _ = demo_run
    res_dir = tmp_path / "res"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.yaml", "--datalist",
           str(out / "demo_input" / "input.json"), "--output_dir", str(res_dir), "--progress", "false"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = bundle_run([*cmd, "--shard", "1/2"], REPO, env)
    assert res.returncode == 0, res.stderr[-3000:]
    part = res_dir / "structural"
    wrote = {d.name: sorted(p.stem for p in (d / "subjects").glob("*.json")) for d in (res_dir, part)}
    assert wrote == {"res": ["sub-0001"], "structural": ["sub-0001"]}  # its subject in both detectors, no other
    run = json.loads((res_dir / "run.json").read_text())
    assert (run["status"], run["written"], run["pending"]) == ("incomplete", ["sub-0001"], ["sub-0000"])
    done = {p: p.stat().st_mtime_ns for d in (res_dir, part) for p in (d / "subjects").glob("*.json")}
    proc = bundle_popen([*cmd, "--shard", "0/2"], REPO, env)
    first = part / "subjects" / "sub-0000.json"  # written after the subject's maps: the subject is complete
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()  # SIGKILL
    proc.wait()
    assert first.exists() and not (res_dir / "subjects" / "sub-0000.json").exists()  # before its microbleeds
    done.update({p: p.stat().st_mtime_ns for p in (first, part / "maps" / "sub-0000_epvs_prob.nii.gz")})
    (part / "maps" / ".sub-0000_lacune_prob.k2j_8x0q.nii.gz").write_bytes(b"")  # what a kill mid-write leaves
    import torch

    threads = torch.get_num_threads()  # the demo run's: each shard gets half of the job's, so the same sums
    res = bundle_run([*cmd, "--processes", "2"], REPO, {**env, "OMP_NUM_THREADS": str(2 * threads)})
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert f"2 processes, {threads} thread(s) each" in log and "stopped with status" not in log
    for i in range(2):  # each shard ran on its own share to the end (its summary printed)
        log = (res_dir / "logs" / f"shard_{i}of2.log").read_text()
        assert f"> shard: '{i}/2'" in log and "> processes: 1" in log and f"QC report: {res_dir}" in log
    assert {p: p.stat().st_mtime_ns for p in done} == done  # the complete subjects were skipped, not redone
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
    """Three subjects on two gloo processes (torchrun, configs/multi_gpu_inference.yaml), so the shares differ (the
    first and third subjects, the second): each rank writes its subjects, rank 0 merges; the tables equal one
    process's byte for byte, and the maps and report are complete."""
    out, _ = demo_run
    entries, root = demo_truth(out)
    three = [{"subject": e["subject"] + tag, "image": e["image"][:1], "mask": e["mask"]} for e in entries for tag in
             ("", "-b")][:3]  # fmt: skip
    (root / "three.json").write_text(json.dumps({"testing": three}))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    args = ["--datalist", str(root / "three.json"), "--progress", "false", *AFFINE]
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
    assert [c["subject"] for c in csv.DictReader((two / "counts.csv").open())] == [e["subject"] for e in three]
    assert sorted(p.name for p in (two / "maps").iterdir()) == sorted(p.name for p in (one / "maps").iterdir())
    assert sorted(p.name for p in (two / "report").glob("*.png")) == sorted(
        ["cohort_counts.png", *(f"{e['subject']}.png" for e in three)])  # the cohort page's histograms too
    assert json.loads((two / "run.json").read_text())["written"] == [e["subject"] for e in three]
