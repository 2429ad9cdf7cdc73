# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Window sampling of the two-stage detector: padded crops, object centres, window kinds, targets, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import sphere

from bundle.transforms import RandWindowsd, crop_padded, object_centres


def test_crop_padded_matches_a_padded_slice():
    rng = np.random.default_rng(0)
    vol = rng.random((2, 9, 8, 7)).astype(np.float32)
    padded = np.pad(vol, ((0, 0), (5, 5), (5, 5), (5, 5)), constant_values=-1)
    for start in ([-3, 2, 4], [0, 0, 0], [6, -5, 5], [-10, -10, -10]):
        got = crop_padded(vol, start, (5, 4, 6), value=-1)
        s = np.asarray(start) + 5
        want = padded[:, s[0] : s[0] + 5, s[1] : s[1] + 4, s[2] : s[2] + 6] if s.min() >= 0 else None
        if want is not None:
            np.testing.assert_array_equal(got, want)
        else:
            assert (got == -1).all()
    assert crop_padded(vol, [-3, 2, 4], (5, 4, 6)).shape == (2, 5, 4, 6)


def test_object_centres_lie_inside_their_objects():
    label = np.zeros((30, 30, 30), np.int16)
    label[sphere(label.shape, (5, 6, 7), 2)] = 1
    ring = sphere(label.shape, (20, 20, 20), 6) & ~sphere(label.shape, (20, 20, 20), 4)  # centre of mass outside
    label[ring] = 2
    c = object_centres(label[None])
    assert c.tolist()[0] == [5, 6, 7]
    assert label[tuple(c[1])] == 2
    assert object_centres(np.zeros((4, 4, 4))).shape == (0, 3)


def _entry(with_objects=True, mimics=()):
    shape = (40, 40, 30)
    label = np.zeros(shape, np.int16)
    centres = np.zeros((0, 3), int)
    if with_objects:
        label[sphere(shape, (10, 12, 14), 1)] = 1
        label[sphere(shape, (30, 28, 15), 2)] = 2
        centres = object_centres(label)
    mask = np.zeros(shape, np.int16)
    mask[5:35, 5:35, 5:25] = 1
    image = np.random.default_rng(1).random(shape).astype(np.float32)
    return {
        "image": image[None],
        "label": label[None],
        "mask": mask[None],
        "centres": centres,
        "mined_mimics": np.asarray(mimics, int).reshape(-1, 3),
        "subject": "s1",
        "lesions": [{"id": 1}, {"id": 2}],  # must not travel into the windows (would not collate)
    }


def test_windows_are_centred_on_objects_with_small_shifts():
    d = _entry()
    t = RandWindowsd(["image", "label"], (20, 20, 16), num_samples=200, ratios=(1, 0, 0), max_shift=1)
    t.set_random_state(0)
    draws = t.randomize(d)
    offsets = np.array([c - d["centres"][np.argmin(np.abs(d["centres"] - c).sum(1))] for _, c, _, _ in draws])
    assert np.abs(offsets).max() == 1 and set(np.unique(offsets)) == {-1, 0, 1}
    t.set_random_state(0)
    wins = t(d)
    assert all(w["kind"] == "positive" and int(w["target"]) == 1 for w in wins)
    assert set(wins[0]) == {"image", "label", "target", "kind", "subject"}
    assert wins[0]["image"].shape == (1, 20, 20, 16) and wins[0]["label"].dtype.is_floating_point
    assert all(w["label"][0, 9:12, 9:12, 7:10].sum() > 0 for w in wins)  # the object sits at the centre


def test_window_kinds_follow_the_ratios_and_mimics_are_negatives():
    d = _entry(mimics=[[20, 20, 10], [25, 8, 12]])
    t = RandWindowsd(["image"], (20, 20, 16), num_samples=3000, ratios=(1, 1, 2), target_key="label")
    t.set_random_state(1)
    wins = t(d)
    kinds = np.array([w["kind"] for w in wins])
    frac = [np.mean(kinds == k) for k in RandWindowsd.KINDS]
    np.testing.assert_allclose(frac, [0.25, 0.25, 0.5], atol=0.03)
    targets = np.array([int(w["label"]) for w in wins])
    assert (targets[kinds == "positive"] == 1).all() and (targets[kinds == "mimic"] == 0).all()
    rnd = [w for w in wins if w["kind"] == "random"]
    assert 0 < np.mean([int(w["label"]) for w in rnd]) < 0.05  # random windows rarely hit the two small objects


def test_random_windows_stay_in_the_mask_and_scans_without_objects_work():
    d = _entry(with_objects=False)
    t = RandWindowsd(["image", "label"], (20, 20, 16), num_samples=500, ratios=(1, 1, 1))
    t.set_random_state(2)
    draws = t.randomize(d)
    assert {k for k, *_ in draws} == {"random"}  # no objects, no mimics: random windows only
    assert all(d["mask"][0][tuple(c)] for _, c, _, _ in draws)
    assert all(int(w["target"]) == 0 for w in t(d))


def test_augmentation_flips_and_rotates_the_window():
    d = _entry()
    plain = RandWindowsd(["image"], (20, 20, 16), num_samples=1, ratios=(1, 0, 0), max_shift=0)
    aug = RandWindowsd(["image"], (20, 20, 16), num_samples=200, ratios=(1, 0, 0), max_shift=0, augment=True)
    plain.set_random_state(3)
    aug.set_random_state(3)
    ref = plain(d)[0]["image"].numpy()
    variants = {w["image"].numpy().tobytes() for w in aug(d) if w["subject"]}
    variants_ref = set()
    for obj in range(2):
        d2 = dict(d, centres=d["centres"][obj : obj + 1])
        plain.set_random_state(3)
        base = plain(d2)[0]["image"].numpy()
        for k in range(4):
            for flips in np.ndindex(2, 2, 2):
                axes = tuple(1 + np.flatnonzero(flips))
                variants_ref.add(np.ascontiguousarray(np.rot90(np.flip(base, axes), k, (1, 2))).tobytes())
    # 8 flip patterns x 4 quarter turns give 16 distinct windows per object (a half turn is two flips)
    assert variants <= variants_ref and len(variants_ref) == 32 and len(variants) >= 28
    assert ref.shape == (1, 20, 20, 16)


def test_bad_ratios_are_rejected():
    with pytest.raises(ValueError, match="ratios"):
        RandWindowsd(["image"], ratios=(1, 1))
    with pytest.raises(ValueError, match="ratios"):
        RandWindowsd(["image"], ratios=(0, 0, 0))


def _tube_entry() -> dict:
    """A 13-voxel tube along i through (30, 30, 25) with its label: its direction in a window shows the rotation."""
    shape = (60, 60, 50)
    image, label = np.zeros((1, *shape), np.float32), np.zeros((1, *shape), np.int16)
    image[0, 24:37, 29:32, 24:27], label[0, 24:37, 29:32, 24:27] = 5.0, 1
    return {"image": image, "label": label, "centres": np.array([[30, 30, 25]]), "mask": np.ones_like(label)}


def _direction(w: np.ndarray) -> np.ndarray:
    pts = np.argwhere(w > 0.5).astype(float)
    return np.linalg.svd(pts - pts.mean(0), full_matrices=False)[2][0]


def test_affine_windows_rotate_and_scale_about_the_object():
    affine = {"rotate_range": [3.1416] * 3, "scale_range": [0.15] * 3}
    t = RandWindowsd(["image", "label"], (20, 20, 16), num_samples=40, ratios=(1, 0, 0), max_shift=0, affine=affine)
    t.set_random_state(0)
    wins = t(_tube_entry())
    dirs = np.array([_direction(w["label"][0].numpy()) for w in wins])
    for w in wins:
        lab, img = w["label"][0].numpy(), w["image"][0].numpy()
        assert lab.shape == (20, 20, 16) and set(np.unique(lab)) <= {0.0, 1.0}
        assert lab[10, 10, 8] == 1 and img[10, 10, 8] > 4.0  # the object stays on the window's centre voxel
        assert 0.55 * 117 < lab.sum() < 1.65 * 117  # the tube's 117 voxels, scaled by 0.85-1.15 per axis
        assert np.all(img[lab == 0] < 5.0 + 1e-4)  # image and label moved together (bilinear never overshoots)
    # directions spread over the sphere: no longer all along i, and many far from every scan axis
    assert np.abs(dirs[:, 0]).min() < 0.5 and (np.abs(dirs).max(1) < 0.9).mean() > 0.3
    t2 = RandWindowsd(["image", "label"], (20, 20, 16), num_samples=40, ratios=(1, 0, 0), max_shift=0, affine=affine)
    t2.set_random_state(0)
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(wins, t2(_tube_entry())))  # per seed


def test_intensity_augmentation_changes_the_image_not_the_label():
    plain = RandWindowsd(["image", "label"], (20, 20, 16), num_samples=60, ratios=(1, 0, 0), max_shift=0)
    aug = RandWindowsd(["image", "label"], (20, 20, 16), num_samples=60, ratios=(1, 0, 0), max_shift=0,
                       intensity=True)  # fmt: skip
    plain.set_random_state(1)
    aug.set_random_state(1)
    d = _tube_entry()
    d["image"] = d["image"] + np.random.default_rng(0).normal(0, 0.5, d["image"].shape).astype(np.float32)
    ref = plain(d)[0]
    ratios, blurred = [], 0
    for w in aug(d):
        np.testing.assert_array_equal(w["label"], ref["label"])
        img, base = w["image"][0].numpy(), ref["image"][0].numpy()
        if np.abs(np.diff(img, axis=0)).mean() < 0.8 * np.abs(np.diff(base, axis=0)).mean():
            blurred += 1
        else:  # the regression slope on the plain window: the contrast factor (noise adds no bias)
            ratios.append(np.polyfit(base.ravel(), img.ravel(), 1)[0])
    ratios = np.asarray(ratios)
    assert ratios.min() > 0.6 and ratios.max() < 1.45 and ratios.std() > 0.08  # contrast x 0.75-1.33 (+ noise)
    assert 5 <= blurred <= 40  # about a third of the windows are blurred


def test_slice_thickness_blurs_one_axis_by_the_slice_profile():
    """A point source: each window's spread along each axis is its simulated slice profile (0 on the others)."""
    image, label = np.zeros((1, 60, 60, 50), np.float32), np.zeros((1, 60, 60, 50), np.int16)
    image[0, 30, 30, 25], label[0, 30, 30, 25] = 1.0, 1
    d = {"image": image, "label": label, "centres": np.array([[30, 30, 25]]), "mask": np.ones_like(label)}
    t = RandWindowsd(["image", "label"], (20, 20, 16), num_samples=80, ratios=(1, 0, 0), max_shift=0,
                     slice_thickness=(2.0, 4.0))  # fmt: skip
    t.set_random_state(3)
    plain, axes = 0, []
    for w in t(d):
        img = w["image"][0].numpy()
        assert w["label"][0].sum() == 1 and abs(img.sum() - 1.0) < 1e-3  # the label stays; the signal is conserved
        grid = np.indices(img.shape).reshape(3, -1).astype(float)
        mean = grid @ img.ravel()
        var = ((grid - mean[:, None]) ** 2) @ img.ravel()
        if var.max() < 1e-6:
            plain += 1
            continue
        assert np.sum(var > 1e-6) == 1  # one axis only
        assert (4.0 - 1.0) / 12 - 0.01 < var.max() < (16.0 - 1.0) / 12 + 0.01  # box of 2-4 voxels less the voxel's
        axes.append(int(np.argmax(var)))
    assert 25 <= plain <= 55 and set(axes) == {0, 1, 2}  # half the windows, every axis
    with pytest.raises(ValueError, match="slice_thickness"):
        RandWindowsd(["image"], (20, 20, 16), slice_thickness=(0.5, 2.0))


def test_mimic_power_draws_hard_mimics_by_their_stage1_score():
    mimics = [[20, 20, 10], [25, 8, 12], [12, 30, 20]]
    d = _entry(mimics=mimics)
    d["mined_mimics_scores"] = np.array([1.0, 0.5, 0.25])
    counts = {}
    for power in (0.0, 2.0):
        t = RandWindowsd(["image"], (20, 20, 16), num_samples=6000, ratios=(0, 1, 0), mimic_power=power)
        t.set_random_state(3)
        picked = [int(np.argmin(np.abs(np.asarray(mimics) - c).sum(1))) for _, c, _, _ in t.randomize(d)]
        counts[power] = np.bincount(picked, minlength=3) / len(picked)
    np.testing.assert_allclose(counts[0.0], [1 / 3] * 3, atol=0.025)  # the paper's: uniform
    np.testing.assert_allclose(counts[2.0], np.array([1.0, 0.25, 0.0625]) / 1.3125, atol=0.025)  # ~ score ** 2
    t = RandWindowsd(["image"], (20, 20, 16), num_samples=4, ratios=(1, 1, 1), mimic_power=1.0)
    with pytest.raises(KeyError, match="mined_mimics_scores"):
        t.randomize(_entry(mimics=mimics))
    d["mined_mimics_scores"] = np.array([1.0, 0.5])
    with pytest.raises(ValueError, match="2 mimic scores"):
        t.randomize(d)
    with pytest.raises(ValueError, match="mimic_power"):
        RandWindowsd(["image"], (20, 20, 16), mimic_power=-1)
    assert RandWindowsd(["image"], (20, 20, 16), mimic_power=2.0).randomize(_entry()) is not None  # no mimics: fine


def test_replace_makes_a_variant_with_every_other_argument_kept():
    base = RandWindowsd(["image"], (12, 12, 8), num_samples=3, ratios=(1, 2, 1), augment=True, slice_thickness=(1, 3),
                        mimic_power=3.0, target_key="t")  # fmt: skip
    other = base.replace(mimic_power=0.0)
    assert other is not base and base.mimic_power == 3.0 and other.mimic_power == 0.0
    for name in ("size", "ratios"):
        np.testing.assert_array_equal(getattr(other, name), getattr(base, name))
    assert (other.num_samples, other.augment, other.slice_thickness, other.target_key, list(other.keys)) == (
        3, True, (1.0, 3.0), "t", ["image"])  # fmt: skip
    with pytest.raises(TypeError, match="mimic_powr"):
        base.replace(mimic_powr=0.0)

