# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The checkpoint a training run resumes from."""

from __future__ import annotations

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
