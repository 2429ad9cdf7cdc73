# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""MR contrasts from tissue maps and objects, then acquisition effects (bias field, Rician noise).

Relative intensities (white matter of T1 = 1) follow the usual appearance at 1.5-3 T:
T1w CSF < GM < WM; T2w WM < GM < CSF; FLAIR CSF suppressed, GM > WM; SWI magnitude darkened by iron in the deep
grey nuclei, veins and haemosiderin.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage as ndi

from .anatomy import Anatomy, nucleus
from .objects import SimObject
from .shapes import render

__all__ = ["MODALITIES", "TISSUE", "OBJECT", "tissue_image", "paint_objects", "acquire"]

MODALITIES = ("t1", "t2", "flair", "swi")
# (grey matter, white matter, CSF)
TISSUE = {
    "t1": (0.62, 1.00, 0.22),
    "t2": (0.58, 0.42, 1.00),
    "flair": (0.66, 0.50, 0.10),
    "swi": (0.62, 0.72, 0.85),
}
# Intensity an object replaces tissue with, per modality (None: the object is invisible there).
OBJECT = {
    "cmb": {"swi": 0.10, "t2": 0.30, "flair": 0.35, "t1": None},  # swi: bloomed extent; others: true core
    "epvs": {"t1": 0.22, "t2": 1.00, "flair": 0.12, "swi": 0.82},
    "lacune": {"t1": 0.20, "t2": 1.00, "flair": 0.10, "swi": 0.85},
    "lacune_rim": {"t1": 0.78, "t2": 0.72, "flair": 0.98, "swi": None},
    "vein": {"swi": 0.14, "t2": 0.45, "flair": None, "t1": None},
    "calcification": {"swi": 0.12, "t2": 0.32, "flair": 0.45, "t1": None},
    "artefact": {"swi": "multiply"},
}


def tissue_image(anat: Anatomy, modality: str, texture: np.ndarray) -> np.ndarray:
    """Noise-free image of healthy tissue on the subject grid (float32)."""
    g, w, c = TISSUE[modality]
    img = g * anat.gm + w * anat.wm + c * anat.csf
    if modality == "t1":  # the template's own T1w carries real deep-grey contrast: blend it in
        img = 0.5 * img + 0.5 * anat.t1 / 0.87
    if modality in ("swi", "t2"):  # iron in the pallidum and putamen
        iron = 0.35 * _soft(nucleus(anat, "pallidum")) + 0.15 * _soft(nucleus(anat, "putamen"))
        img = img * (1.0 - (iron if modality == "swi" else 0.4 * iron))
    return (img * texture).astype(np.float32)


def _soft(mask: np.ndarray) -> np.ndarray:
    return ndi.gaussian_filter(mask.astype(np.float32), 1.0)


def layers(obj: SimObject) -> list[tuple[str, object]]:
    """``(name, geometry)`` drawn for an object, in order: a lacune's gliotic rim first, then its fluid core."""
    if obj.kind == "lacune" and obj.rim is not None:
        return [("lacune_rim", obj.rim), ("lacune", obj.shape)]
    return [(obj.kind, obj.shape)]


def paint_objects(images: dict[str, np.ndarray], objects: list[SimObject], affine: np.ndarray) -> None:
    """Blend each object into each image in place, weighted by its partial-volume fraction."""
    shape = next(iter(images.values())).shape
    for obj in objects:
        for name, geom in layers(obj):
            box, frac = render(geom, affine, shape)
            if frac.size == 0 or frac.max() == 0:
                continue
            core = _render_in(obj.core, affine, shape, box) if obj.core is not None else frac
            for mod, img in images.items():
                value = OBJECT[name].get(mod)
                if value is None:
                    continue
                if value == "multiply":
                    soft = ndi.gaussian_filter(frac, 2.0)
                    img[box] *= 1.0 - obj.contrast * soft / max(soft.max(), 1e-6)
                    continue
                f = frac if (mod == "swi" or obj.core is None) else core
                target = _contrast(img[box], value, obj.contrast)
                img[box] = img[box] * (1.0 - f) + target * f


def _render_in(geom, affine: np.ndarray, shape: tuple[int, ...], box: tuple[slice, ...]) -> np.ndarray:
    """Partial-volume fraction of ``geom`` on the voxels of ``box`` (``geom`` lies inside the box)."""
    sub_box, sub = render(geom, affine, shape)
    out = np.zeros(tuple(s.stop - s.start for s in box), np.float32)
    out[tuple(slice(a.start - b.start, a.stop - b.start) for a, b in zip(sub_box, box))] = sub
    return out


def _contrast(local: np.ndarray, value: float, strength: float) -> np.ndarray:
    """Object intensity, its difference from the surrounding tissue scaled by ``strength``."""
    around = float(np.median(local))
    return np.float32(around + strength * (value - around))


def bias_field(shape: tuple[int, ...], rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Smooth multiplicative field exp(p(x)), p a random quadratic polynomial, spanning about +/- ``amplitude``."""
    axes = [torch.linspace(-1, 1, n) for n in shape]
    x, y, z = torch.meshgrid(*axes, indexing="ij")
    terms = [x, y, z, x * y, x * z, y * z, x * x, y * y, z * z]
    coef = rng.normal(0, 1, len(terms))
    field = sum(float(c) * t for c, t in zip(coef, terms))
    field = field / max(float(field.abs().max()), 1e-6) * amplitude
    return torch.exp(field).numpy().astype(np.float32)


def acquire(img: np.ndarray, brain: np.ndarray, rng: np.random.Generator, snr: float, bias: float, gain: float):
    """Bias field, scanner gain and Rician noise (sigma = white-matter level / ``snr``), then skull-stripping."""
    out = img * bias_field(img.shape, rng, bias) * gain
    sigma = gain / snr
    noise = rng.standard_normal((2, *img.shape), dtype=np.float32) * sigma
    out = np.sqrt((out + noise[0]) ** 2 + noise[1] ** 2)
    return (out * brain).astype(np.float32)


def texture_field(shape: tuple[int, ...], rng: np.random.Generator, strength: float = 0.04) -> np.ndarray:
    """Multiplicative tissue texture: 1 + smooth Gaussian noise of standard deviation ``strength``."""
    n = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 1.2)
    return (1.0 + strength * n / max(float(n.std()), 1e-6)).astype(np.float32)
