# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""``python -m bundle.evaluation``: see :mod:`bundle.evaluation.evaluate`."""

from __future__ import annotations

import sys

from .evaluate import main

__all__: list[str] = []

sys.exit(main())
