# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Building blocks of the multirater RCNN: backbone layer plan, output columns, cube boxes (NMS, crops) and the two
heads."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from monai.data.box_utils import non_max_suppression
from torch import nn

from ....data.vocabulary import answer_columns, rater_columns


def highresnet_layers(features: Sequence[int] = (16, 16, 32, 64, 80), repeat: int = 3) -> tuple[dict, ...]:
    """MONAI ``HighResNet`` layer parameters: a first convolution, three levels of ``repeat`` residual blocks of
    dilated 3^3 convolutions (dilation 1, 2, 4), a 1^3 convolution, and the output layer.

    Args:
        features: channels of the first convolution, the three levels and the 1^3 convolution (MONAI's default,
            the paper's network: 16, 16, 32, 64, 80).
        repeat: residual blocks per level (3 in MONAI and the paper).
    """
    if len(features) != 5 or repeat < 1:
        raise ValueError(f"features needs 5 channel counts and repeat >= 1, got {features}, {repeat}")
    f = [int(c) for c in features]
    return (
        {"name": "conv_0", "n_features": f[0], "kernel_size": 3},
        *({"name": f"res_{n + 1}", "n_features": f[n + 1], "kernels": (3, 3), "repeat": int(repeat)} for n in range(3)),
        {"name": "conv_1", "n_features": f[4], "kernel_size": 1},
        {"name": "conv_2", "kernel_size": 1},
    )


def rcnn_columns(n_raters: int) -> tuple[str, ...]:
    """Columns of the detector's table: voxel centre, score (1 - p_nothing), the four class probabilities, box
    side (voxels), proposal score, then each rater head's answer (index into :data:`bundle.data.vocabulary.ANSWERS`)
    and each head's four answer probabilities (:func:`bundle.data.vocabulary.rater_columns`)."""
    return ("i", "j", "k", "score", *answer_columns(), "scale", "rpn_score", *rater_columns(n_raters))


def cube_nms(centres_mm: torch.Tensor, sides_mm: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """Indices of the detections kept by MONAI's ``non_max_suppression`` (best score first) on the axis-aligned
    boxes of side ``sides_mm`` ((N,) or (N, 3)) around ``centres_mm`` (N, 3): a box whose intersection over union
    with a kept one exceeds ``iou`` is dropped; ``iou`` >= 1 keeps all."""
    n = len(scores)
    if n < 2 or iou >= 1.0:
        return torch.arange(n, device=scores.device)
    centres = torch.as_tensor(centres_mm, dtype=torch.float32)
    half = torch.as_tensor(sides_mm, dtype=torch.float32, device=centres.device)
    half = (half[:, None] if half.ndim == 1 else half) / 2
    keep = non_max_suppression(torch.cat([centres - half, centres + half], 1), scores.float(), float(iou))
    return torch.as_tensor(keep, dtype=torch.long, device=scores.device)


def crop_boxes(
    features: torch.Tensor, centres: torch.Tensor, halves: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features inside each box, as they are: no resizing, no pooling, no interpolation.

    Box ``p`` holds the voxels within ``halves[p]`` of ``centres[p]`` along every axis (a cube of side
    ``2 * halves[p] + 1``). All boxes are returned in windows of the largest box's side, zero outside their own
    box and outside the volume, with the box mask.

    Args:
        features: (C, H, W, D).
        centres: (P, 3) integer voxel centres.
        halves: (P,) non-negative integer half-sides.

    Returns:
        crops (P, C, w, w, w) and masks (P, 1, w, w, w) with ``w = 2 * max(halves) + 1``.
    """
    centres, halves = centres.long(), halves.long().clamp(min=0)
    n, c = len(centres), features.shape[0]
    h = int(halves.max()) if n else 0
    w = 2 * h + 1
    padded = F.pad(features, (h, h) * 3)
    grid = (torch.arange(w, device=features.device) - h).abs()
    crops = features.new_zeros((n, c, w, w, w))
    masks = features.new_zeros((n, 1, w, w, w))
    shape = torch.as_tensor(features.shape[1:], device=features.device)
    for p in range(n):
        i, j, k = centres[p].clamp(min=torch.zeros_like(shape), max=shape - 1).tolist()
        inside = grid <= halves[p]
        m = inside[:, None, None] & inside[None, :, None] & inside[None, None, :]
        masks[p, 0] = m
        crops[p] = padded[:, i : i + w, j : j + w, k : k + w] * m
    return crops, masks


class RPNHead(nn.Module):
    """Anchor-free proposal head applied at every voxel: one shared 3^3 convolution, then a classification branch
    (2 logits: is this voxel an object's centre of mass) and a regression branch (offset to the nearest centre of
    mass along i, j, k, and the object's scale), both 1^3 convolutions."""

    def __init__(self, in_channels: int, channels: int = 32) -> None:
        super().__init__()
        self.shared = nn.Sequential(nn.Conv3d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True))
        self.cls = nn.Conv3d(channels, 2, 1)
        self.reg = nn.Conv3d(channels, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.shared(x)
        return self.cls(h), self.reg(h)


class RefinementHead(nn.Module):
    """Refinement/classification head on box crops: a convolution of kernel 7, average pooling over the box, a
    fully connected layer, then the class logits (nothing, lacune, epvs, undecided), one extra fully connected
    classifier per rater, and the regression of the residual centre offset (3) and a scale correction factor."""

    def __init__(
        self,
        in_channels: int,
        channels: int = 32,
        hidden: int = 64,
        n_classes: int = 4,
        n_raters: int = 6,
        kernel: int = 7,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, channels, kernel, padding=kernel // 2)
        self.fc = nn.Linear(channels, hidden)
        self.cls = nn.Linear(hidden, n_classes)
        self.raters = nn.ModuleList(nn.Linear(hidden, n_classes) for _ in range(n_raters))
        self.reg = nn.Linear(hidden, 4)

    def forward(self, crops: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = F.relu(self.conv(crops))
        pooled = (y * masks).sum((2, 3, 4)) / masks.sum((2, 3, 4)).clamp(min=1.0)
        h = F.relu(self.fc(pooled))
        raters = torch.stack([head(h) for head in self.raters], 1) if len(self.raters) else h.new_zeros((len(h), 0, 4))
        return self.cls(h), raters, self.reg(h)
