# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Packages whose public names load their submodule on first use (PEP 562), so that a command imports only what it
uses: ``python -m bundle.evaluation --help`` does not import torch or MONAI."""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_exports(package: str, modules: dict[str, tuple[str, ...]]) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``: each name of ``modules[submodule]`` is imported from
    ``package.submodule`` when first read, then kept on the package."""
    where = {name: sub for sub, names in modules.items() for name in names}

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(where) | set(vars(sys.modules[package])))

    return __getattr__, __dir__, sorted(where)
