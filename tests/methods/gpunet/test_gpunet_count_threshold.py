# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Count-matched thresholding (GP-Unet): exactly the predicted number of components on constructed heatmaps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from bundle.methods.gpunet import count_matched_objects


def _blobs(peaks, shape=(24, 24, 24), sigma=1.2):
    """Sum of Gaussian blobs: peaks is a list of ((i, j, k), height)."""
    out = np.zeros(shape)
    grid = np.indices(shape).astype(float)
    for centre, height in peaks:
        d2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
        out += height * np.exp(-d2 / (2 * sigma**2))
    return out


PEAKS = [((5, 5, 5), 5.0), ((5, 18, 5), 4.0), ((18, 5, 12), 3.0), ((18, 18, 18), 2.0), ((12, 12, 3), 1.0)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_returns_exactly_n_components_best_peaks_first(n):
    heat = _blobs(PEAKS)
    inst, thr = count_matched_objects(heat, n)
    assert inst.max() == n and len(np.unique(inst[inst > 0])) == n
    _, k = ndi.label(inst > 0, np.ones((3, 3, 3)))
    assert k == n  # the kept components do not touch
    for obj in range(1, n + 1):  # object ids follow the peaks' order: id 1 holds the highest peak
        centre, height = PEAKS[obj - 1]
        assert inst[centre] == obj
    assert thr == pytest.approx(PEAKS[n - 1][1], rel=1e-6)  # the highest level giving n components: the n-th peak


def test_count_zero_gives_no_object():
    inst, thr = count_matched_objects(_blobs(PEAKS), 0)
    assert inst.max() == 0 and thr == float("inf")


def test_ties_give_exactly_n_components_in_c_order():
    # three peaks of the same height: thresholding alone gives 0 or 3 components, never 1 or 2
    heat = _blobs([((5, 18, 5), 2.0), ((5, 5, 5), 2.0), ((18, 5, 12), 2.0)])
    inst, _ = count_matched_objects(heat, 2)
    assert inst.max() == 2 and len(np.unique(inst[inst > 0])) == 2
    assert inst[5, 5, 5] == 1 and inst[5, 18, 5] == 2 and inst[18, 5, 12] == 0  # equal peaks: C order
    inst, _ = count_matched_objects(heat, 1)
    assert inst.max() == 1 and inst[5, 5, 5] == 1
    # a flat plateau of equal values counts once
    flat = np.zeros((10, 10, 10))
    flat[2:4, 2:4, 2:4] = 1.0
    flat[6:8, 6:8, 6:8] = 1.0
    inst, _ = count_matched_objects(flat, 1)
    assert inst.max() == 1 and (inst == 1).sum() == 8


def test_merging_peaks_use_the_highest_level_with_n_components():
    # two close peaks merge below their saddle: at 2 objects the threshold sits at the lower peak
    heat = _blobs([((8, 8, 8), 3.0), ((8, 8, 12), 2.9), ((20, 20, 20), 1.0)], shape=(24, 24, 24), sigma=1.5)
    inst, thr = count_matched_objects(heat, 2)
    assert inst.max() == 2 and thr == pytest.approx(heat[8, 8, 12], rel=1e-9)
    assert inst[8, 8, 8] == 1 and inst[8, 8, 12] == 2
    # the third peak (1.0) lies below the saddle of the first two: no level has 3 components, so the highest level
    # with the most (2) is returned
    inst, _ = count_matched_objects(heat, 3)
    assert inst.max() == 2 and inst[20, 20, 20] == 0


def test_more_objects_than_maxima_returns_every_component():
    heat = _blobs(PEAKS[:2])
    inst, _ = count_matched_objects(heat, 7)
    assert inst.max() == 2


def test_mask_restricts_the_components():
    heat = _blobs(PEAKS)
    mask = np.zeros(heat.shape, bool)
    mask[12:, :, :] = True  # only the peaks at i = 18 and 12
    inst, _ = count_matched_objects(heat, 2, mask)
    assert inst.max() == 2 and not inst[~mask].any()
    assert inst[18, 5, 12] == 1 and inst[18, 18, 18] == 2


def test_non_box_mask_excludes_peaks_inside_its_bounding_box():
    """An L-shaped ROI whose bounding box is the whole volume: the highest peak lies outside the L."""
    heat = _blobs(PEAKS)
    mask = np.ones(heat.shape, bool)
    mask[:12, :12, :] = False  # holds the peak at (5, 5, 5) only
    inst, _ = count_matched_objects(heat, 2, mask)
    assert not inst[~mask].any() and inst[5, 18, 5] == 1 and inst[18, 5, 12] == 2


def test_errors():
    with pytest.raises(ValueError, match="3D"):
        count_matched_objects(np.zeros((4, 4)), 1)
    with pytest.raises(ValueError, match="non-negative integer"):
        count_matched_objects(np.zeros((4, 4, 4)), 1.5)
    with pytest.raises(ValueError, match="mask shape"):
        count_matched_objects(np.zeros((4, 4, 4)), 1, np.ones((4, 4, 3)))


# -- blobs = "basins": components split at saddles ------------------------------------------------------------------
TOUCHING = [((8, 8, 8), 3.0), ((8, 8, 12), 2.9), ((8, 16, 8), 2.0), ((18, 18, 18), 1.0)]


def test_basins_keep_touching_lesions_apart():
    # the first two peaks are 4 voxels apart: their blobs merge (saddle ~2.4) above the third peak (2.0), so
    # connected components can never give 4 objects, while basins give exactly n for every n, one peak per blob
    heat = _blobs(TOUCHING, sigma=1.5)
    comp, _ = count_matched_objects(heat, 4)
    assert comp.max() == 3
    maxima = np.argwhere(heat == ndi.maximum_filter(heat, size=3))
    maxima = maxima[np.argsort(-heat[tuple(maxima.T)])]
    assert len(maxima) == 4 and all(np.abs(m - c).max() <= 1 for m, (c, _) in zip(maxima, TOUCHING))
    for n in range(1, 5):
        inst, thr = count_matched_objects(heat, n, blobs="basins")
        assert sorted(np.unique(inst[inst > 0])) == list(range(1, n + 1))
        for obj in range(1, n + 1):  # id k holds the k-th highest maximum, and each blob is one connected piece
            assert inst[tuple(maxima[obj - 1])] == obj
            assert ndi.label(inst == obj, np.ones((3, 3, 3)))[1] == 1
        assert thr == pytest.approx(heat[tuple(maxima[n - 1])], rel=1e-12)  # the n-th highest maximum
        assert (heat[inst > 0] >= thr).all() and not ((heat >= thr) & (inst == 0)).any()  # cut at the threshold
    inst, _ = count_matched_objects(heat, 2, blobs="basins")
    # the saddle between the touching peaks separates them: every voxel of blob 2 is nearer its own peak
    centre2 = np.array(TOUCHING[1][0])
    vox = np.argwhere(inst == 2)
    assert (np.linalg.norm(vox - centre2, axis=1) <= np.linalg.norm(vox - np.array(TOUCHING[0][0]), axis=1)).all()


def test_basins_count_every_local_maximum_of_a_random_map():
    rng = np.random.default_rng(3)
    heat = ndi.gaussian_filter(rng.random((20, 18, 16)), 1.5)
    is_max = heat == ndi.maximum_filter(heat, size=3, mode="constant", cval=-np.inf)
    maxima = int(is_max.sum())
    assert maxima > 10
    for n in (1, 5, maxima, maxima + 10):
        inst, thr = count_matched_objects(heat, n, blobs="basins")
        assert inst.max() == min(n, maxima)
        assert thr == np.sort(heat[is_max])[::-1][min(n, maxima) - 1] == heat[inst > 0].min()
        assert (ndi.sum(is_max, inst, range(1, inst.max() + 1)) == 1).all()  # one local maximum per blob


def test_basins_ties_zero_count_and_mask():
    heat = _blobs([((5, 18, 5), 2.0), ((5, 5, 5), 2.0), ((18, 5, 12), 2.0)])
    inst, _ = count_matched_objects(heat, 2, blobs="basins")
    assert inst[5, 5, 5] == 1 and inst[5, 18, 5] == 2 and inst[18, 5, 12] == 0  # equal peaks: C order
    flat = np.zeros((10, 10, 10))
    flat[2:4, 2:4, 2:4] = 1.0  # a box-shaped plateau has one maximum
    inst, thr = count_matched_objects(flat, 1, blobs="basins")
    assert thr == 1.0 and (inst == 1).sum() == 8
    inst, thr = count_matched_objects(heat, 0, blobs="basins")
    assert inst.max() == 0 and thr == float("inf")
    mask = np.zeros(heat.shape, bool)
    mask[12:] = True
    inst, _ = count_matched_objects(heat, 3, mask, blobs="basins")
    assert not inst[~mask].any() and inst[18, 5, 12] == 1
    with pytest.raises(ValueError, match="blobs"):
        count_matched_objects(heat, 1, blobs="peaks")
