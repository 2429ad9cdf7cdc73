# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Start-up cost: the command-line tools answer ``--help`` without importing torch or MONAI (seconds each here), and
every lazily exported name of a package resolves (``bundle._lazy``)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest
from conftest import REPO

HEAVY = ("torch", "monai", "SimpleITK", "matplotlib")
PROBE = (
    "import json, runpy, sys; sys.argv = [sys.argv[1], '--help']\n"
    "try:\n    runpy.run_module(sys.argv[0], run_name='__main__')\nexcept SystemExit:\n    pass\n"
    f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
)


@pytest.mark.parametrize(
    "module",
    ["bundle.evaluation", "bundle.data.validate", "bundle.data.valdo", "bundle.data.plan", "bundle.data.synth"],
)
def test_help_imports_no_heavy_library(module):
    res = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert "usage:" in res.stdout and json.loads(lines[-1]) == []


@pytest.mark.parametrize("package", ["bundle.data", "bundle.metrics", "bundle.inference", "bundle.data.synth"])
def test_every_lazy_name_resolves_to_its_submodules_object(package):
    mod = importlib.import_module(package)
    assert mod.__all__ and set(mod.__all__) <= set(dir(mod))
    for name in mod.__all__:
        getattr(mod, name)  # a name mapped to the wrong submodule raises here
        assert name in vars(mod)  # and is kept on the package once read
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        mod.not_a_name
