# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The preprocessing cache holds plain data only: items round-trip with their affines, a second read comes from
disk, and a cache file crafted to run code when unpickled is refused and recomputed, never run."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from bundle.data.cache import PlainPersistentDataset


class Preprocess(MapTransform):
    calls: list = []

    def __init__(self):
        super().__init__(keys="image")

    def __call__(self, d):
        self.calls.append(d["subject"])
        affine = torch.diag(torch.tensor([0.5, 0.5, 2.0, 1.0], dtype=torch.float64))
        affine[:3, 3] = torch.tensor([-10.0, 4.0, 1.5], dtype=torch.float64)
        image = MetaTensor(torch.arange(24.0).reshape(1, 2, 3, 4) * d["scale"], affine=affine)
        image.meta["filename_or_obj"] = f"/data/{d['subject']}.nii.gz"
        return {"image": image, "centres": np.array([[1.0, 2.0, 3.0]]), "n": np.int64(3), "subject": d["subject"]}


class Payload:
    """Unpickling this creates ``marker``: what a crafted cache file could do if it were loaded as a pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_cache_round_trips_plain_data_and_refuses_crafted_files(tmp_path):
    Preprocess.calls = []
    data = [{"subject": "a", "scale": 1.0}, {"subject": "b", "scale": 2.0}]
    make = lambda: PlainPersistentDataset(data, transform=Preprocess(), cache_dir=tmp_path / "cache")  # noqa: E731
    first = [make()[i] for i in range(2)]
    second = [make()[i] for i in range(2)]
    assert Preprocess.calls == ["a", "b"]  # the second pass read the cache
    for one, two in zip(first, second):
        assert isinstance(two["image"], MetaTensor) and torch.equal(one["image"].as_tensor(), two["image"].as_tensor())
        assert torch.allclose(two["image"].affine, one["image"].affine)
        assert float(two["image"].affine[2, 2]) == 2.0 and float(two["image"].affine[0, 3]) == -10.0
        assert two["image"].meta["filename_or_obj"] == f"/data/{two['subject']}.nii.gz"
        assert np.allclose(np.asarray(two["centres"]), [[1.0, 2.0, 3.0]]) and int(two["n"]) == 3
    files = sorted((tmp_path / "cache").glob("*.pt"))
    assert len(files) == 2
    for f in files:
        torch.load(f, weights_only=True)  # plain data: loads without any allowed global
    marker = tmp_path / "ran_code"
    with open(files[0], "wb") as f:
        pickle.dump({"image": Payload(marker)}, f)
    with pytest.warns(UserWarning, match="Corrupt cache file"):
        again = [make()[i] for i in range(2)]
    assert not marker.exists()  # the crafted file was never unpickled
    assert len(Preprocess.calls) == 3  # its subject was preprocessed again
    assert sorted(torch.equal(x["image"].as_tensor(), y["image"].as_tensor()) for x, y in zip(first, again)) == [
        True, True
    ]


def test_cache_refuses_meta_and_pickle_settings():
    with pytest.raises(TypeError, match="sets weights_only itself"):
        PlainPersistentDataset([], transform=Preprocess(), cache_dir=None, weights_only=False)
