# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The whole two-stage microbleed detector (Rau et al.) as one module: U-Net ensemble -> candidates -> CNN ensemble.

One state dict holds every network (``stage1.<n>.*`` U-Nets, ``stage2.<n>.*`` mimic CNNs), so the inference
config loads the detector like any MONAI network. See ``docs/twostage.md`` for the choices where the paper is vague.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from ...inference.detections import TABLE_COLUMNS
from ...transforms.sampling import crop_padded
from ...utils import pad_rows
from .candidates import candidates_from_map
from .networks import STAGE2_VIEWS, CMBNetworks, stage2_view, stride_overlap

__all__ = ["TABLE_COLUMNS", "TwoStageCMBDetector"]


class TwoStageCMBDetector(CMBNetworks):
    """Preprocessed SWI volume (and brain mask) -> scored microbleed candidates.

    Stage 1: each U-Net of ``stage1`` gives a microbleed probability map (softmax channel ``fg_channel``); the
    ensemble map is their mean (the paper "normalises and adds" the maps; a mean of probabilities keeps the map
    in [0, 1] so one threshold means the same for any number of networks). The U-Nets are fully convolutional,
    so ``stage1_mode="tiles"`` runs them on large tiles (``tile_size``, Gaussian blending over ``tile_overlap``)
    instead of the paper's 20 x 20 x 16 windows at stride 3 (``stage1_mode="windows"``, kept for the equivalence
    test and the speed benchmark). Only the brain mask's bounding box (plus half a window) is computed; the map
    is zero outside the mask.

    Candidates: one per connected component of ``map >= threshold``, at its peak voxel refined to sub-voxel by the
    probability-weighted centre of the peak's 5 x 5 x 5 neighbourhood (columns i, j, k); stage 2 crops around the
    peak voxel.

    Stage 2: each CNN of ``stage2`` scores a ``window_size`` crop centred on each candidate; the candidate's
    ``score`` is the CNNs' mean microbleed probability (the stage-1 peak when ``stage2`` is empty). With a
    cascade (``cascade_size`` n, 0 < n < number of CNNs), the first n CNNs score every candidate and the others
    only those whose mean score by the first n reaches ``cascade_threshold``; those get the mean of all CNNs, the
    rest keep the first n's mean. Most candidates are clear negatives (about 12 % of the main job's reach 0.05), so
    a larger ensemble costs little more than its first members. With ``views`` n > 1, those candidates (every
    candidate without a cascade whose first CNNs' score reaches ``cascade_threshold``) are scored as the mean over
    all CNNs and the first n of :data:`STAGE2_VIEWS` of the window (test-time flips and quarter turns).

    Args:
        stage1: U-Nets (B, C, ...) -> (B, 2, ...) logits, batch normalisation, sizes multiple of their strides.
        stage2: classifiers (B, C, *window_size) -> (B, 2) logits (e.g. :class:`bundle.methods.twostage.MimicCNN`).
        window_size: the paper's window (voxels); stage-2 crops and stage-1 windows.
        threshold: candidate threshold on the ensemble map (0.2 in the paper).
        stage1_mode: ``tiles`` or ``windows``.
        tile_size: tile of the tiled stage 1 (multiples of the U-Net's total stride).
        tile_overlap: overlap fraction of neighbouring tiles.
        window_stride: stride of ``windows`` mode (3 in the paper).
        connectivity: connectivity of the candidate components.
        stage2_batch: crops per stage-2 forward pass.
        cascade_size: CNNs that score every candidate (0 or at least the number of CNNs: all; see Stage 2).
        cascade_threshold: mean score of the first ``cascade_size`` CNNs from which the others score a candidate.
        views: windows of :data:`STAGE2_VIEWS` averaged on those candidates (1: the window as it is; 4, 8 or 16;
            16 needs a square (i, j) window). A flip moves the candidate's voxel by one in an even-sized window,
            as the training's flips do.
        fg_channel: softmax channel of the microbleed class.
        return_map: ``forward`` returns ``{"table": table, "prob": stage-1 map (B, 1, H, W, D)}`` instead of the
            table alone (the main job writes the map and an instance map of the detections).

    ``forward(image, mask=None)``: ``image`` (B, C, H, W, D), ``mask`` (B, 1, H, W, D) or None; returns a float
    tensor (B, N, 6) with the columns :data:`TABLE_COLUMNS` (voxel i, j, k of the input grid), N the largest
    candidate count of the batch; shorter tables are padded with NaN rows (a tensor, so MONAI engines can
    decollate it).
    """

    def __init__(
        self,
        stage1: Sequence[nn.Module],
        stage2: Sequence[nn.Module] = (),
        window_size: Sequence[int] = (20, 20, 16),
        threshold: float = 0.2,
        stage1_mode: str = "tiles",
        tile_size: Sequence[int] = (128, 128, 64),
        tile_overlap: float = 0.25,
        window_stride: int = 3,
        connectivity: int = 26,
        stage2_batch: int = 256,
        cascade_size: int = 0,
        cascade_threshold: float = 0.0,
        views: int = 1,
        fg_channel: int = 1,
        return_map: bool = False,
    ) -> None:
        super().__init__(stage1, stage2)
        if stage1_mode not in ("tiles", "windows"):
            raise ValueError(f"stage1_mode must be 'tiles' or 'windows', got {stage1_mode!r}")
        self.window_size = tuple(int(w) for w in window_size)
        self.threshold = float(threshold)
        self.stage1_mode = stage1_mode
        self.tile_size = tuple(int(t) for t in tile_size)
        self.tile_overlap = float(tile_overlap)
        self.window_stride = int(window_stride)
        self.connectivity = int(connectivity)
        self.stage2_batch = int(stage2_batch)
        if int(cascade_size) < 0:
            raise ValueError(f"cascade_size must be >= 0, got {cascade_size}")
        self.cascade_size = int(cascade_size)
        self.cascade_threshold = float(cascade_threshold)
        if int(views) not in (1, 4, 8, 16):
            raise ValueError(f"views must be 1, 4, 8 or 16, got {views}")
        if int(views) > 8 and self.window_size[0] != self.window_size[1]:
            raise ValueError(f"views {views} turn the window in (i, j), which needs a square window, got "
                             f"{self.window_size}")
        self.views = int(views)
        self.fg_channel = int(fg_channel)
        self.return_map = bool(return_map)

    # -- stage 1 ----------------------------------------------------------------------------------------------
    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        return CMBNetworks.forward(self, x)[:, self.fg_channel : self.fg_channel + 1]

    @torch.no_grad()
    def stage1_map(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Ensemble probability map (H, W, D) of one volume ``image`` (C, H, W, D), ``mask`` (1, H, W, D) or None."""
        shape = image.shape[1:]
        lo, hi = [0, 0, 0], list(shape)
        m = mask[0] > 0 if mask is not None else None
        if m is not None:
            if not bool(m.any()):
                return torch.zeros(shape, device=image.device)
            half = [w // 2 for w in self.window_size]
            for ax in range(3):
                nz = torch.nonzero(m.any(dim=tuple(a for a in range(3) if a != ax)))[:, 0]
                lo[ax] = max(int(nz[0]) - half[ax], 0)
                hi[ax] = min(int(nz[-1]) + 1 + half[ax], shape[ax])
        x = image[None, :, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        if self.stage1_mode == "tiles":
            roi, overlap, blend, batch = self.tile_size, self.tile_overlap, "gaussian", 1
        else:
            roi, blend, batch = self.window_size, "constant", 128
            overlap = stride_overlap(self.window_size, self.window_stride)
        crop = sliding_window_inference(x, roi, batch, self._predict, overlap=overlap, mode=blend)[0, 0]
        out = torch.zeros(shape, device=image.device, dtype=crop.dtype)
        out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = crop
        return out * m if m is not None else out

    # -- stage 2 ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def stage2_scores(self, image: torch.Tensor, centres: np.ndarray) -> torch.Tensor:
        """Mean microbleed probability of the stage-2 CNNs on crops of ``image`` (C, H, W, D) centred on ``centres``."""
        if not len(self.stage2) or not len(centres):
            return torch.zeros(0, device=image.device)
        vol = image.detach().cpu().numpy()
        half = np.asarray(self.window_size) // 2
        n_all = len(self.stage2)
        n_first = self.cascade_size if 0 < self.cascade_size < n_all else n_all
        scores = []
        for s in range(0, len(centres), self.stage2_batch):
            crops = np.stack([crop_padded(vol, c - half, self.window_size) for c in centres[s : s + self.stage2_batch]])
            x = torch.as_tensor(crops, device=image.device, dtype=image.dtype)
            p = self._mean_fg(self.stage2[:n_first], x)
            hard = p >= self.cascade_threshold
            if (n_first < n_all or self.views > 1) and bool(hard.any()):
                xh, total = x[hard], p[hard] * n_first
                if n_first < n_all:
                    total = total + self._mean_fg(self.stage2[n_first:], xh) * (n_all - n_first)
                for view in STAGE2_VIEWS[1 : self.views]:
                    total = total + self._mean_fg(self.stage2, stage2_view(xh, view)) * n_all
                p[hard] = total / (n_all * self.views)
            scores.append(p)
        return torch.cat(scores)

    def _mean_fg(self, nets: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        """Mean microbleed probability of ``nets`` on crops ``x``."""
        return torch.stack([torch.softmax(net(x).float(), dim=1)[:, self.fg_channel] for net in nets]).mean(0)

    @torch.no_grad()
    def detect(
        self, image: torch.Tensor, mask: torch.Tensor | None = None, prob: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Candidates of one volume (C, H, W, D) as an (N, 6) tensor with :data:`TABLE_COLUMNS`.

        ``prob``: the stage-1 map of this volume when already computed (see :meth:`stage1_map`).
        """
        prob = self.stage1_map(image, mask) if prob is None else prob
        cands = candidates_from_map(prob.cpu().numpy(), self.threshold, self.connectivity)
        centres = np.asarray(cands.centres, int).reshape(-1, 3)
        stage1 = torch.as_tensor(cands.scores, dtype=torch.float32, device=image.device)
        score = self.stage2_scores(image, centres) if len(self.stage2) else stage1
        table = [
            torch.as_tensor(self._centroids(prob, cands, centres), dtype=torch.float32, device=image.device),
            score.float().reshape(-1, 1),
            stage1.reshape(-1, 1),
            torch.as_tensor(cands.sizes, dtype=torch.float32, device=image.device).reshape(-1, 1),
        ]
        return torch.cat(table, 1)

    @staticmethod
    def _centroids(prob: torch.Tensor, cands, peaks: np.ndarray) -> np.ndarray:
        """Sub-voxel position of each candidate: the probability-weighted centre of its peak's 5 x 5 x 5
        neighbourhood within its component, so a detection's position does not depend on where the voxel lattice
        falls and stays on the peak's blob when two objects share a component; stage 2 crops around the peaks.
        5 voxels, not 3: a large bloomed microbleed's peak moves with the acquisition grid, its centre much less."""
        p = prob.detach().cpu().numpy()
        out = np.asarray(peaks, np.float32).reshape(-1, 3).copy()
        for n, c in enumerate(out.astype(int)):
            lo, hi = np.maximum(c - 2, 0), np.minimum(c + 3, p.shape)
            box = tuple(slice(a, b) for a, b in zip(lo, hi))
            w = p[box] * (cands.instance[box] == n + 1)
            if w.sum() > 0:
                out[n] = (np.stack(np.indices(w.shape), -1).reshape(-1, 3) * w.reshape(-1, 1)).sum(0) / w.sum() + lo
        return out

    @torch.no_grad()
    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        image = image.as_tensor() if hasattr(image, "as_tensor") else image  # plain tensors: no metadata tracking
        mask = mask.as_tensor() if hasattr(mask, "as_tensor") else mask
        if image.ndim != 5:
            raise ValueError(f"expected image (B, C, H, W, D), got shape {tuple(image.shape)}")
        if mask is not None and mask.shape[2:] != image.shape[2:]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match image shape {tuple(image.shape)}")
        probs = [self.stage1_map(image[b], None if mask is None else mask[b]) for b in range(image.shape[0])]
        tables = [self.detect(image[b], prob=probs[b]) for b in range(image.shape[0])]
        out = pad_rows(tables, like=torch.zeros(0, device=image.device))
        if self.return_map:
            return {"table": out, "prob": torch.stack(probs)[:, None]}
        return out
