# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Finding the checkpoint a training run resumes from, the objects it holds, and the best-score state it must
carry."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["best_score_state", "in_checkpoint", "latest_checkpoint"]


def latest_checkpoint(folder: str | os.PathLike, prefix: str = "last") -> str | None:
    """Path of the newest ``<prefix>_checkpoint_epoch=N.pt`` (MONAI ``CheckpointSaver`` naming) in ``folder``.

    Returns:
        The path with the highest N, or None when the folder holds none (a fresh run).
    """
    pattern = re.compile(rf"{re.escape(prefix)}_checkpoint_epoch=(\d+)\.pt")
    found = []
    if Path(folder).is_dir():
        for p in Path(folder).iterdir():
            m = pattern.fullmatch(p.name)
            if m:
                found.append((int(m.group(1)), str(p)))
    return max(found)[1] if found else None


def best_score_state(saver):
    """The state (best score so far, its file) of a MONAI ``CheckpointSaver`` that keeps the best network by a key
    metric, as an object with ``state_dict``/``load_state_dict``: saved with the latest checkpoint and loaded on
    resume, so a resumed run does not forget its best score. MONAI keeps it in a private attribute; this is the one
    place that reads it.

    Raises:
        ValueError: the saver keeps no key-metric checkpoint (``save_key_metric`` not set).
    """
    state = getattr(saver, "_key_metric_checkpoint", None)
    if state is None:
        raise ValueError("the CheckpointSaver keeps no best-metric checkpoint: set save_key_metric: true")
    return state


def in_checkpoint(path: str | os.PathLike | None, objects: dict, optional=()) -> dict:
    """``objects`` to load from the checkpoint at ``path``, without the ``optional`` ones it does not hold (e.g. a
    learning-rate schedule added to the config after the checkpoint was written: the run resumes with the schedule
    at iteration 0 instead of failing). Every other object must be there, as MONAI's ``CheckpointLoader`` checks."""
    if path is None or not optional:
        return dict(objects)
    import torch

    held = set(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
    return {k: v for k, v in objects.items() if k in held or k not in set(optional)}

