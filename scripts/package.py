# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Build the bundle zip the MONAI model-zoo way: ``<name>_v<version>.zip`` with one top-level ``<name>/`` folder.

``python -m scripts.package [--out dist]`` zips the files git tracks (configs, models, docs, the ``bundle``
package, licence and README), without ``tests/`` and ``.ci/``, so that
``python -m monai.bundle download --name brain_mri_eso_detection --version <version> --url file://<zip>`` unpacks a
bundle whose configs run from its own folder (``docs/README.md``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from bundle.data.io import atomic_path

__all__ = ["EXCLUDED", "bundle_files", "package"]

EXCLUDED = ("tests/", ".ci/", "scripts/", ".gitignore")


def bundle_files(root: str | Path = ".") -> list[str]:
    """Paths (relative to ``root``) of the git-tracked files that go into the zip."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise RuntimeError(f"{root} is not a git checkout: the zip holds the files git tracks ({err})") from err
    files = [f for f in out.decode().split("\0") if f]
    return sorted(f for f in files if not f.startswith(EXCLUDED) and (Path(root) / f).is_file())


def package(out_dir: str | Path = "dist", root: str | Path = ".") -> Path:
    """Write ``out_dir/<name>_v<version>.zip`` (atomically) and return its path.

    Raises:
        ValueError: ``configs/metadata.json``'s version differs from the package's ``__version__``.
    """
    from bundle import __version__

    root = Path(root)
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    name, version = meta["name"], meta["version"]
    if version != __version__:
        raise ValueError(f"configs/metadata.json has version {version}, the bundle package {__version__}")
    path = Path(out_dir) / f"{name}_v{version}.zip"
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for rel in bundle_files(root):
                zf.write(root / rel, f"{name}/{rel}")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="dist", help="folder of the zip (default: dist)")
    p.add_argument("--root", default=".", help="repository root (default: the current folder)")
    args = p.parse_args(argv)
    path = package(args.out, args.root)
    print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
