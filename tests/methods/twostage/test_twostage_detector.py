# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The one-module two-stage detector: tiled stage 1 against the paper's stride-3 windows, tables, empty scans."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import sphere
from monai.losses import DiceCELoss
from monai.networks.nets import UNet

from bundle.inference import TABLE_COLUMNS
from bundle.methods.twostage import (
    STAGE2_VIEWS,
    MimicCNN,
    TwoStageCMBDetector,
    candidates_from_map,
    stage2_view,
    stride_overlap,
)
from bundle.transforms import RandWindowsd, crop_padded, object_centres


def _toy(shape, n, seed, border):
    """Dark balls (the 'microbleeds') and one dark tube (a 'vein') in a noisy bright volume."""
    r = np.random.default_rng(seed)
    img = 0.5 + 0.05 * r.standard_normal(shape)
    lab = np.zeros(shape, np.int16)
    for i in range(n):
        ball = sphere(shape, r.integers(border, np.array(shape) - border), r.uniform(1.0, 2.5))
        img[ball], lab[ball] = 0.15, i + 1
    k = r.integers(border, shape[2] - border)
    img[border : border + 2, border : shape[1] - border, k] = 0.2
    return img.astype(np.float32)[None], lab[None]


def train_toy_unet() -> UNet:
    """A stage-1 U-Net (batch norm, two poolings) trained for 150 steps on 20 x 20 x 16 windows of a toy volume."""
    torch.manual_seed(0)
    img, lab = _toy((64, 64, 48), 12, 1, 6)
    entry = {"image": img, "label": lab, "mask": np.ones_like(lab), "centres": object_centres(lab)}
    sampler = RandWindowsd(["image", "label"], (20, 20, 16), ratios=(1, 0, 1), augment=True)
    sampler.set_random_state(0)
    net = UNet(3, 1, 2, channels=(8, 16, 32), strides=(2, 2), num_res_units=1, norm="batch")
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loss = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    for _ in range(150):
        wins = [w for _ in range(20) for w in sampler(entry)]
        x, y = torch.stack([w["image"] for w in wins]), torch.stack([w["label"] for w in wins])
        value = loss(net(x), y)
        opt.zero_grad()
        value.backward()
        opt.step()
    assert float(value.detach()) < 0.7  # it learned something: the comparison below is between meaningful maps
    return net.eval()


@pytest.fixture(scope="module")
def unet():
    return train_toy_unet()


def _found(table: np.ndarray, centres: np.ndarray, tol: int = 2) -> set[int]:
    """Objects with a candidate within ``tol`` voxels (per axis) of their centre."""
    return {n for n, c in enumerate(centres) if len(table) and np.abs(table[:, :3] - c).max(1).min() <= tol}


def _false(table: np.ndarray, centres: np.ndarray, tol: int = 2) -> int:
    """Candidates farther than ``tol`` voxels (per axis) from every object centre."""
    if not len(centres):
        return len(table)
    return int(sum(np.abs(centres - row[:3]).max(1).min() > tol for row in table))


@pytest.mark.parametrize("seed", [2, 3, 4, 5, 6, 7])
def test_tiles_match_the_stride3_stitched_windows(unet, seed):
    """Stated tolerance (docs/twostage.md): over the volume, mean |difference| < 0.01 and 99th percentile < 0.05; the
    tiles find at least as many objects as the stitched windows. (Figures of every seed:
    tests/benchmarks/cmb_tiles_vs_windows.py.)"""
    img, lab = _toy((56, 56, 44), 6, seed, 12)
    x = torch.as_tensor(img)
    tiles = TwoStageCMBDetector([unet], stage1_mode="tiles", tile_size=(32, 32, 32))
    windows = TwoStageCMBDetector([unet], stage1_mode="windows", window_stride=3)
    a, b = tiles.stage1_map(x), windows.stage1_map(x)
    diff = (a - b).abs().flatten()
    assert float(diff.mean()) < 0.01 and float(diff.quantile(0.99)) < 0.05
    assert float(diff.max()) > 0.1  # not identical: windows see a microbleed next to their zero-padded border
    centres = object_centres(lab)
    peaks = [candidates_from_map(m.numpy(), tiles.threshold).centres for m in (a, b)]  # the candidates' peaks
    found_tiles, found_windows = _found(peaks[0], centres), _found(peaks[1], centres)
    assert len(found_tiles) >= len(found_windows) >= len(centres) - 2


def test_windows_mode_uses_stride_three():
    from monai.inferers.utils import _get_scan_interval

    assert _get_scan_interval((100, 90, 80), (20, 20, 16), 3, stride_overlap((20, 20, 16), 3)) == (3, 3, 3)
    assert _get_scan_interval((100, 90, 80), (20, 20, 16), 3, stride_overlap((20, 20, 16), 1)) == (1, 1, 1)


def test_detector_table_and_empty_scans(unet):
    img, lab = _toy((48, 48, 40), 4, 9, 10)
    mask = np.zeros_like(lab)
    mask[0, 4:44, 4:44, 4:36] = 1
    cnn = MimicCNN(features=(8, 8, 8), hidden=16).eval()
    det = TwoStageCMBDetector([unet, unet], [cnn, cnn], tile_size=(32, 32, 32)).eval()
    image = torch.as_tensor(np.concatenate([img, np.full_like(img, 0.5)]))[:, None]  # batch of 2: second is empty
    out = det(image, torch.as_tensor(np.concatenate([mask, mask]))[:, None].float())
    assert out.shape[0] == 2 and out.shape[2] == len(TABLE_COLUMNS) == 6
    first, second = out[0], out[1]
    first = first[torch.isfinite(first[:, 3])]
    assert len(first) >= 3 and torch.isnan(second).all()  # a uniform scan: no candidate; its rows are padding
    assert ((first[:, 3] >= 0) & (first[:, 3] <= 1)).all() and (first[:, 4] >= 0.2).all() and (first[:, 5] >= 1).all()
    # return_map: the same table plus the stage-1 map each candidate's stage-1 score was read from
    det.return_map = True
    both = det(image, torch.as_tensor(np.concatenate([mask, mask]))[:, None].float())
    assert set(both) == {"table", "prob"} and both["prob"].shape == (2, 1, 48, 48, 40)
    torch.testing.assert_close(both["table"], out, equal_nan=True)
    prob = both["prob"][0, 0]
    cands = candidates_from_map(prob.numpy(), 0.2)
    ijk = torch.as_tensor(cands.centres).long()  # the peaks
    assert len(ijk) == len(first) and mask[0][tuple(ijk.T.numpy())].all()  # candidates lie in the brain mask
    torch.testing.assert_close(prob[tuple(ijk.T)], first[:, 4])  # stage-1 score = the map at the peak
    # positions: the probability-weighted centre of each peak's 5 x 5 x 5 neighbourhood in its component
    for (i, j, k), row in zip(ijk.tolist(), first):
        box = (slice(max(i - 2, 0), i + 3), slice(max(j - 2, 0), j + 3), slice(max(k - 2, 0), k + 3))
        w = prob.numpy()[box] * (cands.instance[box] == cands.instance[i, j, k])
        want = (np.stack(np.indices(w.shape), -1) * w[..., None]).sum((0, 1, 2)) / w.sum() + [s.start for s in box]
        np.testing.assert_allclose(row[:3].numpy(), want, atol=1e-4)
        assert np.abs(row[:3].numpy() - (i, j, k)).max() <= 2.0
    # stage-2 scores are the CNNs' mean microbleed probability on crops centred on the peaks
    crops = torch.stack([torch.as_tensor(crop_padded(img, c.numpy() - (10, 10, 8), (20, 20, 16))) for c in ijk])
    want = torch.softmax(cnn(crops), 1)[:, 1]
    torch.testing.assert_close(first[:, 3], want, atol=1e-5, rtol=1e-4)
    # one state dict holds all four networks
    keys = det.state_dict().keys()
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in keys} == {"stage1.0", "stage1.1", "stage2.0", "stage2.1"}
    # an empty brain mask gives an empty table
    det.return_map = False
    empty = det(torch.as_tensor(img)[None], torch.zeros(1, 1, 48, 48, 40))
    assert empty.shape == (1, 0, 6)
    assert float(prob[torch.as_tensor(mask[0]) == 0].abs().max()) == 0.0 and float(both["prob"][1].max()) < 0.2


def test_detector_uses_its_candidate_threshold(unet):
    """The configured threshold, not the paper's 0.2, decides the candidates (every one at or above it)."""
    img, lab = _toy((48, 48, 40), 4, 9, 10)
    cnn = MimicCNN(features=(8, 8, 8), hidden=16).eval()
    tables = {}
    for thr in (0.2, None):  # None: between the two lowest stage-1 peaks at 0.2: the lowest must go
        if thr is None:
            peaks = np.sort(tables[0.2][:, 4].numpy())
            thr = float(peaks[0] + peaks[1]) / 2
        det = TwoStageCMBDetector([unet], [cnn], tile_size=(32, 32, 32), threshold=thr, return_map=True).eval()
        out = det(torch.as_tensor(img)[None], torch.ones(1, 1, 48, 48, 40))
        table = out["table"][0][torch.isfinite(out["table"][0][:, 3])]
        assert (table[:, 4] >= thr).all()
        assert len(table) == len(candidates_from_map(out["prob"][0, 0].numpy(), thr))
        tables[0.2 if thr == 0.2 else "high"] = table
    assert len(tables["high"]) >= 2  # (a higher threshold may split a component: the counts are not compared)


def test_detector_errors():
    with pytest.raises(ValueError, match="at least one stage-1"):
        TwoStageCMBDetector([])
    with pytest.raises(ValueError, match="stage1_mode"):
        TwoStageCMBDetector([torch.nn.Identity()], stage1_mode="grid")
    det = TwoStageCMBDetector([torch.nn.Identity()])
    with pytest.raises(ValueError, match="expected image"):
        det(torch.zeros(1, 8, 8, 8))
    with pytest.raises(ValueError, match="mask shape"):
        det(torch.zeros(1, 1, 8, 8, 8), torch.zeros(1, 1, 8, 8, 4))


class _Scorer(torch.nn.Module):
    """Logits (0, gain * (crop mean - offset)), so its microbleed probability is known; counts the crops it saw."""

    def __init__(self, gain: float, offset: float) -> None:
        super().__init__()
        self.gain, self.offset, self.seen = gain, offset, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        m = x.mean(dim=(1, 2, 3, 4))
        return torch.stack([torch.zeros_like(m), self.gain * (m - self.offset)], 1)


def test_cascade_scores_hard_candidates_with_every_cnn_and_the_rest_with_the_first():
    g = torch.Generator().manual_seed(0)
    vol = torch.nn.functional.interpolate(torch.rand(1, 1, 8, 8, 6, generator=g), scale_factor=5)[0]  # blocky
    centres = np.random.default_rng(0).integers(0, (40, 40, 30), (70, 3))
    first, rest = [_Scorer(12, 0.5), _Scorer(8, 0.45)], [_Scorer(10, 0.6), _Scorer(4, 0.5), _Scorer(9, 0.52)]
    ident = [torch.nn.Identity()]
    p_first = TwoStageCMBDetector(ident, first).stage2_scores(vol, centres)
    p_all = TwoStageCMBDetector(ident, first + rest).stage2_scores(vol, centres)
    t = float(p_first.median())
    hard = p_first >= t
    assert 20 <= int(hard.sum()) <= 50 and not torch.allclose(p_first[hard], p_all[hard])  # the groups disagree
    for net in first + rest:
        net.seen = 0
    casc = TwoStageCMBDetector(ident, first + rest, cascade_size=2, cascade_threshold=t, stage2_batch=16)
    got = casc.stage2_scores(vol, centres)
    torch.testing.assert_close(got[hard], p_all[hard])  # the mean of all five CNNs
    torch.testing.assert_close(got[~hard], p_first[~hard])  # the first two's mean
    assert [n.seen for n in first] == [70, 70] and [n.seen for n in rest] == [int(hard.sum())] * 3
    # a cascade as large as the ensemble, or 0, is no cascade
    for size in (0, 5, 9):
        det = TwoStageCMBDetector(ident, first + rest, cascade_size=size, cascade_threshold=t)
        torch.testing.assert_close(det.stage2_scores(vol, centres), p_all)
    with pytest.raises(ValueError, match="cascade_size"):
        TwoStageCMBDetector(ident, first + rest, cascade_size=-1)


class _Linear(torch.nn.Module):
    """Logits (0, w . crop): a scorer that a flip or a quarter turn of the window changes."""

    def __init__(self, seed: int, shape=(1, 20, 20, 16)) -> None:
        super().__init__()
        self.w = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 0.05

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.w).sum(dim=(1, 2, 3, 4))
        return torch.stack([torch.zeros_like(s), s], 1)


def test_views_are_the_window_symmetries_in_the_documented_order():
    x = torch.zeros(1, 1, 20, 20, 16)
    x[0, 0, 2, 5, 7] = 1.0
    where = [tuple(int(v) for v in torch.nonzero(stage2_view(x, v)[0, 0])[0]) for v in STAGE2_VIEWS]
    assert where[:4] == [(2, 5, 7), (2, 5, 8), (17, 5, 7), (2, 14, 7)]  # the window, flipped along k, i, j
    assert len(set(where)) == 16 and all(stage2_view(x, v).shape == x.shape for v in STAGE2_VIEWS)
    assert {w[2] for w in where[:8]} == {7, 8} and {w[:2] for w in where[:8]} == {(2, 5), (17, 5), (2, 14), (17, 14)}


def test_views_average_every_cnn_over_flips_on_the_hard_candidates_only():
    g = torch.Generator().manual_seed(1)
    vol = torch.rand(1, 40, 40, 30, generator=g)
    centres = np.random.default_rng(1).integers(0, (40, 40, 30), (40, 3))
    nets = [_Linear(s) for s in range(3)]
    ident = [torch.nn.Identity()]
    plain = TwoStageCMBDetector(ident, nets[:1]).stage2_scores(vol, centres)
    t = float(plain.median())
    hard = plain >= t
    half = np.asarray((20, 20, 16)) // 2
    crops = torch.as_tensor(np.stack([crop_padded(vol.numpy(), c - half, (20, 20, 16)) for c in centres]))
    for n_views in (4, 16):
        det = TwoStageCMBDetector(ident, nets, cascade_size=1, cascade_threshold=t, views=n_views, stage2_batch=16)
        got = det.stage2_scores(vol, centres)
        want = torch.stack([torch.softmax(net(stage2_view(crops, v)), 1)[:, 1] for v in STAGE2_VIEWS[:n_views]
                            for net in nets]).mean(0)  # fmt: skip
        torch.testing.assert_close(got[hard], want[hard])
        torch.testing.assert_close(got[~hard], plain[~hard])  # the rest: the first CNN on the window as it is
        assert not torch.allclose(want[hard], TwoStageCMBDetector(ident, nets).stage2_scores(vol, centres)[hard])
    with pytest.raises(ValueError, match="views"):
        TwoStageCMBDetector(ident, nets, views=3)
    with pytest.raises(ValueError, match="square"):
        TwoStageCMBDetector(ident, nets, window_size=(20, 16, 16), views=16)
    assert TwoStageCMBDetector(ident, nets, window_size=(20, 16, 16), views=8).views == 8  # flips keep any window
