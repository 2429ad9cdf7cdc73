# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Small helpers shared by components."""

from __future__ import annotations

import math

import torch

__all__ = ["as_bool", "is_null", "lr_factor", "one_of", "or_exit", "pad_rows"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def as_bool(value, name: str = "value") -> bool:
    """A config flag as a bool: ``python -m monai.bundle run --flag false`` passes the *string* ``'false'``.

    Raises:
        ValueError: a string that is not one of true/false/yes/no/on/off/1/0 (any case).
    """
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE | _FALSE:
            return v in _TRUE
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def one_of(value, options, name: str = "value"):
    """``value`` if it is one of ``options``, else ``ValueError`` naming the setting and the choices (a typo in a
    config switch fails at once instead of as a missing key later)."""
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")
    return value



def lr_factor(schedule: str, total):
    """Multiplier of the base learning rate at iteration ``it``, for torch ``LambdaLR``: ``constant`` 1, or
    ``cosine`` annealing to 0 at ``total`` iterations and 0 after. A plain function, so a checkpoint keeps only the
    iteration: a run resumed with a larger ``total`` follows the new schedule instead of the saved one."""
    one_of(schedule, ("constant", "cosine"), "lr_schedule")
    total = max(int(total), 1)
    if schedule == "constant":
        return lambda it: 1.0
    return lambda it: 0.5 * (1.0 + math.cos(math.pi * min(it, total) / total))

def or_exit(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, or the end of the command with one line ``error: <message>`` (exit status 1) when
    it raises ``ValueError`` or ``OSError``: for the configs' input steps, whose messages already name the subject
    and the file (a raised error would print MONAI's chained traceback ending in "Failed to evaluate")."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, OSError) as err:
        raise SystemExit(f"error: {' '.join(str(err).split())}") from None


def is_null(value) -> bool:
    """True for a config value meaning "none": None, or the text ``null`` / ``none`` / empty that
    ``python -m monai.bundle run --key null`` passes."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none"))


def pad_rows(tables, fill: float = float("nan"), width: int | None = None, like: torch.Tensor | None = None):
    """Stack per-item tables (each (n_b, ...) with the same trailing shape) into one (B, max n_b, ...) tensor,
    padded with ``fill`` rows: a batch of detections whose counts differ. ``width`` gives the trailing size when
    every table may be empty; ``like`` the dtype and device (default: the first table's, else float32 on CPU)."""
    tables = [torch.as_tensor(t) for t in tables]
    ref = like if like is not None else (tables[0] if tables else torch.zeros(0))
    tail = tuple(tables[0].shape[1:]) if tables else ((width,) if width is not None else ())
    n = max((len(t) for t in tables), default=0)
    out = torch.full((len(tables), n, *tail), fill, dtype=ref.dtype, device=ref.device)
    for b, t in enumerate(tables):
        out[b, : len(t)] = t
    return out
