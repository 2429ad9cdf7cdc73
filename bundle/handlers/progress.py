# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""A progress bar over the subjects of a long run (ignite's tqdm ``ProgressBar``), switchable from a config."""

from __future__ import annotations

from ignite.engine import Engine

__all__ = ["SubjectProgress"]


class SubjectProgress:
    """Attach ignite's ``ProgressBar`` (one step per iteration: one subject at batch size 1) unless disabled.

    Args:
        enabled: ``False`` (or the CLI's ``'false'``) attaches nothing.
        desc: the bar's label.
    """

    def __init__(self, enabled=True, desc: str = "subjects") -> None:
        from ..utils import as_bool

        self.enabled, self.desc = as_bool(enabled), desc

    def attach(self, engine: Engine) -> None:
        if self.enabled:
            from ignite.handlers import ProgressBar

            ProgressBar(persist=True, desc=self.desc).attach(engine)
