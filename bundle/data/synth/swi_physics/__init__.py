# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""SWI and T2*-weighted gradient echo simulated from physics (task ``swi``; ``docs/data.md``).

Per subject:

1. **Anatomy** in a head frame: the ICBM152 tissue maps under a random deformation (:func:`build_anatomy`), placed
   in the scanner with a random head pose; B0 is the scanner's z axis.
2. **Susceptibility** (ppm, relative to air): tissue at -9.4 with grey/white contrast, iron-rich deep nuclei
   (pallidum, putamen, caudate, substantia nigra, red nucleus, dentate), air in the sinuses and ear canals and
   outside the head (so air-tissue boundaries below the frontal and temporal lobes distort the field), a venous
   tree (medullary veins radial to the ventricles, deep veins, cortical and cerebellar veins; connected polylines
   with side branches), microbleeds (paramagnetic ellipsoids; lobar, deep, infratentorial, some beside veins) and
   calcifications (diamagnetic).
3. **Field** by dipole convolution, ``dB/B0 = IFFT(D(k) FFT(chi))`` with ``D = 1/3 - (k.b)^2/|k|^2`` (Lorentz
   sphere corrected, ``b`` the B0 direction in the grid's frame): the head on a 2 mm grid (then a second-order
   shim fitted over the brain is removed, as a scanner's shim does), the small sources on a fine 0.5 mm grid in
   the acquisition's orientation.
4. **Signal**: ``PD exp(-R2* TE) exp(-i gamma dB TE)`` on the fine grid, integrated (complex mean) over the box
   of each acquisition voxel, so blooming and drop-out come from intra-voxel dephasing; a point-spread function,
   a receive bias, complex Gaussian noise; the output is the magnitude (T2*-GRE) or SWI (magnitude times a
   high-pass-filtered negative-phase mask to a power), skull-stripped, int16, on an oblique affine.
5. **Labels**: a microbleed's label is the set of voxels whose noise-free magnitude it lowers to under half of
   the magnitude without it (its visible, bloomed extent), connected to its darkest voxel.

Everything varies per scan within a named :data:`PRESETS` setting; subject ``i`` of seed ``s`` uses
``numpy.random.default_rng([s, i, 7])`` and is identical whatever the cohort size.

Modules: :mod:`.physics` (settings and physics), :mod:`.scene` (geometry, tissue), :mod:`.sources` (veins,
microbleeds, calcifications), :mod:`.subject` (a subject and a cohort).
"""

from __future__ import annotations

from .physics import (
    CHI_TISSUE,
    CHI_VEIN_PPM,
    CMB_CORE_BETA,
    GAMMA,
    HELD_OUT,
    MAX_VISIBLE_MM,
    MIN_VISIBLE_MM,
    PHYSICS_MM,
    PRESETS,
    VISIBLE_RATIO,
    Acquisition,
    box_integrate,
    complex_gaussian,
    dipole_field,
    draw_acquisition,
    gre_signal,
    local_dephasing,
    preset,
    sphere_field,
    sphere_phantom,
    vein_susceptibility,
)
from .subject import generate_swi_cohort, generate_swi_subject

__all__ = [
    "CHI_TISSUE",
    "CHI_VEIN_PPM",
    "CMB_CORE_BETA",
    "GAMMA",
    "HELD_OUT",
    "MAX_VISIBLE_MM",
    "MIN_VISIBLE_MM",
    "PHYSICS_MM",
    "PRESETS",
    "VISIBLE_RATIO",
    "Acquisition",
    "box_integrate",
    "complex_gaussian",
    "dipole_field",
    "draw_acquisition",
    "generate_swi_cohort",
    "generate_swi_subject",
    "gre_signal",
    "local_dephasing",
    "preset",
    "sphere_field",
    "sphere_phantom",
    "vein_susceptibility",
]
