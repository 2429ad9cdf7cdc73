# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""configs/multi_gpu_train.yaml under torchrun: two processes (CPU, gloo here; one per GPU on a GPU machine) train
every ensemble member data-parallel, end with identical weights, and rank 0 writes one detector."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import GRID_2MM, REPO
from monai.bundle import ConfigParser

from bundle.engines import WindowTraining


def test_two_processes_train_one_detector(cmb_2mm, tmp_path):
    cohort = cmb_2mm
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
           "-m", "monai.bundle", "run", "training", "--config_file",
           str([str(REPO / "configs" / "train.yaml"), str(REPO / "configs" / "multi_gpu_train.yaml")]),
           "--datalist", str(cohort), "--output_dir", str(out), "--stage1_iterations", "2",
           "--stage2_iterations", "2", "--progress", "false", "--tile_size", "[48, 48, 32]", *GRID_2MM]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert "(process 0 of 2)" in log and "(process 1 of 2)" in log
    # 2 folds x 2 U-Nets + 4 final networks, each checked to be identical across the processes after training
    assert log.count("weights identical in all 2 processes") >= 8
    assert sorted(p.name for p in (out / "mimics").glob("*_mimics.csv")) == [f"sub-000{i}_mimics.csv" for i in range(3)]
    parser = ConfigParser()
    parser.read_config(str(REPO / "configs" / "inference.yaml"))
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(out / "models" / "cmb_detector.pt", weights_only=True), strict=True)


def test_distributed_member_needs_torch_distributed():
    with pytest.raises(RuntimeError, match="unet: distributed training needs torch.distributed initialised"):
        WindowTraining("unet", None, None, None, None, 2, 1, "unused", distributed="true")
