# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Six simulated raters classify each EPVS/lacune object as nothing, lacune, EPVS or undecided.

Each object gets an ambiguity in [0, 1] from its look: small objects (few voxels) may be missed ("nothing"), wide
or short EPVS look like lacunes, small lacunes and lacunes without a FLAIR rim look like EPVS. A rater gives the
true class with probability ``1 - error * ambiguity`` (times their own skill); otherwise they pick among the
other answers with weights that depend on why the object is ambiguous. With the defaults roughly a third of the
objects get perfect agreement, as in the multirater RCNN paper's data (36.6 %).

Each rater keeps one profile across objects and scans (:data:`PROFILES`), as real raters do: a skill (centre of
their per-object skill) and a leaning among the wrong answers. Rater 2 tends to call doubtful objects "nothing",
rater 3 "undecided", rater 4 the other class; raters 1, 5 and 6 have no leaning and differ in skill.
"""

from __future__ import annotations

import numpy as np

from ..vocabulary import ANSWERS
from .objects import SimObject
from .shapes import Tube

__all__ = ["CHOICES", "PROFILES", "ambiguity", "rate"]

CHOICES = ANSWERS  # the data model's answers (bundle.data.vocabulary)
#: per rater: (skill centre, leaning = weights of the wrong answers "nothing", the other class, "undecided")
PROFILES = (
    (0.90, (1.0, 1.0, 1.0)),
    (0.85, (4.0, 0.5, 0.5)),  # calls doubtful objects "nothing"
    (0.85, (0.5, 0.5, 4.0)),  # "undecided"
    (0.80, (0.5, 4.0, 0.5)),  # the other class
    (0.75, (1.0, 1.0, 1.0)),
    (0.95, (1.0, 1.0, 1.0)),
)


def ambiguity(obj: SimObject, n_voxels: int) -> tuple[float, float]:
    """Return (ambiguity in [0, 1], share of that ambiguity due to smallness in [0, 1])."""
    small = float(np.clip((12.0 - n_voxels) / 10.0, 0.0, 1.0))
    if obj.kind == "epvs" and isinstance(obj.shape, Tube):
        width = 2.0 * obj.shape.radius
        elong = obj.shape.length_mm / width
        shape_amb = float(np.clip((width - 1.6) / 1.4, 0, 1) * 0.6 + np.clip((4.0 - elong) / 2.5, 0, 1) * 0.6)
    else:  # lacune
        d = 2.0 * float(obj.shape.radii.max())
        shape_amb = float(np.clip((7.0 - d) / 4.0, 0, 1) * 0.7 + (0.5 if obj.rim is None else 0.0))
    total = float(np.clip(0.15 + 0.6 * small + shape_amb, 0.0, 1.0))
    return total, small / max(small + shape_amb, 1e-6)


def rate(obj: SimObject, n_voxels: int, rng: np.random.Generator, n_raters: int = 6, error: float = 0.6) -> list[str]:
    """Answers of ``n_raters`` raters for one labelled EPVS or lacune object: rater ``k`` has the profile
    ``PROFILES[k % 6]``; their skill for this object is the profile's centre plus a draw of +-0.15."""
    amb, small_share = ambiguity(obj, n_voxels)
    other = "lacune" if obj.kind == "epvs" else "epvs"
    draws = rng.uniform(0.7, 1.0, n_raters)  # the same draws as without profiles: the rest of the scan is unchanged
    answers = []
    for k, draw in enumerate(draws):
        centre, leaning = PROFILES[k % len(PROFILES)]
        skill = float(np.clip(centre + draw - 0.85, 0.6, 1.0))
        if rng.random() >= error * amb * (1.3 - skill):
            answers.append(obj.kind)
            continue
        w = np.array([0.1 + 0.8 * small_share, 0.45 * (1 - small_share) + 0.05, 0.45 * (1 - small_share) + 0.05])
        w = w * np.asarray(leaning)
        answers.append(rng.choice(["nothing", other, "undecided"], p=w / w.sum()))
    return [str(a) for a in answers]
