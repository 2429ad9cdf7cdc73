# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Small helpers shared by components."""

from __future__ import annotations

import os

import torch

__all__ = ["as_bool", "barrier", "is_main_process", "local_device", "or_exit", "pad_rows", "rank", "world_size"]

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


def or_exit(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, or the end of the command with one line ``error: <message>`` (exit status 1) when
    it raises ``ValueError`` or ``OSError``: for the configs' input steps, whose messages already name the subject
    and the file (a raised error would print MONAI's chained traceback ending in "Failed to evaluate")."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, OSError) as err:
        raise SystemExit(f"error: {' '.join(str(err).split())}") from None


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's rank in the ``torch.distributed`` group (0 without one)."""
    return torch.distributed.get_rank() if _distributed() else 0


def world_size() -> int:
    """The number of processes of the ``torch.distributed`` group (1 without one)."""
    return torch.distributed.get_world_size() if _distributed() else 1


def is_main_process() -> bool:
    """True on rank 0 and without a process group: the process that merges and reports."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process of the group (nothing without one)."""
    if _distributed():
        torch.distributed.barrier()


def local_device() -> torch.device:
    """The device of this process under ``torchrun``: ``cuda:<LOCAL_RANK>`` where CUDA is available, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")


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
