# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Derive the vendored tissue maps ``mni152_2009a_tissue.npz`` from the ICBM 2009a template.

Run once by a maintainer; the simulator only reads the ``.npz``. The inputs are the three
``mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz`` files shipped inside the nilearn wheel
(``pip download --no-deps nilearn`` then unzip ``nilearn/datasets/data/``). Licence of the template:
see ``LICENSE_ICBM152.txt`` beside this file.

    python -m bundle.data.synth.template.derive_anatomy DIR_WITH_NIFTI_FILES
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

__all__ = ["derive"]

OUT = Path(__file__).with_name("mni152_2009a_tissue.npz")


def derive(src: Path, out: Path = OUT) -> None:
    import nibabel as nib

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        img = nib.load(str(src / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz"))
        return img.get_fdata(dtype=np.float32) / 255.0, img.affine

    t1, affine = load("t1")
    gm, _ = load("gm")
    wm, _ = load("wm")
    # intracranial volume: tissue, closed over sulci and with ventricles filled
    tissue = (gm + wm) > 0.3
    icv = ndi.binary_closing(tissue, structure=np.ones((3, 3, 3)), iterations=3)
    icv = ndi.binary_fill_holes(icv)
    icv_soft = ndi.gaussian_filter(icv.astype(np.float32), 0.7)
    csf = np.clip(icv_soft - gm - wm, 0.0, 1.0)
    brain = (gm + wm + csf) > 0.5
    idx = np.argwhere((gm + wm + csf) > 0.05)
    lo = np.maximum(idx.min(0) - 4, 0)
    hi = np.minimum(idx.max(0) + 5, gm.shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]

    def u8(x: np.ndarray) -> np.ndarray:
        return np.round(np.clip(x[crop], 0, 1) * 255).astype(np.uint8)

    np.savez_compressed(
        out, t1=u8(t1), gm=u8(gm), wm=u8(wm), csf=u8(csf), brain=brain[crop].astype(np.uint8), affine=shifted
    )


if __name__ == "__main__":
    derive(Path(sys.argv[1]))
