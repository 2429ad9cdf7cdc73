# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The checkpoint a training run resumes from."""

from __future__ import annotations

import math

import pytest

from bundle.handlers import latest_checkpoint


def test_latest_checkpoint_picks_highest_epoch(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    for name in (
        "last_checkpoint_epoch=2.pt",
        "last_checkpoint_epoch=10.pt",
        "best_network.pt",
        "other_checkpoint_epoch=99.pt",
    ):
        (tmp_path / name).write_bytes(b"")
    assert latest_checkpoint(tmp_path).endswith("last_checkpoint_epoch=10.pt")  # numeric, not alphabetical order


def test_best_score_state_is_the_savers_key_metric_state_and_missing_one_is_named(tmp_path):
    from monai.handlers import CheckpointSaver
    from torch import nn

    from bundle.handlers import best_score_state

    net = nn.Linear(1, 1)
    saver = CheckpointSaver(str(tmp_path), {"network": net}, save_key_metric=True, key_metric_n_saved=1)
    state = best_score_state(saver)
    assert dict(state.state_dict()) == {"_saved": []}  # nothing saved yet; a resumed run loads its list back
    state.load_state_dict({"_saved": [("net_key_metric=0.7.pt", 0.7)]})
    assert best_score_state(saver).state_dict()["_saved"][0][1] == 0.7
    with pytest.raises(ValueError, match="save_key_metric"):
        best_score_state(CheckpointSaver(str(tmp_path), {"network": net}, save_final=True))


def test_in_checkpoint_drops_only_optional_objects_the_checkpoint_lacks(tmp_path):
    import torch

    from bundle.handlers import in_checkpoint

    path = tmp_path / "last_checkpoint_epoch=1.pt"
    torch.save({"network": {"w": torch.ones(1)}, "optimizer": {}}, path)  # written before the schedule existed
    objects = {"network": 1, "optimizer": 2, "lr_scheduler": 3, "trainer": 4}
    assert in_checkpoint(path, objects, optional=["lr_scheduler"]) == {"network": 1, "optimizer": 2, "trainer": 4}
    assert in_checkpoint(path, objects) == objects  # required ones stay: MONAI's loader names what is missing
    assert in_checkpoint(None, objects, optional=["lr_scheduler"]) == objects  # a fresh run
    torch.save({"network": {}, "lr_scheduler": {"last_epoch": 3}}, path)
    assert in_checkpoint(path, objects, optional=["lr_scheduler"]) == objects


def test_lr_factor_cosine_anneals_to_zero_and_a_resumed_longer_run_follows_the_new_length():
    import torch

    from bundle.utils import lr_factor

    assert [lr_factor("constant", 4)(i) for i in (0, 3, 9)] == [1.0, 1.0, 1.0]
    f = lr_factor("cosine", "4")  # the MONAI CLI passes numbers as strings
    assert [round(f(i), 6) for i in (0, 2, 4, 6)] == [1.0, 0.5, 0.0, 0.0]  # then 0 past the end (whole epochs)
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_factor("step", 4)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor("cosine", 4))
    for _ in range(2):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    longer = torch.optim.lr_scheduler.LambdaLR(opt2, lr_factor("cosine", 8))
    longer.load_state_dict(state)  # resumed at iteration 2 of a run extended to 8 iterations
    opt2.step()
    longer.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 8)))
