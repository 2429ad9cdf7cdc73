# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Stage-2 mimic classifier: shapes, learning a toy task, clear errors."""

from __future__ import annotations

import pytest
import torch

from bundle.methods.twostage import MimicCNN


def test_shapes_and_parameter_count():
    net = MimicCNN()
    out = net(torch.zeros(3, 1, 20, 20, 16))
    assert out.shape == (3, 2)
    # 7x7x5 valid -> 14x14x12, pool -> 7x7x6, 5x5x3 -> 3x3x4, 3x3x1 -> 1x1x4: 64 * 4 flattened features
    assert net.classifier[0].in_features == 256
    assert MimicCNN(patch_size=(24, 24, 20)).classifier[0].in_features == 64 * 3 * 3 * 6


def test_learns_dark_dot_versus_tube():
    """A few steps separate a dark ball (microbleed-like) from a dark tube (vein-like) at the crop centre."""
    torch.manual_seed(0)
    g = torch.stack(torch.meshgrid(*[torch.arange(s) - c for s, c in zip((20, 20, 16), (10, 10, 8))], indexing="ij"))
    ball = ((g**2).sum(0) <= 4).float()
    tube = ((g[0] ** 2 + g[1] ** 2) <= 2).float()
    x = torch.stack([1 - 0.8 * ball] * 8 + [1 - 0.8 * tube] * 8)[:, None] + 0.05 * torch.randn(16, 1, 20, 20, 16)
    y = torch.tensor([1] * 8 + [0] * 8)
    net = MimicCNN(features=(8, 8, 8), hidden=16, dropout=0.0)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    with torch.no_grad():  # let batch-norm running statistics settle before switching to eval mode
        for _ in range(30):
            net(x)
    net.eval()
    assert (net(x).argmax(1) == y).float().mean() == 1.0 and loss.item() < 0.1


def test_errors():
    with pytest.raises(ValueError, match=r"expected crops of \[20, 20, 16\], got \[16, 16, 16\]"):
        MimicCNN()(torch.zeros(1, 1, 16, 16, 16))
    with pytest.raises(ValueError, match="3D only"):
        MimicCNN(spatial_dims=2)
