# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Networks of the two-stage microbleed detector: the ensemble container :class:`CMBNetworks` and the stage-2
classifier :class:`MimicCNN` (microbleed vs mimic on a 20 x 20 x 16 crop).

MimicCNN:

After Dou et al. (IEEE TMI 2016) as used by Rau et al.: three valid convolutions (7x7x5, 5x5x3, 3x3x1) with a max
pooling after the first, batch normalisation after each convolution (Rau et al.'s addition), two fully connected
layers. The flattened size is computed from ``patch_size`` so other crop sizes work too.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["STAGE2_VIEWS", "CMBNetworks", "MimicCNN", "stage2_view", "stride_overlap"]


# Views of a stage-2 window (quarter turns in the (i, j) plane, then a flip of i, then a flip of k), ordered so
# that the first 4 are the window and its flip along each axis, the first 8 every combination of the flips, and all
# 16 the symmetries of the (20, 20, 16) window that the CNNs were trained with (flips and quarter turns).
STAGE2_VIEWS = ((0, 0, 0), (0, 0, 1), (0, 1, 0), (2, 1, 0), (0, 1, 1), (2, 1, 1), (2, 0, 0), (2, 0, 1),
                (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1), (3, 0, 0), (3, 0, 1), (3, 1, 0), (3, 1, 1))  # fmt: skip


def stage2_view(x: torch.Tensor, view: Sequence[int]) -> torch.Tensor:
    """Windows ``x`` (B, C, I, J, K) in one of :data:`STAGE2_VIEWS`: ``view[0]`` quarter turns in (i, j), then a
    flip of i if ``view[1]``, then a flip of k if ``view[2]``."""
    x = torch.rot90(x, int(view[0]), dims=(2, 3)) if view[0] else x
    x = torch.flip(x, dims=(2,)) if view[1] else x
    return torch.flip(x, dims=(4,)) if view[2] else x


def stride_overlap(window: Sequence[int], stride: int) -> tuple[float, ...]:
    """MONAI ``overlap`` fractions that make a sliding window of size ``window`` advance ``stride`` voxels."""
    return tuple(1.0 - (stride + 1e-6) / w for w in window)  # MONAI truncates roi * (1 - overlap) to an int


class CMBNetworks(nn.Module):
    """The detector's networks alone: TorchScript-able, with the same state-dict keys as the whole detector.

    ``forward(x)``: (B, C, H, W, D), sizes multiples of the U-Nets' total stride (4) -> (B, 2, H, W, D) float32,
    the stage-1 ensemble's mean softmax (channel 0 background, 1 microbleed). ``classify(windows)``: (B, C,
    *window) crops -> (B, 2), the stage-2 ensemble's mean softmax (zeros when there is no stage 2). This is what
    ``python -m monai.bundle ckpt_export --net_id export_network_def`` exports from ``models/model.pt`` (loaded
    strictly) and what ``verify_net_in_out`` checks against ``network_data_format``; the candidate logic of
    :class:`TwoStageCMBDetector` (components, crops) runs on CPU outside the networks and is not exported.
    """

    def __init__(self, stage1: Sequence[nn.Module], stage2: Sequence[nn.Module] = ()) -> None:
        super().__init__()
        if not len(stage1):
            raise ValueError("the detector needs at least one stage-1 network")
        self.stage1 = nn.ModuleList(stage1)
        self.stage2 = nn.ModuleList(stage2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs: list[torch.Tensor] = []
        for net in self.stage1:
            probs.append(torch.softmax(net(x).float(), dim=1))
        return torch.stack(probs).mean(0)

    @torch.jit.export
    def classify(self, windows: torch.Tensor) -> torch.Tensor:
        probs: list[torch.Tensor] = []
        for net in self.stage2:
            probs.append(torch.softmax(net(windows).float(), dim=1))
        if len(probs) == 0:
            return torch.zeros(windows.shape[0], 2, device=windows.device)
        return torch.stack(probs).mean(0)


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
