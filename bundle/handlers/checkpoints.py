# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Finding the checkpoint a training run resumes from."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["latest_checkpoint"]


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
