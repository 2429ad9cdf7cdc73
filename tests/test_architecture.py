# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The layering rules of ``docs/architecture.md``, checked on the package's source: every import (module level or
inside a function) is resolved, then the core must not import a method, a method not another method, a method's
``networks`` module (or package) nothing but networks, ``bundle.utils`` and the data model's vocabulary; no import
cycle may exist; modules and functions stay short."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "bundle"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60
LEAVES = ("bundle", "bundle.utils", "bundle.data.vocabulary")  # what networks may import besides networks


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(root.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in its body (``from X import name`` counts X.name when
    that is a module, else X; a package's ``lazy_exports`` mapping counts its submodules)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "bundle"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            if src.split(".")[0] != "bundle":
                continue
            subs = {f"{src}.{a.name}" for a in node.names} & known
            found |= subs or {src}
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "lazy_exports":  # bundle._lazy
            mapping = next((a for a in node.args if isinstance(a, ast.Dict)), None)
            found |= {f"{package}.{k.value}" for k in (mapping.keys if mapping else []) if isinstance(k, ast.Constant)}
    return {m for m in found if m in known and m != name}


def missing(root: Path = PACKAGE) -> list[str]:
    """Imports of package modules that do not exist (e.g. a relative import left behind by a move)."""
    mods = modules(root)
    known = set(mods)
    out = []
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")
                src = ".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))
                if src not in known:
                    out.append(f"{name} (line {node.lineno}): {src}")
    return out


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    mods = modules(root)
    return {m: imports_of(p, set(mods)) for m, p in mods.items()}


def method_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "methods" else None


def _in_networks(module: str) -> bool:
    return "networks" in module.split(".")


def violations(g: dict[str, set[str]]) -> list[str]:
    """Every import that breaks a layering rule, as ``importer -> imported: rule``."""
    out = []
    for mod, deps in sorted(g.items()):
        own = method_of(mod)
        for dep in sorted(deps):
            other = method_of(dep)
            if own is None and mod != "bundle.methods" and dep.startswith("bundle.methods"):
                out.append(f"{mod} -> {dep}: the core imports a method")
            elif own and other and other != own:
                out.append(f"{mod} -> {dep}: a method imports another method")
            elif _in_networks(mod) and not _in_networks(dep) and dep not in LEAVES:
                out.append(f"{mod} -> {dep}: a networks module imports non-network code")
    return out


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles; a package's ``__init__`` importing its own submodules is not one (Python resolves that)."""

    def deps(m: str) -> set[str]:
        return {d for d in g[m] if not m.startswith(d + ".")}  # a submodule importing its package's names

    found, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(deps(m)):
            if state.get(d) == 1:
                found.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    return found


def long_code(root: Path = PACKAGE) -> list[str]:
    out = []
    for mod, path in modules(root).items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            out.append(f"{mod}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(f"{mod}.{node.name} (line {node.lineno}): {n} lines")
    return out


def test_the_layers_hold():
    assert violations(graph()) == []


def test_every_relative_import_names_a_module_of_the_package():
    assert missing() == []


def test_there_is_no_import_cycle():
    assert cycles(graph()) == []


def test_modules_and_functions_stay_short():
    assert long_code() == []


def test_every_method_has_its_package_config_folder_and_doc():
    from bundle.methods import METHODS

    for method in METHODS:
        assert (PACKAGE / "methods" / method / "__init__.py").is_file(), method
        assert (REPO / "configs" / method).is_dir(), method
        assert (REPO / "docs" / f"{method}.md").is_file(), method


def _planted(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path / "bundle"


@pytest.mark.parametrize(
    "files, rule",
    [
        ({"bundle/metrics/a.py": "from ..methods.rcnn import b\n"}, "the core imports a method"),
        ({"bundle/methods/gpunet/x.py": "def f():\n    from ..rcnn import b\n"}, "a method imports another method"),
        ({"bundle/methods/rcnn/networks.py": "from ...inference import c\n"}, "networks module imports non-network"),
    ],
)
def test_a_planted_violation_is_found(tmp_path, monkeypatch, files, rule):
    base = {
        "bundle/__init__.py": "",
        "bundle/metrics/__init__.py": "",
        "bundle/inference/__init__.py": "",
        "bundle/inference/c.py": "",
        "bundle/methods/__init__.py": "",
        "bundle/methods/rcnn/__init__.py": "",
        "bundle/methods/rcnn/b.py": "",
        "bundle/methods/gpunet/__init__.py": "",
    }
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    root = _planted(tmp_path, {**base, **files})
    found = violations(graph(root))
    assert len(found) == 1 and rule in found[0], found


def test_a_planted_cycle_and_long_function_are_found(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    long_body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    root = _planted(tmp_path, {
        "bundle/__init__.py": "",
        "bundle/data/__init__.py": "",
        "bundle/data/a.py": "from . import b\n",
        "bundle/data/b.py": "def f():\n    from .a import g\n" + long_body,
    })  # fmt: skip
    assert cycles(graph(root)) == [["bundle.data.a", "bundle.data.b", "bundle.data.a"]]
    assert long_code(root) == [f"bundle.data.b.f (line 1): {MAX_FUNCTION_LINES + 2} lines"]
