# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Stage-2 classifier of the two-stage microbleed detector: microbleed vs mimic on a 20 x 20 x 16 crop.

After Dou et al. (IEEE TMI 2016) as used by Rau et al.: three valid convolutions (7x7x5, 5x5x3, 3x3x1) with a max
pooling after the first, batch normalisation after each convolution (Rau et al.'s addition), two fully connected
layers. The flattened size is computed from ``patch_size`` so other crop sizes work too.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["MimicCNN"]


class MimicCNN(nn.Module):
    """3D CNN scoring whether the centre of a crop is a microbleed.

    Args:
        spatial_dims: must be 3.
        in_channels: input channels (1 for SWI).
        out_channels: classes (2: mimic/background, microbleed).
        patch_size: crop size (voxels) the network is built for.
        features: channels of the three convolutions.
        hidden: units of the first fully connected layer.
        dropout: dropout before the last layer.

    Shapes: input (B, in_channels, *patch_size) -> logits (B, out_channels).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        patch_size: Sequence[int] = (20, 20, 16),
        features: Sequence[int] = (64, 64, 64),
        hidden: int = 150,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError(f"MimicCNN is 3D only, got spatial_dims={spatial_dims}")

        def block(cin: int, cout: int, kernel: tuple[int, int, int]) -> nn.Sequential:
            return nn.Sequential(nn.Conv3d(cin, cout, kernel), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))

        self.features = nn.Sequential(
            block(in_channels, features[0], (7, 7, 5)),
            nn.MaxPool3d(2),
            block(features[0], features[1], (5, 5, 3)),
            block(features[1], features[2], (3, 3, 1)),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(2, in_channels, *patch_size)).flatten(1).shape[1]
        self.classifier = nn.Sequential(
            nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, out_channels)
        )
        self.patch_size = tuple(int(p) for p in patch_size)
        self._patch: list[int] = list(self.patch_size)  # a list: TorchScript compares lists, not tuples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if list(x.shape[2:]) != self._patch:
            raise ValueError(f"expected crops of {self._patch}, got {list(x.shape[2:])}")
        return self.classifier(self.features(x).flatten(1))
