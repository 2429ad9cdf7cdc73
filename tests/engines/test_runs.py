# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import torch
from monai.data import Dataset
from torch import nn

from bundle.engines import preprocessed, save_state


def test_preprocessed_runs_the_transforms_once_per_item_in_order():
    calls = []

    def double(item):
        calls.append(item["n"])
        return {"n": item["n"], "x": torch.full((2,), float(item["n"]) * 2)}

    items = preprocessed(Dataset([{"n": n} for n in range(4)], transform=double), num_workers=0)
    assert [i["n"] for i in items] == [0, 1, 2, 3] and calls == [0, 1, 2, 3]
    assert items[3]["x"].tolist() == [6.0, 6.0]  # as the transform left it: no batching, no collation


def test_save_state_writes_the_state_dict_atomically(tmp_path):
    net = nn.Linear(2, 1)
    path = save_state(net, tmp_path / "sub" / "net.pt")
    loaded = torch.load(path, weights_only=True)
    assert set(loaded) == {"weight", "bias"} and torch.equal(loaded["weight"], net.weight.detach())
    assert [p.name for p in path.parent.iterdir()] == ["net.pt"]  # no temporary file left behind
