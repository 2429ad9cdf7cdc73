# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""brain_mri_eso_detection: MONAI bundle components for extremely small objects in brain MRI.

Subpackages load on first use (``bundle.data``, ``bundle.transforms``, ...), so ``import bundle`` stays light and
config expressions such as ``$bundle.data.load_datalist(...)`` work after a plain ``$import bundle``.
"""

from __future__ import annotations

import importlib

__version__ = "0.39.0"
__all__ = ["__version__"]

_SUBPACKAGES = {
    "data",
    "engines",
    "evaluation",
    "handlers",
    "inference",
    "losses",
    "methods",
    "metrics",
    "transforms",
    "utils",
}


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
