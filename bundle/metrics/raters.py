# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Whether rater heads reproduce their raters' profiles, from each head's answer probabilities.

A rater's most likely answer is nearly always the object's class, whoever the rater is, so heads that give their
most probable answer agree most with the most accurate rater, all of them alike: agreement of answers cannot show a
profile. What a profile changes is the *probability* of each answer (one rater says "nothing" more often than the
others on doubtful objects). So a rater ``r``'s profile counts as reproduced when the answers ``r`` gave are more
likely under ``r``'s own head than under any other head: the mean log-likelihood ``LL[h, r]`` of ``r``'s answers
under head ``h`` is largest for ``h = r``. The answer agreement is reported too.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rater_profiles"]


def rater_profiles(answers: np.ndarray, probs: np.ndarray, n_boot: int = 200, seed: int = 0) -> dict:
    """Figures of heads against raters on N objects.

    Args:
        answers: (N, R) each rater's answer (an index into the answers).
        probs: (N, R, A) each head's answer probabilities (head ``r`` is rater ``r``'s).
        n_boot: resamples of the objects (with replacement) for ``own_head_best_bootstrap``.

    Returns:
        ``log_likelihood`` [h][r], ``best_head`` [r] (the head under which rater r's answers are most likely),
        ``own_head_best`` [r], ``own_head_margin`` [r] (LL[r, r] minus the best other head's),
        ``own_head_best_bootstrap`` [r] (share of resamples where r's own head is best), ``agreement`` [h][r] (share
        of objects where head h's most probable answer is rater r's), ``answer_share`` [r][a] (rater r's answers) and
        ``predicted_share`` [h][a] (head h's mean probabilities), with ``n``.
    """
    answers, probs = np.asarray(answers, np.int64), np.asarray(probs, float)
    n, r = answers.shape if answers.ndim == 2 else (0, 0)
    if not n:
        return {"n": 0}
    a = probs.shape[2]
    # ll[o, h, r]: log-probability under head h of rater r's answer on object o
    ll = np.log(np.clip(np.take_along_axis(probs, np.broadcast_to(answers[:, None, :], (n, r, r)), 2), 1e-12, 1.0))
    mean = ll.mean(0)
    others = np.where(np.eye(r, dtype=bool), -np.inf, mean)
    rng = np.random.default_rng(seed)
    boot = np.zeros(r)
    for _ in range(n_boot):
        m = ll[rng.integers(0, n, n)].mean(0)
        boot += m.argmax(0) == np.arange(r)
    agree = (probs.argmax(2)[:, :, None] == answers[:, None, :]).mean(0)
    return {
        "n": int(n),
        "log_likelihood": np.round(mean, 4).tolist(),
        "best_head": mean.argmax(0).tolist(),
        "own_head_best": (mean.argmax(0) == np.arange(r)).tolist(),
        "own_head_margin": np.round(np.diag(mean) - others.max(0), 4).tolist(),
        "own_head_best_bootstrap": np.round(boot / max(n_boot, 1), 3).tolist(),
        "agreement": np.round(agree, 3).tolist(),
        "answer_share": np.round([np.bincount(answers[:, k], minlength=a) / n for k in range(r)], 3).tolist(),
        "predicted_share": np.round(probs.mean(0), 3).tolist(),
    }
