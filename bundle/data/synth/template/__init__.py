# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Vendored ICBM152 2009a tissue maps (see LICENSE_ICBM152.txt) and the script that derived them."""

from __future__ import annotations

__all__: list[str] = []
