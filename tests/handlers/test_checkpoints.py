# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The checkpoint a training run resumes from."""

from __future__ import annotations

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
