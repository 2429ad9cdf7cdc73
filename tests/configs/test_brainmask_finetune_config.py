# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The brain-mask network's fine-tuning overlay (configs/brainmask/finetune.yaml) from the real configs: it starts
from the shipped weights, a resumed run does not, and it rotates heads further than the first stage."""

from __future__ import annotations

import torch
from conftest import REPO
from ignite.engine import Engine
from monai.bundle import ConfigParser

FILES = ["configs/common.yaml", "configs/regions/train.yaml", "configs/brainmask/train.yaml"]


def parser(tmp_path, finetune: bool = True) -> ConfigParser:
    p = ConfigParser()
    p.read_config([str(REPO / f) for f in FILES + ["configs/brainmask/finetune.yaml"] * finetune])
    p.update({"bundle_root": str(REPO), "output_dir": str(tmp_path / "out"), "device": "$torch.device('cpu')"})
    return p


def test_finetuning_starts_from_the_shipped_brain_mask_weights(tmp_path):
    p = parser(tmp_path)
    network, loader = p.get_parsed_content("network"), p.get_parsed_content("init_loader")
    assert loader is not None and "init_loader" in str(p["run"])
    loader(Engine(lambda engine, batch: None))
    shipped = torch.load(REPO / "models" / "brain_mask.pt", weights_only=True)
    assert shipped.keys() == network.state_dict().keys()
    assert all(torch.equal(v, shipped[k]) for k, v in network.state_dict().items())
    assert p["train"]["augmentation"][1]["rotate_range"] == [0.52] * 3
    assert parser(tmp_path, finetune=False)["train"]["augmentation"][1]["rotate_range"] == [0.26] * 3


def test_a_resumed_finetuning_run_does_not_restart_from_the_shipped_weights(tmp_path):
    folder = tmp_path / "out" / "checkpoints" / "brain_mask"
    folder.mkdir(parents=True)
    (folder / "last_checkpoint_epoch=3.pt").write_bytes(b"")
    p = parser(tmp_path)
    assert p.get_parsed_content("init_loader") is None
    assert p.get_parsed_content("resume_checkpoint").endswith("last_checkpoint_epoch=3.pt")
    assert parser(tmp_path / "fresh", finetune=False).get_parsed_content("init_loader") is None  # first stage: none
