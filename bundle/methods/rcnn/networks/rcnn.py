# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The multirater 3D RCNN (Sudre et al., MIDL 2019) as one module: HighResNet backbone regressing a distance map,
an anchor-free voxel-wise region proposal head, and a refinement head on un-resampled box features with one
extra classifier per rater (``docs/rcnn.md``).

Training mode, ``forward(image, boxes)``: dense outputs of one patch batch (distance map, proposal logits and
regression) and, when the refinement head is being trained, its outputs on proposals (the proposal head's best
voxels plus jittered ground-truth boxes). Evaluation mode, ``forward(image, mask=None)``: the detections table
(B, N, len(columns)) padded with NaN rows, from patches of the training size.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.data.utils import affine_to_spacing
from monai.networks.nets import HighResNet
from torch import nn

from ....utils import as_bool, pad_rows
from .layers import RefinementHead, RPNHead, crop_boxes, cube_nms, rcnn_columns

PARTS = ("backbone", "rpn", "rcn")


class MultiraterRCNN(nn.Module):
    """The whole detector: backbone, proposal head, refinement head (one state dict).

    Args:
        in_channels: input modalities (T1, T2, FLAIR: 3).
        layer_params: MONAI ``HighResNet`` layer parameters (its default is the paper's width; the last entry's
            layer is replaced by a plain 1^3 convolution: MONAI's applies batch norm and ReLU, which cannot
            regress a signed distance).
        rpn_channels: channels of the proposal head's shared convolution.
        rcn_channels, hidden: channels of the refinement head's convolution and its fully connected layer.
        n_raters: rater heads.
        max_scale: largest box side (voxels) a proposal may take.
        box_margin: voxels added around each box before cropping (context for the kernel-7 convolution).
        score_threshold: proposal score (the head's softmax) a voxel needs to become a candidate (0.25).
        max_proposals: most proposals per patch (300).
        nms_mm: detections closer than this (mm) to a better one are dropped.
        box_nms_iou: last, the refined boxes (cubes of side ``scale`` around the centres, in mm) go through MONAI's
            ``non_max_suppression`` at this intersection over union: a box overlapping a better one by more is
            dropped (1.0 keeps all). One object should give one detection; ``docs/rcnn.md`` says how the value
            was chosen.
        patch_size: inference patch (voxels), the training patch size.
        patch_margin: voxels of each inference patch's border whose proposals are left to the next patch.
        train_proposals: proposals per training patch for the refinement head: a random draw from the proposals
            inference would make there (score threshold, ridge, at most ``max_proposals``).
        train_boxes: ground-truth boxes per training patch added to them, jittered.
        train_jitter: largest shift (voxels) of the jittered ground-truth boxes.
        channels_last: run inference on the CPU in channels-last 3D memory layout: about 25 % faster
            convolutions, but rounding differs (about 1e-7 in the maps), which can move a detection whose proposal
            ties with a neighbour's (measured with random weights: ``tests/benchmarks/bench_rcnn_speed.py``). Off
            by default; the weights are back in the default layout after each call.
    """

    def __init__(
        self,
        in_channels: int = 3,
        layer_params: Sequence[dict] | None = None,
        rpn_channels: int = 32,
        rcn_channels: int = 32,
        hidden: int = 64,
        n_raters: int = 6,
        max_scale: float = 15.0,
        box_margin: int = 1,
        score_threshold: float = 0.25,
        max_proposals: int = 300,
        nms_mm: float = 2.0,
        box_nms_iou: float = 1.0,
        patch_size: Sequence[int] = (64, 64, 64),
        patch_margin: int = 8,
        train_proposals: int = 32,
        train_boxes: int = 16,
        train_jitter: float = 1.0,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        kwargs = {"layer_params": tuple(layer_params)} if layer_params is not None else {}
        highres = HighResNet(spatial_dims=3, in_channels=in_channels, out_channels=1, **kwargs)
        self.backbone = nn.Sequential(*list(highres.blocks)[:-1])
        feat = int(highres.blocks[-1].conv.in_channels)
        self.distance_head = nn.Conv3d(feat, 1, 1)
        self.rpn = RPNHead(feat, rpn_channels)
        self.rcn = RefinementHead(feat, rcn_channels, hidden, 4, n_raters)
        self.n_raters, self.max_scale, self.box_margin = int(n_raters), float(max_scale), int(box_margin)
        self.score_threshold, self.max_proposals, self.nms_mm = (
            float(score_threshold),
            int(max_proposals),
            float(nms_mm),
        )
        if not 0.0 <= box_nms_iou <= 1.0:
            raise ValueError(f"box_nms_iou must lie in [0, 1], got {box_nms_iou}")
        self.box_nms_iou = float(box_nms_iou)
        self.patch_size = tuple(int(s) for s in patch_size)
        self.patch_margin = int(patch_margin)
        if any(s <= 2 * self.patch_margin for s in self.patch_size):
            raise ValueError(f"patch_size {self.patch_size} must exceed twice patch_margin {self.patch_margin}")
        self.train_proposals, self.train_boxes = int(train_proposals), int(train_boxes)
        self.train_jitter = float(train_jitter)
        self.channels_last = as_bool(channels_last, "channels_last")  # "false" on the command line is a string
        self.columns = rcnn_columns(self.n_raters)
        self.trainable: tuple[str, ...] = PARTS

    # ---- staged training ------------------------------------------------------------------------------------
    def set_trainable(self, parts: Sequence[str]) -> None:
        """Train only ``parts`` (of backbone, rpn, rcn; the backbone includes the distance head): the others get
        ``requires_grad=False`` and stay in eval mode (batch norm statistics frozen) even under ``train()``."""
        unknown = sorted(set(parts) - set(PARTS))
        if unknown:
            raise ValueError(f"unknown parts {unknown}; known: {list(PARTS)}")
        self.trainable = tuple(parts)
        for name in PARTS:
            for p in self._part(name).parameters():
                p.requires_grad_(name in parts)
        self.train(self.training)

    def _part(self, name: str) -> nn.Module:
        return nn.ModuleList([self.backbone, self.distance_head]) if name == "backbone" else getattr(self, name)

    def train(self, mode: bool = True):
        super().train(mode)
        for name in PARTS:
            if name not in getattr(self, "trainable", PARTS):
                self._part(name).eval()
        return self

    # ---- pieces ---------------------------------------------------------------------------------------------
    def dense(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backbone features, distance map (B, 1), proposal logits (B, 2) and regression (B, 4) of a patch batch."""
        feats = self.backbone(x)
        logits, reg = self.rpn(feats)
        return {"features": feats, "distance": self.distance_head(feats), "rpn_logits": logits, "rpn_reg": reg}

    def propose(
        self, score: torch.Tensor, distance: torch.Tensor, reg: torch.Tensor, valid: torch.Tensor | None, top: int
    ) -> torch.Tensor:
        """Proposals of one patch: voxels with ``score > score_threshold`` where the distance map is maximal over
        its 3^3 neighbourhood within that region (its ridge: the skeleton of the thresholded region), moved by
        their regressed offsets; at most ``top``, best score first.

        Returns:
            (P, 5) float: centre i, j, k (voxels), scale (voxels, clipped to [1, max_scale]), proposal score.
        """
        cand = score > self.score_threshold
        if valid is not None:
            cand &= valid
        dm = distance.masked_fill(~cand, float("-inf"))
        ridge = cand & (dm >= F.max_pool3d(dm[None, None], 3, 1, 1)[0, 0])
        idx = ridge.nonzero()
        s = score[ridge].float()  # float32 also under mixed precision
        order = torch.argsort(s, descending=True)[:top]
        idx, s = idx[order], s[order]
        r = reg[:, idx[:, 0], idx[:, 1], idx[:, 2]].T.float()
        centre = idx.float() + r[:, :3]
        scale = r[:, 3].clamp(1.0, self.max_scale)
        return torch.cat([centre, scale[:, None], s[:, None]], 1)

    def refine(self, features: torch.Tensor, centres: torch.Tensor, scales: torch.Tensor):
        """Refinement head on the boxes (centre rounded to a voxel, side = scale) cut from ``features`` (C, H, W, D).

        Boxes are cut and classified in groups of one size, so a few large boxes do not make every small one pay
        for the large window (the kernel-7 convolution's cost grows with the window's volume).
        """
        halves = (scales.clamp(1.0, self.max_scale) / 2).floor().long() + self.box_margin
        centres = centres.round().long()
        if not len(halves):
            return self.rcn(*crop_boxes(features, centres, halves))
        groups = [(halves == h).nonzero().flatten() for h in torch.unique(halves)]
        outs = [self.rcn(*crop_boxes(features, centres[g], halves[g])) for g in groups]
        inverse = torch.argsort(torch.cat(groups))
        return tuple(torch.cat([o[n] for o in outs])[inverse] for n in range(3))

    # ---- forward --------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, boxes: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        if not self.training:
            return self.detect(x, mask)
        out = self.dense(x)
        feats = out.pop("features")
        if "rcn" in self.trainable and boxes is not None:
            out.update(self._train_refinement(feats, out, boxes))
        return out

    def _train_refinement(self, feats: torch.Tensor, out: dict, boxes: torch.Tensor) -> dict:
        props, logits, raters, regs = [], [], [], []
        with torch.no_grad():
            score = torch.softmax(out["rpn_logits"], 1)[:, 1]
        for b in range(len(feats)):
            # the proposals inference would make in this patch, a random draw of them: mostly what the head must
            # reject (the best-scored ones alone are nearly all objects, and teach it to accept everything)
            d, r = out["distance"][b, 0].detach(), out["rpn_reg"][b].detach()
            p = self.propose(score[b], d, r, None, self.max_proposals)
            p = p[torch.randperm(len(p), device=p.device)[: self.train_proposals]]
            gt = boxes[b][torch.isfinite(boxes[b, :, 0])]
            gt = gt[torch.randperm(len(gt), device=gt.device)[: self.train_boxes]]
            jit = (torch.rand(len(gt), 3, device=gt.device) * 2 - 1) * self.train_jitter
            sc = gt[:, 3] * torch.exp((torch.rand(len(gt), device=gt.device) * 2 - 1) * 0.2)
            p = torch.cat([p[:, :4], torch.cat([gt[:, :3] + jit, sc[:, None]], 1)], 0)
            shape = torch.as_tensor(feats.shape[2:], device=p.device, dtype=p.dtype)
            p = p[torch.all((p[:, :3] > -0.5) & (p[:, :3] < shape - 0.5), 1)]
            if not len(p):  # nothing proposed and no object: the patch centre, a negative sample
                p = torch.cat([(shape - 1) / 2, shape.new_ones(1)])[None]
            lg, rt, rg = self.refine(feats[b], p[:, :3], p[:, 3])
            props.append(torch.cat([torch.full_like(p[:, :1], b), p], 1))
            logits.append(lg), raters.append(rt), regs.append(rg)
        return {
            "proposals": torch.cat(props),
            "rcn_logits": torch.cat(logits),
            "rcn_raters": torch.cat(raters),
            "rcn_reg": torch.cat(regs),
        }

    @staticmethod
    def _starts(dim: int, size: int, margin: int) -> list[int]:
        if dim <= size:
            return [0]
        step = size - 2 * margin
        starts = list(range(0, dim - size, step)) + [dim - size]
        return sorted(set(starts))

    @torch.no_grad()
    def detect(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Detections of a batch (B, C, H, W, D) as a (B, N, len(columns)) table padded with NaN rows.

        ``mask`` (B, 1, H, W, D), if given, restricts proposals to the brain and skips patches without brain.
        Spacing for the non-maximum suppression comes from the input's affine (a MONAI ``MetaTensor``), else 1 mm.
        """
        spacing = torch.ones(3)
        if hasattr(x, "affine"):
            spacing = affine_to_spacing(torch.as_tensor(x.affine, dtype=torch.float64).reshape(-1, 4, 4)[0]).float()
        x = torch.as_tensor(x)
        mask = torch.as_tensor(mask) if mask is not None else None
        fast = self.channels_last and x.device.type == "cpu"  # 3D convolutions about 25 % faster on the CPU
        if fast:
            self.to(memory_format=torch.channels_last_3d)
        try:
            brains = [None if mask is None else mask[b, 0] > 0 for b in range(len(x))]
            tables = [self._detect_one(x[b], brains[b], spacing, fast) for b in range(len(x))]
        finally:
            if fast:
                self.to(memory_format=torch.contiguous_format)
        return pad_rows(tables, like=x)

    def _detect_one(
        self, image: torch.Tensor, brain: torch.Tensor | None, spacing: torch.Tensor, channels_last: bool = False
    ) -> torch.Tensor:
        shape = image.shape[1:]
        spacing = spacing.to(image.device)
        size, m = self.patch_size, self.patch_margin
        rows = []
        grid = [self._starts(d, s, m) for d, s in zip(shape, size)]
        for si in grid[0]:
            for sj in grid[1]:
                for sk in grid[2]:
                    start = (si, sj, sk)
                    region = tuple(slice(a, min(a + s, d)) for a, s, d in zip(start, size, shape))
                    core = tuple(
                        slice(0 if a == 0 else m, (e.stop - a) if e.stop == d else s - m)
                        for a, e, s, d in zip(start, region, size, shape)
                    )
                    valid = torch.zeros(size, dtype=torch.bool, device=image.device)
                    valid[core] = True
                    if brain is not None:
                        b = torch.zeros(size, dtype=torch.bool, device=image.device)
                        sub = brain[region]
                        b[tuple(slice(0, n) for n in sub.shape)] = sub
                        valid &= b
                    if not valid.any():
                        continue
                    patch = image.new_zeros((image.shape[0], *size))
                    patch[(slice(None), *(slice(0, e.stop - a) for a, e in zip(start, region)))] = image[
                        (slice(None), *region)
                    ]
                    rows.append(self._detect_patch(patch, valid, start, spacing, channels_last))
        table = torch.cat(rows) if rows else image.new_zeros((0, len(self.columns)))
        return self._box_nms(self._nms(table, spacing), spacing)

    def _detect_patch(
        self, patch: torch.Tensor, valid: torch.Tensor, start, spacing: torch.Tensor, channels_last: bool = False
    ) -> torch.Tensor:
        batch = patch[None]
        out = self.dense(batch.contiguous(memory_format=torch.channels_last_3d) if channels_last else batch)
        score = torch.softmax(out["rpn_logits"][0], 0)[1]
        props = self.propose(score, out["distance"][0, 0], out["rpn_reg"][0], valid, self.max_proposals)
        # the paper's pruning of proposed centres closer than nms_mm (best proposal score first), before the
        # refinement head; the detections are pruned again after it (refined centres, across patches)
        props = self._nms(props, spacing, score_column=4)
        if not len(props):
            return patch.new_zeros((0, len(self.columns)))
        logits, raters, reg = self.refine(out["features"][0], props[:, :3], props[:, 3])
        logits, raters, reg = logits.float(), raters.float(), reg.float()
        probs = torch.softmax(logits, 1)
        centre = props[:, :3] + reg[:, :3] + torch.as_tensor(start, dtype=props.dtype, device=props.device)
        scale = (props[:, 3] * reg[:, 3].clamp(min=0.25)).clamp(1.0, self.max_scale)
        answers = raters.argmax(2).to(probs.dtype)
        rater_probs = torch.softmax(raters, 2).reshape(len(raters), -1)  # head by head, answers in ANSWERS order
        return torch.cat([centre, 1 - probs[:, :1], probs, scale[:, None], props[:, 4:5], answers, rater_probs], 1)

    def _box_nms(self, table: torch.Tensor, spacing: torch.Tensor) -> torch.Tensor:
        """Rows of a detections table kept by MONAI's box non-maximum suppression at ``box_nms_iou``."""
        sides = table[:, self.columns.index("scale"), None].float() * spacing
        return table[cube_nms(table[:, :3].float() * spacing, sides, table[:, 3], self.box_nms_iou)]

    def _nms(self, table: torch.Tensor, spacing: torch.Tensor, score_column: int = 3) -> torch.Tensor:
        """Rows of ``table`` (centre in columns 0-2) kept by greedy non-maximum suppression at ``nms_mm``: best
        score first, a row is kept unless a kept row lies closer than ``nms_mm`` (one distance row per kept row,
        not per row: thousands of rows per scan)."""
        if not len(table):
            return table
        table = table[torch.argsort(table[:, score_column], descending=True)]
        xyz = table[:, :3] * spacing
        suppressed = np.zeros(len(table), dtype=bool)
        keep: list[int] = []
        for n in range(len(table)):
            if suppressed[n]:
                continue
            keep.append(n)
            suppressed |= (torch.cdist(xyz[n : n + 1], xyz)[0] < self.nms_mm).cpu().numpy()
        return table[keep]
