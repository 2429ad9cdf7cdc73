# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Anatomy beyond one deformed template: atrophy (enlarged ventricles, widened sulci), white-matter
hyperintensities, deep grey matter as its own tissue, and the regions where raters count EPVS."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage as ndi

from ..anatomy import Anatomy, _in_ellipsoid, nucleus, region_masks
from ..contrast import texture_field

# Approximate MNI152 ellipsoids (centre mm, semi-axes mm); left side, mirrored for the right where marked.
HIPPOCAMPUS = ((-27.0, -22.0, -13.0), (5.0, 14.0, 6.0))
MIDBRAIN = ((0.0, -26.0, -10.0), (8.0, 8.0, 7.0))
VENTRICLES = ((0.0, -12.0, 12.0), (28.0, 38.0, 18.0))  # the box within which CSF counts as ventricular
CISTERNS = ((0.0, -20.0, -14.0), (24.0, 24.0, 10.0))


def _both(anat: Anatomy, centre, radii) -> np.ndarray:
    right = (-centre[0], centre[1], centre[2])
    return _in_ellipsoid(anat.mni, centre, radii) | _in_ellipsoid(anat.mni, right, radii)


def ventricles(anat: Anatomy) -> np.ndarray:
    return _in_ellipsoid(anat.mni, *VENTRICLES) & (anat.csf > 0.5) & (anat.brain > 0)


def atrophy(anat: Anatomy, level: float) -> Anatomy:
    """Enlarge the ventricles by ``5 level`` mm and widen the sulci by turning the cortex within ``2.5 level`` mm
    of the outer CSF into CSF, with partial volume at the new borders. ``level`` 0 returns ``anat``."""
    if level <= 0:
        return anat
    sp = anat.spacing
    gm, wm, csf = anat.gm.copy(), anat.wm.copy(), anat.csf.copy()
    inside = anat.brain > 0
    vent = ventricles(anat)
    if vent.any():
        dist = ndi.distance_transform_edt(~vent, sampling=sp)
        grow = np.clip(5.0 * level - dist + 0.5, 0.0, 1.0) * inside
        grow *= ~_in_ellipsoid(anat.mni, *MIDBRAIN)  # the brainstem does not shrink into the aqueduct
        csf, gm, wm = csf + (gm + wm) * grow, gm * (1 - grow), wm * (1 - grow)
    outer = (csf > 0.5) & ~vent & inside
    if outer.any():
        dist = ndi.distance_transform_edt(~outer, sampling=sp)
        take = np.clip(2.5 * level - dist + 0.5, 0.0, 1.0) * inside
        csf, gm = csf + gm * take, gm * (1 - take)
    return replace(anat, gm=gm.astype(np.float32), wm=wm.astype(np.float32), csf=csf.astype(np.float32), _nuclei={})


def wmh_fraction(anat: Anatomy, load: float, rng: np.random.Generator) -> np.ndarray:
    """Share of each voxel's white matter that is hyperintense (0-1): periventricular caps and bands, thicker with
    ``load``, plus about ``40 load`` deep punctate or confluent foci; irregular through a smooth random field."""
    if load <= 0:
        return np.zeros(anat.shape, np.float32)
    sp = anat.spacing
    vent = ventricles(anat)
    dist = ndi.distance_transform_edt(~vent, sampling=sp) if vent.any() else np.full(anat.shape, 1e3, np.float32)
    frac = np.clip(1.0 - dist / (2.0 + 10.0 * load), 0.0, 1.0)
    y = anat.mni[1]
    frac *= 0.6 + 0.4 * ((y > 15) | (y < -35))  # caps at the frontal and occipital horns
    deep = np.flatnonzero((anat.wm > 0.8) & (dist > 8.0))
    zeros = np.zeros(anat.shape, np.float32)
    for _ in range(rng.poisson(40.0 * load) if len(deep) else 0):
        c = np.array(np.unravel_index(rng.choice(deep), anat.shape), float)
        r_mm = rng.uniform(1.5, 3.0 + 6.0 * load)
        sub = [slice(max(int(c[a] - r_mm / sp[a]) - 1, 0), int(c[a] + r_mm / sp[a]) + 2) for a in range(3)]
        grid = np.stack(np.meshgrid(*[np.arange(s.start, min(s.stop, n)) for s, n in zip(sub, anat.shape)],
                                    indexing="ij"), -1)
        d = np.linalg.norm((grid - c) * sp, axis=-1)
        zeros[tuple(sub)] = np.maximum(zeros[tuple(sub)], np.clip(r_mm - d + 0.5, 0.0, 1.0))
    frac = np.maximum(frac, zeros)
    rough = texture_field(anat.shape, rng, 1.0) - 1.0  # zero-mean smooth field, sd 1
    frac = np.clip(frac * (0.7 + 0.5 * rough), 0.0, 1.0)
    return (frac * (anat.wm > 0.2)).astype(np.float32)


def deep_grey(anat: Anatomy) -> np.ndarray:
    """Share of grey matter that belongs to the basal ganglia and thalamus (smooth 0-1 map)."""
    nuclei = nucleus(anat, "putamen") | nucleus(anat, "pallidum") | nucleus(anat, "caudate")
    nuclei |= nucleus(anat, "thalamus")
    return ndi.gaussian_filter(nuclei.astype(np.float32), 1.0 / np.asarray(anat.spacing, float))  # 1 mm


def regions(anat: Anatomy) -> dict[str, np.ndarray]:
    """The simulator's region masks (:func:`region_masks`) plus ``hippocampus``, ``midbrain``, ``cisterns`` (CSF
    around the midbrain, where flow voids lie) and ``bg_base`` (the inferior basal ganglia)."""
    out = region_masks(anat)
    inside = anat.brain > 0
    out["hippocampus"] = _both(anat, *HIPPOCAMPUS) & inside & (anat.csf < 0.4)
    out["midbrain"] = _in_ellipsoid(anat.mni, *MIDBRAIN) & inside & (anat.csf < 0.4)
    out["cisterns"] = _in_ellipsoid(anat.mni, *CISTERNS) & inside & (anat.csf > 0.5)
    out["bg_base"] = out["basal_ganglia"] & (anat.mni[2] < 0.0)
    return out
