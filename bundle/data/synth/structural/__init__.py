# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""T1-, T2- and FLAIR-weighted scans simulated from tissue relaxation (task ``structural``; ``docs/data.md``).

Per subject:

1. **Anatomy**: the ICBM152 tissue maps under a random deformation and head rotation on the acquisition grid
   (0.5 mm to 1 x 1 x 3 mm voxels; larger voxels average sub-samples), then **atrophy** (ventricles enlarged, sulci
   widened) and **white-matter hyperintensities** (periventricular and deep, of varying load).
2. **Objects**, each with partial volume: EPVS (tubes 1-3 mm wide that bend and sometimes branch) in the basal
   ganglia, centrum semiovale, hippocampus and midbrain, from none to several hundred per scan; wide, short
   perivascular spaces at the base of the basal ganglia (labelled EPVS that look like lacunes); lacunes of
   3-15 mm with or without a gliotic rim; flow voids (vessels, unlabelled).
3. **Signal**: every voxel is a mixture of tissues (grey and white matter, deep grey matter, CSF, WMH, fluid,
   gliosis, flowing blood); each tissue's signal comes from its T1, T2 and proton density (jittered per scan) through
   the sequence's equation: MPRAGE or spin-echo T1 (spoiled gradient echo held out), fast spin-echo T2, FLAIR with
   an inversion time near the CSF null. A share of training scans instead draws every tissue's signal at random
   (SynthSeg's spirit). Then texture, point-spread function, bias field, gain and Rician noise; int16.
4. **Raters**: six simulated raters per object with persistent profiles (``bundle.data.synth.raters``).

Everything varies per scan within a named :data:`PRESETS` setting; :data:`HELD_OUT` lists the settings never
trained on.
"""

from .physics import (
    HELD_OUT,
    MODALITIES,
    PRESETS,
    RELAXATION,
    TISSUES,
    Acquisition,
    draw_acquisition,
    preset,
    signal,
    tissue_signals,
)
from .subject import (
    CLASSES,
    REGION_CODES,
    counts_by_region,
    generate_structural_cohort,
    generate_structural_subject,
    simulate,
)

__all__ = [
    "CLASSES",
    "HELD_OUT",
    "MODALITIES",
    "PRESETS",
    "REGION_CODES",
    "RELAXATION",
    "TISSUES",
    "Acquisition",
    "counts_by_region",
    "draw_acquisition",
    "generate_structural_cohort",
    "generate_structural_subject",
    "preset",
    "signal",
    "simulate",
    "tissue_signals",
]
