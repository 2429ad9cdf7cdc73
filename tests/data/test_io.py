# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Atomic writers: strict JSON, nothing left behind on failure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bundle.data.io import atomic_path, write_json


def test_json_is_strict(tmp_path):
    path = write_json({"a": float("nan"), "b": np.array([0.5, np.inf]), "c": np.int64(3)}, tmp_path / "x.json")
    assert json.loads(path.read_text()) == {"a": None, "b": [0.5, None], "c": 3}
    assert "NaN" not in path.read_text()


def test_failed_write_leaves_previous_file(tmp_path):
    target = tmp_path / "keep.json"
    target.write_text('{"old": true}')
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]  # no temporary file left


def test_interrupted_write_leaves_nothing(tmp_path):
    """Ctrl-C (KeyboardInterrupt, not an Exception) in the middle of a write: no temporary file, no target."""
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "out.nii.gz") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    from bundle.data.io import write_json

    old = os.umask(0o022)
    try:
        path = write_json({"a": 1}, tmp_path / "x.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by the group and others, like any new file
