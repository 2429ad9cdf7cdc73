# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""GP-Unet (Dubost et al., MICCAI 2017): a shallow 3D U-Net whose last feature maps are globally pooled and
mapped by one 1^3 convolution to a scalar, the lesion count, for training from counts alone; the same weights
without the pooling give a heatmap of the input's size (``docs/gpunet.md``).

Training output: y = w . G(f) + b, with f the last feature maps (after ReLU), G global max, average or sum pooling,
w and b the 1^3 convolution's weights and bias. Test output: M = w . f (the bias is omitted, as in the paper), so
with average pooling ``M.mean() + b == y`` and with sum pooling ``M.sum() + b == y`` exactly: the heatmap is a
density whose integral is the count. Without the decoder (the paper's baseline (d), class-map style) f
is the bottom of the encoder and M is upsampled (trilinear) to the input's size.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, UpSample
from torch import nn

__all__ = ["GPUNet"]

OUTPUTS = ("count", "heatmap", "both")
POOLINGS = ("sum", "avg", "max")


def _double_conv(cin: int, cout: int, norm, bias: bool) -> nn.Sequential:
    return nn.Sequential(
        Convolution(3, cin, cout, kernel_size=3, act="RELU", norm=norm, bias=bias),
        Convolution(3, cout, cout, kernel_size=3, act="RELU", norm=norm, bias=bias),
    )


class GPUNet(nn.Module):
    """Shallow 3D U-Net with global pooling (GP-Unet).

    Args:
        in_channels: input modalities.
        features: channels of each level, top to bottom; ``len(features) - 1`` 2^3 max poolings (the input's
            spatial size must be divisible by ``2 ** (len(features) - 1)``).
        decoder: the upsampling path with skip connections (``False``: the baseline regression network (d)).
        pooling: ``sum``, ``avg`` or ``max`` global pooling during training. ``sum`` is ``avg`` times the number of
            voxels: the same model, but the count's scale no longer has to be built up by the weights (a lesion
            covers ~1e-4 of a ROI crop), which an optimiser with bounded steps such as Adadelta does slowly.
        output: ``count`` (B, 1), ``heatmap`` (B, 1, H, W, D), or ``both``: ``{"count", "heatmap"}``.
        norm: MONAI norm of each convolution; ``None`` as in the paper.
        conv_bias: biases in the 3^3 convolutions. Without them (the default) a zero input gives zero features,
            so the region outside the ROI and the padding add nothing to the pooled sum; with them a constant
            background response over ~2e5 voxels swamps the ~20 voxels of each lesion (measured: the summed
            features of six scans with 1 to 25 EPVS differed by 0.4 %). The 1^3 head keeps its bias.

    3^3 convolutions with padding, a ReLU after each but the last (the 1^3 convolution), 2^3 max pooling and
    2^3 nearest-neighbour upsampling, skip connections by concatenation.
    """

    def __init__(
        self,
        in_channels: int = 1,
        features: Sequence[int] = (32, 64, 128),
        decoder: bool = True,
        pooling: str = "max",
        output: str = "count",
        norm=None,
        conv_bias: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        features = [int(f) for f in features]
        if len(features) < 1:
            raise ValueError("features needs at least one level")
        self.pooling, self.output, self.decoder = pooling, output, bool(decoder)
        self.factor = 2 ** (len(features) - 1)
        self.down = nn.ModuleList()
        for n, f in enumerate(features):
            self.down.append(_double_conv(in_channels if n == 0 else features[n - 1], f, norm, conv_bias))
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        if self.decoder:
            for n in range(len(features) - 1, 0, -1):
                self.up.append(
                    UpSample(3, scale_factor=2, mode="nontrainable", interp_mode="nearest", align_corners=None)
                )
                self.up_conv.append(_double_conv(features[n] + features[n - 1], features[n - 1], norm, conv_bias))
        last = features[0] if self.decoder else features[-1]
        self.head = nn.Conv3d(last, 1, kernel_size=1)
        if self.pooling == "sum":  # start from count = bias: a random head on summed features gives counts of ~1e4
            nn.init.zeros_(self.head.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature maps f (B, F, ...) before the global pooling (input size, or 1/factor without the
        decoder)."""
        if any(s % self.factor for s in x.shape[2:]):
            raise ValueError(
                f"GPUNet input size {tuple(x.shape[2:])} must be divisible by {self.factor} (2 per pooling)"
            )
        skips = []
        for n, block in enumerate(self.down):
            x = block(x if n == 0 else F.max_pool3d(x, 2))
            skips.append(x)
        if not self.decoder:
            return x
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips[:-1])):
            x = conv(torch.cat([up(x), skip], 1))
        return x

    def count_from(self, f: torch.Tensor) -> torch.Tensor:
        """y = w . G(f) + b, (B, 1)."""
        dims = (2, 3, 4)
        if self.pooling == "max":
            g = f.amax(dim=dims, keepdim=True)
        else:
            g = f.sum(dim=dims, keepdim=True) if self.pooling == "sum" else f.mean(dim=dims, keepdim=True)
        return self.head(g).flatten(1)

    def heatmap_from(self, f: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """M = w . f without the bias, (B, 1, *size) (trilinear upsampling without the decoder)."""
        m = F.conv3d(f, self.head.weight)
        if tuple(m.shape[2:]) != tuple(size):
            m = F.interpolate(m, size=tuple(size), mode="trilinear", align_corners=False)
        return m

    def forward(self, x: torch.Tensor):
        f = self.features(x)
        if self.output == "count":
            return self.count_from(f)
        heat = self.heatmap_from(f, x.shape[2:])
        if self.output == "heatmap":
            return heat
        return {"count": self.count_from(f), "heatmap": heat}
