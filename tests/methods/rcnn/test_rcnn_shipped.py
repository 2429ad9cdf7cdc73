# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The shipped EPVS and lacune weights: they load strictly, with weights_only=True, into the network the shipped
configs define; every shipped weight file together stays within 50 MB."""

from __future__ import annotations

import torch
from conftest import REPO
from monai.bundle import ConfigParser

SHIPPED = ["configs/common.yaml", "configs/rcnn/train.yaml", "configs/rcnn/shipped.yaml", "configs/rcnn/inference.yaml"]


def test_shipped_rcnn_weights_load_into_the_shipped_config():
    parser = ConfigParser()
    parser.read_config([str(REPO / c) for c in SHIPPED])
    parser.update({"bundle_root": str(REPO)})
    assert parser.get_parsed_content("checkpoint") == str(REPO / "models" / "rcnn_detector.pt")
    net = parser.get_parsed_content("network_def")
    state = torch.load(REPO / "models" / "rcnn_detector.pt", weights_only=True, map_location="cpu")
    net.load_state_dict(state, strict=True)
    assert net.patch_size == (64, 64, 64) and net.patch_margin == 8  # inference on large patches (docs/rcnn.md)
    first = next(v for k, v in state.items() if k.startswith("backbone") and v.dim() == 5)  # the first convolution
    assert first.shape[1] == 6  # T1, T2, FLAIR and their availability flags


def test_all_shipped_weights_fit_in_50_mb():
    sizes = {p.name: p.stat().st_size for p in (REPO / "models").glob("*.pt")}
    shipped = {"model.pt", "rcnn_detector.pt", "structural_unet.pt", "structural_rater_heads.pt", "brain_regions.pt",
               "gpunet_counts.pt"}
    assert shipped <= set(sizes)
    assert sum(sizes.values()) <= 50e6, sizes
