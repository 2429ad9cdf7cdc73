# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Missing modalities: channels put in place, availability channels, random modality drop, absent channels kept
at zero by the bias correction and the normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from bundle.transforms import (
    SUBSETS_T1_T2_FLAIR,
    AvailabilityChannelsd,
    HistogramPeakNormalize,
    ModalityChannelsd,
    N4BiasFieldCorrection,
    PerModalityd,
    RandModalityDropd,
)

MODS = ["t1", "t2", "flair"]


def _image(values):
    img = torch.stack([torch.full((6, 5, 4), float(v)) for v in values])
    return MetaTensor(img, affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))


def test_channels_go_to_their_modality_and_flags_follow():
    d = ModalityChannelsd("image", MODS)({"image": _image([7, 9]), "modalities": ["t1", "flair"], "subject": "s"})
    assert d["image"].shape[0] == 3 and [float(d["image"][c].mean()) for c in range(3)] == [7.0, 0.0, 9.0]
    assert d["available"].tolist() == [1.0, 0.0, 1.0]
    assert torch.equal(d["image"].affine, _image([1]).affine)
    d = AvailabilityChannelsd("image")(d)
    assert d["image"].shape[0] == 6 and [float(d["image"][c].mean()) for c in range(3, 6)] == [1.0, 0.0, 1.0]
    full = ModalityChannelsd("image", MODS)({"image": _image([1, 2, 3]), "subject": "s"})  # no key: all present
    assert full["available"].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match=r"s: modalities \['dwi'\] are not among"):
        ModalityChannelsd("image", MODS)({"image": _image([1]), "modalities": ["dwi"], "subject": "s"})
    with pytest.raises(ValueError, match="s: 2 image channels for the modalities"):
        ModalityChannelsd("image", MODS)({"image": _image([1, 2]), "modalities": ["t2"], "subject": "s"})


def test_random_drop_keeps_one_allowed_subset_of_what_is_there():
    drop = RandModalityDropd("image", 3, prob=1.0)
    drop.set_random_state(0)
    seen = set()
    for _ in range(200):
        img = AvailabilityChannelsd("image")({"image": _image([1, 2, 3]), "available": [1, 1, 1]})["image"]
        out = drop({"image": img})["image"]
        kept = tuple(c for c in range(3) if float(out[3 + c].max()) > 0.5)
        assert kept in SUBSETS_T1_T2_FLAIR
        assert all(float(out[c].abs().max()) == (0.0 if c not in kept else c + 1.0) for c in range(3))
        seen.add(kept)
    assert seen == set(SUBSETS_T1_T2_FLAIR)  # every subset is drawn
    t1_flair = AvailabilityChannelsd("image")({"image": _image([1, 0, 3]), "available": [1, 0, 1]})["image"]
    for _ in range(50):  # only subsets of what the scan has: T1 + FLAIR, T1 alone or FLAIR alone
        out = drop({"image": t1_flair})["image"]
        assert tuple(c for c in range(3) if float(out[3 + c].max()) > 0.5) in {(0, 2), (0,), (2,)}
    never = RandModalityDropd("image", 3, prob=0.0)
    img = AvailabilityChannelsd("image")({"image": _image([1, 2, 3]), "available": [1, 1, 1]})["image"]
    assert torch.equal(never({"image": img})["image"], img)


def test_absent_channels_stay_zero_through_bias_correction_and_normalisation():
    rng = np.random.default_rng(0)
    arr = np.zeros((2, 24, 24, 24), np.float32)
    arr[0, 4:20, 4:20, 4:20] = rng.uniform(80, 120, (16, 16, 16))
    img = MetaTensor(torch.from_numpy(arr))
    brain = torch.from_numpy(arr[:1] > 0).float()
    corrected = N4BiasFieldCorrection(shrink_factor=2, iterations=(5,))(img, brain)
    assert not np.asarray(corrected[1]).any() and np.asarray(corrected[0]).max() > 0
    assert np.isfinite(np.asarray(corrected)).all()
    out = HistogramPeakNormalize()(corrected, brain)
    assert not np.asarray(out[1]).any() and 0.3 < float(np.median(np.asarray(out[0])[4:20, 4:20, 4:20])) < 0.7


def _structural_augmentation():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(["configs/common.yaml", "configs/unet/train.yaml", "configs/unet/structural.yaml"])
    return parser.get_parsed_content("modality_augmentation")


def test_per_modality_augmentation_leaves_absent_channels_and_flags_alone():
    """The structural detector's training augmentation (the real config): each present modality gets its own draw,
    an absent one stays all zeros, the availability channels are untouched; the same seed gives the same result."""
    rng = np.random.default_rng(0)
    base = torch.as_tensor(rng.uniform(0.2, 1.0, (1, 12, 12, 12)), dtype=torch.float32)
    t1_flair = {"image": MetaTensor(torch.cat([base, 0 * base, base])), "available": [1, 0, 1]}
    img = AvailabilityChannelsd("image")(t1_flair)["image"]
    aug = PerModalityd("image", 3, _structural_augmentation())
    aug.set_random_state(3)
    outs = [aug({"image": img})["image"] for _ in range(20)]
    for out in outs:
        assert float(out[1].abs().max()) == 0.0  # T2 absent: no noise, no contrast curve
        assert torch.equal(out[3:], img[3:])  # flags as they were
        assert torch.isfinite(out).all()
    changed = [not torch.allclose(o[c], img[c]) for o in outs for c in (0, 2)]
    assert 10 < sum(changed) < 40  # each present channel is changed in some draws, not all
    assert sum(not torch.allclose(o[0], o[2]) for o in outs) >= 10  # T1 and FLAIR drawn separately
    again = PerModalityd("image", 3, _structural_augmentation())
    again.set_random_state(3)
    assert all(torch.equal(again({"image": img})["image"], o) for o in outs)
    with pytest.raises(ValueError, match="4 channels, expected 3 images"):
        aug({"image": img[:4]})
