# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The multirater RCNN module: un-interpolated box crops, head shapes, freezing of parts, proposals, NMS and
inference on a scan without objects."""

from __future__ import annotations

import pytest
import torch

from bundle.methods.rcnn import MultiraterRCNN, crop_boxes, cube_nms, highresnet_layers, rcnn_columns

TINY = highresnet_layers((4, 4, 4, 8, 8), repeat=1)


def _net(**kw):
    torch.manual_seed(0)
    return MultiraterRCNN(
        3, TINY, rpn_channels=4, rcn_channels=4, hidden=8, patch_size=(16, 16, 16), patch_margin=2, **kw
    )


def test_one_voxel_object_keeps_its_exact_value_in_the_crop():
    feats = torch.zeros(2, 10, 10, 10)
    feats[0, 4, 5, 6] = 3.14159265
    feats[1, 4, 5, 6] = -2.5
    feats[0, 4, 5, 7] = 7.0  # a neighbour outside the one-voxel box
    crops, masks = crop_boxes(feats, torch.tensor([[4, 5, 6], [0, 0, 9]]), torch.tensor([0, 2]))
    assert crops.shape == (2, 2, 5, 5, 5) and masks.shape == (2, 1, 5, 5, 5)
    assert torch.equal(crops[0, :, 2, 2, 2], feats[:, 4, 5, 6])  # bit-exact
    assert masks[0].sum() == 1 and crops[0].abs().sum() == pytest.approx(3.14159265 + 2.5)  # nothing else
    assert masks[1].sum() == 125  # a 5^3 box at the corner: values outside the volume are zero
    assert crops[1, 0, 2, 2, 2] == feats[0, 0, 0, 9] and crops[1, :, :2].abs().sum() == 0


def test_crops_copy_features_without_resampling():
    feats = torch.randn(3, 12, 12, 12)
    crops, masks = crop_boxes(feats, torch.tensor([[6, 6, 6]]), torch.tensor([1]))
    w = crops.shape[-1]
    h = w // 2
    assert torch.equal(crops[0][:, h - 1 : h + 2, h - 1 : h + 2, h - 1 : h + 2], feats[:, 5:8, 5:8, 5:8])


def test_refinement_in_size_groups_equals_one_box_at_a_time():
    net = _net().eval()
    feats = torch.randn(8, 20, 20, 20)
    centres = torch.tensor([[5.2, 6.0, 7.0], [10.0, 10.0, 10.0], [3.0, 15.0, 4.6], [12.0, 2.0, 18.0]])
    scales = torch.tensor([1.0, 9.0, 3.0, 1.4])
    with torch.no_grad():
        together = net.refine(feats, centres, scales)
        alone = [net.refine(feats, centres[p : p + 1], scales[p : p + 1]) for p in range(4)]
        empty = net.refine(feats, centres[:0], scales[:0])
    for n in range(3):
        assert torch.allclose(together[n], torch.cat([a[n] for a in alone]), atol=1e-5)
    assert [e.shape[0] for e in empty] == [0, 0, 0]


def test_training_outputs_and_multirater_head_shapes():
    net = _net(n_raters=6).train()
    boxes = torch.full((2, 4, 16), float("nan"))
    boxes[0, 0, :4] = torch.tensor([8.0, 8.0, 8.0, 3.0])
    out = net(torch.randn(2, 3, 16, 16, 16), boxes=boxes)
    assert out["distance"].shape == (2, 1, 16, 16, 16)
    assert out["rpn_logits"].shape == (2, 2, 16, 16, 16) and out["rpn_reg"].shape == (2, 4, 16, 16, 16)
    p = len(out["proposals"])
    assert p >= 2  # the jittered ground-truth box (patch 0) and at least one proposal or the centre (patch 1)
    assert out["rcn_logits"].shape == (p, 4) and out["rcn_raters"].shape == (p, 6, 4) and out["rcn_reg"].shape == (p, 4)
    assert len(net.rcn.raters) == 6 and all(head.out_features == 4 for head in net.rcn.raters)
    assert set(out["proposals"][:, 0].tolist()) == {0.0, 1.0}
    net.set_trainable(["backbone"])
    assert "rcn_logits" not in net(torch.randn(1, 3, 16, 16, 16), boxes=boxes[:1])  # rcn not trained: not run


def test_frozen_parts_get_no_gradient_and_keep_batch_norm_statistics():
    net = _net()
    net.set_trainable(["rpn"])
    net.train()
    assert not net.backbone.training and net.rpn.training
    stats = {k: v.clone() for k, v in net.state_dict().items() if "running_mean" in k}
    out = net(torch.randn(1, 3, 16, 16, 16) * 5 + 3)
    (out["rpn_logits"].sum() + out["distance"].sum() * 0).backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.rpn.parameters())
    assert all(torch.equal(net.state_dict()[k], v) for k, v in stats.items())
    with pytest.raises(ValueError, match="unknown parts"):
        net.set_trainable(["head"])


def test_proposals_are_ridge_maxima_moved_by_their_offsets():
    net = _net()
    score = torch.zeros(10, 10, 10)
    score[2:6, 5, 5] = 0.9  # a tube-like region along i
    score[8, 8, 8] = 0.2  # below the threshold 0.25
    dist = torch.zeros(10, 10, 10)
    dist[2:6, 5, 5] = torch.tensor([1.0, 2.0, 1.5, 1.0])
    reg = torch.zeros(4, 10, 10, 10)
    reg[0, 3, 5, 5] = 0.5
    reg[3, 3, 5, 5] = 4.0
    props = net.propose(score, dist, reg, None, 300)
    assert props.tolist() == [[3.5, 5.0, 5.0, 4.0, pytest.approx(0.9)]]  # the one maximum, moved by +0.5 in i


def test_nms_keeps_the_better_of_two_close_detections():
    net = _net()
    cols = len(net.columns)
    table = torch.zeros(3, cols)
    table[:, :4] = torch.tensor([[5.0, 5, 5, 0.6], [5.0, 5, 6.5, 0.9], [5.0, 5, 9, 0.5]])
    kept = net._nms(table, torch.tensor([1.0, 1.0, 1.0]))
    assert kept[:, 3].tolist() == pytest.approx([0.9, 0.5])  # 1.5 mm apart: dropped; 2.5 mm: kept
    kept = net._nms(table, torch.tensor([1.0, 1.0, 2.0]))  # 3 mm apart along k on a 2 mm grid: all kept
    assert len(kept) == 3


def test_nms_equals_the_greedy_rule_on_crowded_tables():
    """Thousands of rows on an integer lattice (distances exactly nms_mm occur): the same rows, in the same order,
    as the greedy rule "keep a row unless a kept row is closer than nms_mm", best score first."""
    net = _net()
    gen = torch.Generator().manual_seed(0)
    table = torch.zeros(3000, len(net.columns))
    table[:, :3] = torch.randint(0, 30, (3000, 3), generator=gen).float()
    table[:, 3] = torch.rand(3000, generator=gen)
    spacing = torch.tensor([1.0, 1.0, 1.0])
    order = table[torch.argsort(table[:, 3], descending=True)]
    keep: list[int] = []
    for n in range(len(order)):
        if not keep or torch.cdist(order[n : n + 1, :3], order[keep, :3]).min() >= net.nms_mm:
            keep.append(n)
    kept = net._nms(table, spacing)
    assert torch.equal(kept, order[keep]) and 100 < len(kept) < 3000


def test_box_nms_drops_overlapping_refined_boxes_with_monai():
    # boxes of side 4 mm: 2 mm apart along k -> IoU 2/6 = 0.333; 3 mm apart -> 1/7 = 0.143; 6 mm apart -> 0
    centres = torch.tensor([[5.0, 5, 5], [5.0, 5, 7], [5.0, 5, 8], [5.0, 5, 11]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    sides = torch.full((4,), 4.0)
    assert cube_nms(centres, sides, scores, 0.2).tolist() == [0, 2, 3]  # 0.333 > 0.2 dropped; 0.143 kept
    assert cube_nms(centres, sides, scores, 0.1).tolist() == [0, 3]
    assert cube_nms(centres, sides, scores, 0.4).tolist() == [0, 1, 3]  # the 2nd and 3rd overlap by 3/5
    assert cube_nms(centres, sides, scores, 0.7).tolist() == [0, 1, 2, 3]
    assert cube_nms(centres, sides, scores, 1.0).tolist() == [0, 1, 2, 3]
    # the network applies it to its refined table: scale column in voxels, spacing from the input
    net = _net(box_nms_iou=0.2)
    table = torch.zeros(4, len(net.columns))
    table[:, :3], table[:, 3] = centres, scores
    table[:, net.columns.index("scale")] = 2.0
    # scale 2 voxels at 1 mm: 2 mm boxes at k = 5, 7, 8, 11 mm; the third overlaps the second by 1/3
    assert net._box_nms(table, torch.tensor([1.0, 1.0, 1.0]))[:, 3].tolist() == pytest.approx([0.9, 0.8, 0.6])
    table[:, net.columns.index("scale")] = 4.0  # 4 mm boxes at 1 mm: as cube_nms above at 0.2
    assert net._box_nms(table, torch.tensor([1.0, 1.0, 1.0]))[:, 3].tolist() == pytest.approx([0.9, 0.7, 0.6])
    # the same table on 0.25 mm voxels: 1 mm boxes at k = 1.25, 1.75, 2, 2.75 mm; overlaps 1/3, then 1/7 and 1/7
    assert net._box_nms(table, torch.tensor([1.0, 1.0, 0.25]))[:, 3].tolist() == pytest.approx([0.9, 0.7, 0.6])
    net.box_nms_iou = 0.1
    assert net._box_nms(table, torch.tensor([1.0, 1.0, 0.25]))[:, 3].tolist() == pytest.approx([0.9, 0.6])
    with pytest.raises(ValueError, match="box_nms_iou"):
        _net(box_nms_iou=1.5)


def test_inference_on_a_scan_without_brain_or_objects():
    net = _net().eval()
    x = torch.zeros(1, 3, 20, 24, 18)
    out = net(x, mask=torch.zeros(1, 1, 20, 24, 18))
    assert out.shape == (1, 0, len(rcnn_columns(6)))  # no brain: no patch is run
    table = net(torch.randn(2, 3, 20, 24, 18))
    assert table.shape[0] == 2 and table.shape[2] == len(rcnn_columns(6)) == 10 + 6 + 6 * 4
    rows = table[0][torch.isfinite(table[0, :, 3])]
    assert ((rows[:, 4:8].sum(1) - 1).abs() < 1e-4).all()
    assert torch.allclose(rows[:, 3], 1 - rows[:, 4])
    assert ((rows[:, 10:16] >= 0) & (rows[:, 10:16] <= 3)).all()
    heads = rows[:, 16:].reshape(len(rows), 6, 4)  # each head's answer probabilities; its answer is the likeliest
    assert len(rows) and torch.allclose(heads.sum(2), torch.ones(len(rows), 6), atol=1e-5)
    assert torch.equal(heads.argmax(2).float(), rows[:, 10:16])


def test_columns_and_layer_checks():
    assert rcnn_columns(2) == (
        "i", "j", "k", "score", "p_nothing", "p_lacune", "p_epvs", "p_undecided", "scale", "rpn_score", "rater1",
        "rater2", "rater1_p_nothing", "rater1_p_lacune", "rater1_p_epvs", "rater1_p_undecided", "rater2_p_nothing",
        "rater2_p_lacune", "rater2_p_epvs", "rater2_p_undecided",
    )  # fmt: skip
    assert [p["n_features"] for p in highresnet_layers((1, 2, 3, 4, 5), 2)[:5]] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="5 channel counts"):
        highresnet_layers((1, 2, 3))
    with pytest.raises(ValueError, match="twice patch_margin"):
        MultiraterRCNN(3, TINY, patch_size=(16, 16, 16), patch_margin=8)


def test_channels_last_inference_restores_the_weights_layout_and_agrees_on_the_maps():
    net = _net(channels_last=True).eval()
    x = torch.randn(1, 3, 20, 18, 16)
    with torch.no_grad():
        plain = net.dense(x)
        net.detect(x)
        assert all(p.is_contiguous() for p in net.parameters())  # the default layout again after the call
        net.to(memory_format=torch.channels_last_3d)
        fast = net.dense(x.contiguous(memory_format=torch.channels_last_3d))
    for key in ("distance", "rpn_logits", "rpn_reg"):
        assert torch.allclose(plain[key], fast[key], atol=1e-5)
