# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Speed of the VALDO importer on a crowded scan (not part of the test suite).

    python tests/benchmarks/bench_valdo_import.py [--repo CHECKOUT] [--lesions 1000]

Writes a Task 3 folder in the challenge's layout with one 256^3 subject (T1, T2, FLAIR) holding ``--lesions``
separate 2 x 2 x 2 lesions in two raters' masks (the second marks half of them), then times
``bundle.data.valdo.import_valdo`` on it (reading, labelling, records, writing), three times; ``--repo`` imports the
bundle of another checkout (e.g. the previous release) for a side-by-side figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_folder(root: Path, n: int) -> None:
    import nibabel as nib

    rng = np.random.default_rng(0)
    shape, affine, sid = (256, 256, 256), np.diag([1.0, 1.0, 1.0, 1.0]), "sub-301"
    d = root / sid
    d.mkdir(parents=True)
    grid = np.stack(np.meshgrid(*[np.arange(8, 248, 6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centres = grid[rng.choice(len(grid), n, replace=False)]
    r1 = np.zeros(shape, np.uint8)
    for c in centres:
        r1[c[0] : c[0] + 2, c[1] : c[1] + 2, c[2] : c[2] + 2] = 1
    r2 = r1.copy()
    r2[:128] = 0
    for mod in ("T1", "T2", "FLAIR"):
        image = nib.Nifti1Image(np.full(shape, 100, np.int16), affine)
        nib.save(image, str(d / f"{sid}_space-T1_desc-masked_{mod}.nii.gz"))
    for k, m in ((1, r1), (2, r2)):
        nib.save(nib.Nifti1Image(m, affine), str(d / f"{sid}_space-T1_desc-Rater{k}_Lacunes.nii.gz"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", default=str(Path(__file__).resolve().parents[2]))
    p.add_argument("--lesions", type=int, default=1000)
    a = p.parse_args()
    sys.path.insert(0, a.repo)
    from bundle.data.valdo import import_valdo

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "Task3"
        make_folder(root, a.lesions)
        seconds = []
        for r in range(3):
            t = time.perf_counter()
            path = import_valdo(3, root, Path(tmp) / f"out{r}")
            seconds.append(round(time.perf_counter() - t, 2))
        count = json.loads(path.read_text())["training"][0]["count"]
    print(json.dumps({"repo": a.repo, "lesions": count, "import_seconds": seconds}))


if __name__ == "__main__":
    main()
