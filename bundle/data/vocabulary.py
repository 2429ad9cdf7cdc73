# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The data model's words, defined once: lesion classes and the answers a rater gives about an EPVS/lacune
candidate (in the order the multirater RCNN's class and rater heads use)."""

from __future__ import annotations

__all__ = ["ANSWERS", "CLASSES", "RATER_CHOICES", "answer_columns", "rater_columns"]

CLASSES = ("cmb", "epvs", "lacune")
#: a rater's answer about an EPVS/lacune candidate; the index is the class of the RCNN's heads
ANSWERS = ("nothing", "lacune", "epvs", "undecided")
#: every answer a lesion file's ``raters`` list may hold (microbleed raters answer ``cmb``)
RATER_CHOICES = (*ANSWERS, "cmb")


def answer_columns(prefix: str = "p_") -> tuple[str, ...]:
    """Column names of per-answer values, e.g. ``p_nothing, p_lacune, p_epvs, p_undecided``."""
    return tuple(f"{prefix}{a}" for a in ANSWERS)


def rater_columns(n_raters: int) -> tuple[str, ...]:
    """Table columns of rater heads: ``rater<k>`` (the head's answer), then ``rater<k>_p_<answer>`` per head."""
    answers = tuple(f"rater{r + 1}" for r in range(n_raters))
    return (*answers, *(f"{a}_p_{x}" for a in answers for x in ANSWERS))
