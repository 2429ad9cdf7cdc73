# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Small helpers shared by components."""

from __future__ import annotations

__all__ = ["as_bool"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def as_bool(value, name: str = "value") -> bool:
    """A config flag as a bool: ``python -m monai.bundle run --flag false`` passes the *string* ``'false'``.

    Raises:
        ValueError: a string that is not one of true/false/yes/no/on/off/1/0 (any case).
    """
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE | _FALSE:
            return v in _TRUE
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)
