# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The multirater RCNN's losses: the published smooth distance loss piece by piece, the balanced voxel sampler,
the exclusion of negatives from the regression, the multirater terms and the step weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bundle.methods.rcnn import (
    MultiraterRCNNLoss,
    match_proposals,
    sample_balanced,
    smooth_distance,
)


@pytest.mark.parametrize(
    "r, want",
    [(0.0, 0.0), (0.3, 0.045), (-0.3, 0.045), (0.49, 0.5 * 0.49**2), (0.5, 0.375), (1.0, 0.875), (2.125, 2.0),
     (3.0, 2.875**2 - 2.0), (-3.0, 2.875**2 - 2.0)],
)  # fmt: skip
def test_smooth_distance_pieces(r, want):
    assert float(smooth_distance(torch.tensor(r))) == pytest.approx(want, abs=1e-6)


def test_smooth_distance_is_continuous_at_2125_and_jumps_at_05_as_published():
    eps = 1e-4
    left, right = smooth_distance(torch.tensor([2.125 - eps, 2.125 + eps]))
    assert float(right - left) == pytest.approx(0.0, abs=1e-3)
    below, above = smooth_distance(torch.tensor([0.5 - eps, 0.5]))
    assert float(above - below) == pytest.approx(0.25, abs=1e-3)  # 0.125 -> 0.375
    r = torch.tensor([0.25, 1.0, 3.0], requires_grad=True)
    smooth_distance(r).sum().backward()
    assert r.grad.tolist() == pytest.approx([0.25, 1.0, 2 * 2.875])


@pytest.mark.parametrize("n_pos, want_pos, want_neg", [(1000, 150, 150), (20, 20, 280), (0, 0, 300)])
def test_sample_balanced(n_pos, want_pos, want_neg):
    positive = torch.zeros(5000, dtype=torch.bool)
    positive[torch.randperm(5000)[:n_pos]] = True
    pos, neg = sample_balanced(positive, 300, torch.Generator().manual_seed(0))
    assert (len(pos), len(neg)) == (want_pos, want_neg)
    assert positive[pos].all() and not positive[neg].any()
    assert len(set(pos.tolist())) == len(pos) and len(set(neg.tolist())) == len(neg)


def _rpn_batch(n_pos=40):
    shape = (1, 1, 12, 12, 12)
    target = torch.zeros(1, 5, 12, 12, 12)
    flat = target.view(5, -1)
    idx = torch.randperm(flat.shape[1], generator=torch.Generator().manual_seed(1))[:n_pos]
    flat[0, idx] = 1.0
    flat[1:, idx] = torch.randn(4, n_pos)
    logits = torch.randn(1, 2, *shape[2:], requires_grad=True)
    reg = torch.randn(1, 4, *shape[2:], requires_grad=True)
    return logits, reg, target


def test_negatives_bear_no_regression_loss():
    logits, reg, target = _rpn_batch()
    loss = MultiraterRCNNLoss({"rpn_cls": 1.0, "rpn_reg": 1.0})
    total = loss({"rpn_logits": logits, "rpn_reg": reg}, {"rpn_target": target})
    total.backward()
    positive = target[:, :1].expand_as(reg) > 0.5
    assert reg.grad[~positive].abs().max() == 0  # negatives: no gradient on the regression branch
    assert reg.grad[positive].abs().max() > 0
    sampled = logits.grad.abs().sum(1).flatten() > 0
    assert int(sampled.sum()) == 300  # 40 positive + 260 negative voxels trained the classifier
    assert set(loss.last_terms) == {"rpn_cls", "rpn_reg"}


def test_sigmoid_regression_and_step_weights():
    logits, reg, target = _rpn_batch()
    out, tgt = {"rpn_logits": logits, "rpn_reg": reg}, {"rpn_target": target}
    plain = MultiraterRCNNLoss({"rpn_cls": 1.0, "rpn_reg": 1.0}, seed=3)
    squashed = MultiraterRCNNLoss({"rpn_cls": 1.0, "rpn_reg": 1.0}, sigmoid_regression=True, seed=3)
    plain(out, tgt), squashed(out, tgt)
    assert squashed.last_terms["rpn_reg"] == pytest.approx(1 / (1 + math.exp(-plain.last_terms["rpn_reg"])), rel=1e-5)
    assert squashed.last_terms["rpn_cls"] == pytest.approx(plain.last_terms["rpn_cls"], rel=1e-6)
    weighted = MultiraterRCNNLoss({"rpn_cls": 2.0, "rpn_reg": 0.5}, seed=3)
    total = weighted(out, tgt)
    assert float(total.detach()) == pytest.approx(
        2 * plain.last_terms["rpn_cls"] + 0.5 * plain.last_terms["rpn_reg"], rel=1e-5
    )
    dist = torch.randn(1, 1, 4, 4, 4)
    only = MultiraterRCNNLoss({"distance": 1.0})
    value = only({"distance": dist}, {"distance": torch.zeros_like(dist)})  # no other output needed
    assert float(value) == pytest.approx(float(dist.pow(2).mean().sqrt()), rel=1e-5)
    with pytest.raises(ValueError, match="unknown loss terms"):
        MultiraterRCNNLoss({"mask": 1.0})
    with pytest.raises(ValueError, match="at least one positive"):
        MultiraterRCNNLoss({"distance": 0.0})
    with pytest.raises(ValueError, match="train part 'rcn'"):
        MultiraterRCNNLoss({"rcn_cls": 1.0})({"distance": dist}, {"boxes": torch.zeros(1, 1, 16)})


def _box(centre, scale, soft, raters):
    return [*centre, scale, 9.0, 2.0, *soft, *raters]


def test_refinement_terms_use_soft_labels_and_each_raters_answer():
    # one patch, two objects; proposals: one near object A, one near object B, one far from both
    soft_a, raters_a = [0.0, 0.0, 2 / 3, 1 / 3], [2, 2, 3, 2, 3, 2]
    soft_b, raters_b = [1 / 6, 5 / 6, 0.0, 0.0], [1, 1, 1, 0, 1, 1]
    boxes = torch.full((1, 4, 16), float("nan"))
    boxes[0, 0] = torch.tensor(_box([5.0, 5.0, 5.0], 3.0, soft_a, raters_a))
    boxes[0, 1] = torch.tensor(_box([12.0, 4.0, 8.0], 6.0, soft_b, raters_b))
    props = torch.tensor([[0, 5.5, 5.0, 4.0, 2.0], [0, 12.0, 5.0, 8.0, 4.0], [0, 20.0, 20.0, 20.0, 2.0]])
    rows = match_proposals(props, boxes, 2.0)
    assert rows[0, 0] == 5.0 and rows[1, 0] == 12.0 and torch.isnan(rows[2, 0])
    logits = torch.randn(3, 4, requires_grad=True)
    raters = torch.randn(3, 6, 4, requires_grad=True)
    reg = torch.randn(3, 4, requires_grad=True)
    loss = MultiraterRCNNLoss({"rcn_cls": 1.0, "rcn_raters": 1.0, "rcn_reg": 1.0})
    loss({"proposals": props, "rcn_logits": logits, "rcn_raters": raters, "rcn_reg": reg}, {"boxes": boxes})
    soft = torch.tensor([soft_a, soft_b, [1.0, 0, 0, 0]])
    want_kl = F.kl_div(F.log_softmax(logits, 1), soft, reduction="batchmean")
    answers = torch.tensor([raters_a, raters_b, [0] * 6])
    want_ce = F.cross_entropy(raters.reshape(-1, 4), answers.reshape(-1))
    true = torch.tensor([[-0.5, 0.0, 1.0, 3.0 / 2.0], [0.0, -1.0, 0.0, 6.0 / 4.0]])
    want_reg = smooth_distance(reg[:2] - true).mean()  # the unmatched proposal has no regression target
    assert loss.last_terms["rcn_cls"] == pytest.approx(float(want_kl.detach()), rel=1e-5)
    assert loss.last_terms["rcn_raters"] == pytest.approx(float(want_ce.detach()), rel=1e-5)
    assert loss.last_terms["rcn_reg"] == pytest.approx(float(want_reg.detach()), rel=1e-5)
