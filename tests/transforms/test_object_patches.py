# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Object-holding patches of the U-Net trainings: every patch holds its object; classes drawn by their ratios."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bundle.transforms import RandCropAroundObjectd


def volume():
    """Instance map with 30 one-voxel objects of class 1 and 2 of class 2 (3 voxels each) far from them (no 8-voxel
    patch holds both classes), and its class codes."""
    inst = np.zeros((40, 40, 40), np.int64)
    cls = np.zeros_like(inst)
    rng = np.random.default_rng(0)
    for k, (i, j, m) in enumerate(rng.integers(2, 18, size=(30, 3)), start=1):
        inst[i, j, m], cls[i, j, m] = k, 1
    for k, i in ((31, 30), (32, 36)):
        inst[i, 32:35, 35], cls[i, 32:35, 35] = k, 2
    return {"image": torch.as_tensor(inst[None] * 1.0), "label": torch.as_tensor(cls[None]),
            "instances": torch.as_tensor(inst[None])}  # fmt: skip


def drawn_classes(**kwargs) -> np.ndarray:
    """The class of each patch's drawn object (a patch holds objects of one class only)."""
    t = RandCropAroundObjectd(keys=["image", "label", "instances"], label_key="instances", spatial_size=(8, 8, 8),
                              num_samples=400, **kwargs)  # fmt: skip
    t.set_random_state(0)
    patches = t(volume())
    assert all(p["instances"].max() > 0 for p in patches)  # every patch holds an object
    assert not any((p["label"] == 1).any() and (p["label"] == 2).any() for p in patches)
    return np.array([int(p["label"].max()) for p in patches])


def test_uniform_draws_follow_the_objects_and_ratios_follow_the_classes():
    uniform = (drawn_classes() == 2).mean()
    assert uniform < 0.15  # 2 of 32 objects: about 6 % of the patches
    balanced = (drawn_classes(class_key="label", ratios=[1, 1]) == 2).mean()
    assert 0.4 < balanced < 0.6
    quarter = (drawn_classes(class_key="label", ratios=[3, 1]) == 2).mean()
    assert 0.18 < quarter < 0.33


def test_object_weights_share_the_ratios_over_the_classes_present():
    t = RandCropAroundObjectd(keys=["image"], label_key="instances", spatial_size=(8, 8, 8), class_key="label",
                              ratios=[3, 1])  # fmt: skip
    w = t.object_weights(np.arange(1, 4), np.array([1, 1, 2]))
    np.testing.assert_allclose(w, [3 / 8, 3 / 8, 1 / 4])  # 3/4 over two EPVS, 1/4 to the one lacune
    only_first = RandCropAroundObjectd(keys=["image"], label_key="instances", spatial_size=(8, 8, 8),
                                       class_key="label", ratios=[1, 0])  # fmt: skip
    np.testing.assert_allclose(only_first.object_weights(np.arange(1, 3), np.array([1, 2])), [1, 0])
    np.testing.assert_allclose(t.object_weights(np.arange(1, 3), np.array([2, 2])), [0.5, 0.5])  # only lacunes
    with pytest.raises(ValueError, match="one ratio each"):
        t.object_weights(np.arange(1, 3), np.array([1, 3]))
    with pytest.raises(ValueError, match="non-negative"):
        RandCropAroundObjectd(keys=["image"], label_key="instances", spatial_size=(8, 8, 8), class_key="label",
                              ratios=[1, -1])  # fmt: skip
    with pytest.raises(ValueError, match="need class_key"):
        RandCropAroundObjectd(keys=["image"], label_key="instances", spatial_size=(8, 8, 8), ratios=[1, 1])


def test_a_volume_thinner_than_the_patch_is_padded_with_its_maps():
    # regression guard for the padding of the maps the draw reads (kept aligned with the cropped keys)
    d = volume()
    d = {k: v[..., 33:37] for k, v in d.items()}  # 4 slices, holding the two class-2 objects only
    t = RandCropAroundObjectd(keys=["image"], label_key="instances", spatial_size=(8, 8, 8), num_samples=20,
                              class_key="label", ratios=[3, 1])  # fmt: skip
    t.set_random_state(0)
    patches = t(d)
    assert all(tuple(p["image"].shape) == (1, 8, 8, 8) and p["image"].max() > 0 for p in patches)


def test_a_scan_without_objects_gives_patches_anywhere():
    d = volume()
    d["instances"] = torch.zeros_like(d["instances"])
    d["label"] = torch.zeros_like(d["label"])
    t = RandCropAroundObjectd(keys=["image", "label", "instances"], label_key="instances", spatial_size=(8, 8, 8),
                              num_samples=5, class_key="label", ratios=[3, 1])  # fmt: skip
    patches = t(d)
    assert len(patches) == 5 and all(tuple(p["image"].shape) == (1, 8, 8, 8) for p in patches)
