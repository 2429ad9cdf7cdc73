# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""What the model-zoo checks of the network: `verify_net_in_out` against `network_data_format`, and
`ckpt_export` to TorchScript from the shipped weights, reloaded and compared with the eager detector."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch
from bundle_cli import bundle_run
from conftest import REPO
from monai.bundle import ConfigParser

from bundle.methods.twostage import CMBNetworks

CONFIG, META = str(REPO / "configs" / "inference.yaml"), str(REPO / "configs" / "metadata.json")


def _monai_bundle(*args) -> str:
    res = bundle_run([sys.executable, "-m", "monai.bundle", *args], REPO, {**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout + res.stderr


def _detector():
    parser = ConfigParser()
    parser.read_config(CONFIG)
    det = parser.get_parsed_content("network_def")
    det.load_state_dict(torch.load(REPO / "models" / "model.pt", weights_only=True))
    return det.eval()


def test_verify_net_in_out_passes_for_the_exported_networks():
    log = _monai_bundle("verify_net_in_out", "--net_id", "export_network_def", "--meta_file", META,
                        "--config_file", CONFIG, "--n", "8", "--device", "cpu")  # fmt: skip
    assert "data shape of network is verified with no error" in log
    meta = json.loads((REPO / "configs" / "metadata.json").read_text())["network_data_format"]
    assert meta["outputs"]["pred"]["num_channels"] == 2 and meta["outputs"]["pred"]["channel_def"]["1"] == "cmb"


@pytest.mark.filterwarnings("ignore:parsing config_file")  # MONAI's notice that configs run code: ours, trusted
def test_ckpt_export_gives_torchscript_equal_to_the_eager_detector(tmp_path):
    path = tmp_path / "model.ts"
    _monai_bundle("ckpt_export", "--net_id", "export_network_def", "--filepath", str(path), "--ckpt_file",
                  str(REPO / "models" / "model.pt"), "--meta_file", META, "--config_file", CONFIG)  # fmt: skip
    extra = {"metadata.json": "", "inference.json": ""}
    scripted = torch.jit.load(str(path), _extra_files=extra)
    assert (
        json.loads(extra["metadata.json"])["version"]
        == json.loads((REPO / "configs/metadata.json").read_text())["version"]
    )
    assert "export_network_def" in json.loads(extra["inference.json"])

    det = _detector()
    torch.manual_seed(0)
    x = torch.rand(1, 1, 32, 28, 24) * 2
    with torch.no_grad():
        maps = scripted(x)
        assert maps.shape == (1, 2, 32, 28, 24) and maps.dtype == torch.float32
        torch.testing.assert_close(maps.sum(1), torch.ones(1, 32, 28, 24))  # softmax probabilities
        # the detector's own stage-1 ensemble (its microbleed channel) and stage-2 scores, eager
        torch.testing.assert_close(maps[:, 1:2], det._predict(x), atol=1e-5, rtol=1e-5)
        windows = torch.rand(5, 1, *det.window_size)
        torch.testing.assert_close(scripted.classify(windows)[:, 1], det.classify(windows)[:, 1], atol=1e-5, rtol=0)
        assert not torch.allclose(scripted.classify(windows)[:, 1], torch.full((5,), 0.5))  # real weights, not init
    # loaded strictly: every key of the shipped state dict, nothing else
    eager = CMBNetworks(list(det.stage1), list(det.stage2))
    assert set(scripted.state_dict()) == set(eager.state_dict()) == set(det.state_dict())
    for k, v in torch.load(REPO / "models" / "model.pt", weights_only=True).items():
        torch.testing.assert_close(scripted.state_dict()[k], v)
