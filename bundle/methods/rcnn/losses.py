# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The losses of the multirater RCNN (Sudre et al., MIDL 2019), one weighted term per head (``docs/rcnn.md``).

Terms (each weighted by the current training step's ``weights``; a term with weight 0 is not computed):

* ``distance``: root-mean-square error of the backbone's distance map.
* ``rpn_cls``: cross-entropy of the proposal head on ``samples`` voxels per patch, half positive and half negative
  (:func:`sample_balanced`).
* ``rpn_reg``: smooth distance loss of the offset and scale regression on the *positive* samples only.
* ``rcn_cls``: KL divergence between the soft multirater label and the refinement head's class distribution.
* ``rcn_raters``: cross-entropy of each rater head against that rater's answer (mean over raters).
* ``rcn_reg``: smooth distance loss of the residual centre offset and the scale correction factor, on proposals
  matched to an object.

With ``sigmoid_regression`` (the first step of each head in the paper) the regression terms enter as
``sigmoid(term)``; without it, as they are.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .smooth_distance import smooth_distance

__all__ = ["TERMS", "MultiraterRCNNLoss", "match_proposals", "sample_balanced"]

TERMS = ("distance", "rpn_cls", "rpn_reg", "rcn_cls", "rcn_raters", "rcn_reg")
# columns of a box row (bundle.methods.rcnn.OBJECT_COLUMNS): centre 0-2, scale 3, n_voxels 4, class 5, soft 6-9, raters
_SOFT, _RATERS = slice(6, 10), 10


def sample_balanced(
    positive: torch.Tensor, n: int = 300, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``min(#positive, n // 2)`` positive voxels and ``n`` minus that many negative voxels.

    Half and half whenever the patch has ``n // 2`` positive voxels; otherwise every positive voxel and negatives
    for the rest (the Faster R-CNN rule), so a patch without objects still trains the classifier.

    Args:
        positive: (N,) boolean.
        n: samples.
        generator: random generator of the draws (CPU).
    """
    positive = positive.reshape(-1).bool()
    pos, neg = positive.nonzero().flatten(), (~positive).nonzero().flatten()
    n_pos = min(len(pos), n // 2)
    n_neg = min(len(neg), n - n_pos)
    pick = lambda idx, k: idx[torch.randperm(len(idx), generator=generator)[:k].to(idx.device)]  # noqa: E731
    return pick(pos, n_pos), pick(neg, n_neg)


def match_proposals(proposals: torch.Tensor, boxes: torch.Tensor, max_distance: float = 2.0) -> torch.Tensor:
    """Object row matched to each proposal: the nearest object centre of the same patch within ``max_distance``
    voxels, or a NaN row.

    Args:
        proposals: (P, >=4): batch index, centre i, j, k.
        boxes: (B, K, F) padded object rows (NaN padding), centres in columns 0-2.

    Returns:
        (P, F) matched rows.
    """
    out = boxes.new_full((len(proposals), boxes.shape[-1]), float("nan"))
    for b in range(len(boxes)):
        sel = proposals[:, 0] == b
        gt = boxes[b][torch.isfinite(boxes[b, :, 0])]
        if not sel.any() or not len(gt):
            continue
        d = torch.cdist(proposals[sel, 1:4], gt[:, :3])
        best, idx = d.min(1)
        rows = gt[idx]
        rows[best > max_distance] = float("nan")
        out[sel] = rows
    return out


class MultiraterRCNNLoss(nn.Module):
    """Weighted sum of the RCNN's terms for one training step (see the module docstring).

    ``forward(outputs, targets)`` takes the network's training output (``distance``, ``rpn_logits``,
    ``rpn_reg`` and, when the refinement head trains, ``proposals``, ``rcn_logits``, ``rcn_raters``, ``rcn_reg``)
    and the batch's ``distance``, ``rpn_target`` and ``boxes``. The last terms are kept in ``last_terms``
    (floats) for logging.

    Args:
        weights: weight per term name of :data:`TERMS` (missing terms weigh 0).
        sigmoid_regression: pass the regression terms through a sigmoid.
        samples: voxels sampled per patch for the proposal head (300).
        match_distance: largest distance (voxels) between a proposal and the object it is matched to.
        seed: seed of the voxel sampling.

    Raises:
        ValueError: an unknown term name, a negative weight, or no positive weight.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        sigmoid_regression: bool = False,
        samples: int = 300,
        match_distance: float = 2.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        unknown = sorted(set(weights) - set(TERMS))
        if unknown:
            raise ValueError(f"unknown loss terms {unknown}; known: {list(TERMS)}")
        if any(float(w) < 0 for w in weights.values()) or not any(float(w) > 0 for w in weights.values()):
            raise ValueError(f"loss weights must be non-negative with at least one positive, got {dict(weights)}")
        self.weights = {k: float(v) for k, v in weights.items() if float(v) > 0}
        self.sigmoid_regression = bool(sigmoid_regression)
        self.samples, self.match_distance = int(samples), float(match_distance)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.last_terms: dict[str, float] = {}

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        terms: dict[str, torch.Tensor] = {}
        w = self.weights
        if "distance" in w:
            terms["distance"] = torch.sqrt(F.mse_loss(outputs["distance"], targets["distance"]) + 1e-12)
        if "rpn_cls" in w or "rpn_reg" in w:
            terms.update(self._rpn(outputs["rpn_logits"], outputs["rpn_reg"], targets["rpn_target"]))
        if any(k.startswith("rcn") for k in w):
            if "rcn_logits" not in outputs:
                raise ValueError("the loss weighs refinement terms but the network output has none: train part 'rcn'")
            terms.update(self._rcn(outputs, targets["boxes"]))
        if self.sigmoid_regression:
            terms = {k: torch.sigmoid(v) if k.endswith("_reg") else v for k, v in terms.items()}
        used = {k: v for k, v in terms.items() if k in w}
        self.last_terms = {k: float(v.detach()) for k, v in used.items()}
        return sum(w[k] * v for k, v in used.items())

    def _rpn(self, logits: torch.Tensor, reg: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        ce_logits, ce_labels, reg_pred, reg_true = [], [], [], []
        for b in range(len(logits)):
            pos = target[b, 0].reshape(-1) > 0.5
            ip, ineg = sample_balanced(pos.cpu(), self.samples, self.generator)
            ip, ineg = ip.to(logits.device), ineg.to(logits.device)
            lg = logits[b].reshape(2, -1)
            ce_logits.append(torch.cat([lg[:, ip], lg[:, ineg]], 1).T)
            ce_labels.append(torch.cat([torch.ones_like(ip), torch.zeros_like(ineg)]))
            reg_pred.append(reg[b].reshape(4, -1)[:, ip].T)  # negatives bear no regression loss
            reg_true.append(target[b, 1:5].reshape(4, -1)[:, ip].T)
        reg_pred_t, reg_true_t = torch.cat(reg_pred), torch.cat(reg_true)
        return {
            "rpn_cls": F.cross_entropy(torch.cat(ce_logits), torch.cat(ce_labels)),
            "rpn_reg": smooth_distance(reg_pred_t - reg_true_t).mean() if len(reg_pred_t) else reg.sum() * 0.0,
        }

    def _rcn(self, outputs: Mapping[str, torch.Tensor], boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        # float32 throughout: under mixed precision the heads' outputs are half, the targets are not
        props, logits, raters, reg = (outputs[k].float() for k in ("proposals", "rcn_logits", "rcn_raters", "rcn_reg"))
        rows = match_proposals(props, boxes.float(), self.match_distance)
        matched = torch.isfinite(rows[:, 0])
        soft = torch.zeros_like(logits)
        soft[:, 0] = 1.0  # unmatched proposals: every rater says "nothing"
        soft[matched] = rows[matched, _SOFT]
        answers = torch.zeros((len(props), raters.shape[1]), dtype=torch.long, device=logits.device)
        answers[matched] = rows[matched, _RATERS : _RATERS + raters.shape[1]].long()
        terms = {"rcn_cls": F.kl_div(F.log_softmax(logits, 1), soft, reduction="batchmean")}
        terms["rcn_raters"] = (
            F.cross_entropy(raters.reshape(-1, raters.shape[-1]), answers.reshape(-1))
            if raters.shape[1]
            else logits.sum() * 0
        )
        if matched.any():
            true = torch.cat(
                [rows[matched, :3] - props[matched, 1:4], (rows[matched, 3] / props[matched, 4])[:, None]], 1
            )
            terms["rcn_reg"] = smooth_distance(reg[matched] - true).mean()
        else:
            terms["rcn_reg"] = reg.sum() * 0.0
        return terms
