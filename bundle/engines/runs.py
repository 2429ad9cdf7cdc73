# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""What every network trained on a window stream shares: a one-epoch MONAI ``SupervisedTrainer`` of a fixed number
of iterations, its progress bar, and the atomic save of the finished network (used by ``WindowTraining`` and the
methods' multi-network engines)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from monai.data.utils import no_collation
from monai.engines import SupervisedTrainer
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from ..data.io import atomic_path

__all__ = ["attach_progress", "preprocessed", "save_state", "window_trainer"]


def preprocessed(dataset, num_workers: int = 0) -> list:
    """Every item of ``dataset``, in order (its transforms run by ``num_workers`` processes; 0: this one): the
    volumes a window stream draws from, held in memory."""
    return list(DataLoader(dataset, batch_size=None, num_workers=int(num_workers), collate_fn=no_collation))


def window_trainer(stream: IterableDataset, batch_size: int, iterations: int, **trainer_kwargs) -> SupervisedTrainer:
    """A ``SupervisedTrainer`` running ``iterations`` batches of ``stream`` as one epoch (no worker processes: the
    stream draws windows from volumes already in memory); ``trainer_kwargs`` go to the trainer."""
    loader = DataLoader(stream, batch_size=batch_size, num_workers=0)
    return SupervisedTrainer(max_epochs=1, epoch_length=int(iterations), train_data_loader=loader, **trainer_kwargs)


def attach_progress(trainer: SupervisedTrainer, tag: str, loss: Callable, enabled: bool = True) -> None:
    """An ignite progress bar named ``tag`` showing the loss (nothing when not ``enabled``)."""
    if enabled:
        from ignite.handlers import ProgressBar

        ProgressBar(desc=tag, persist=True).attach(trainer, output_transform=lambda out: {"loss": loss(out)})


def save_state(net: nn.Module, path: str | Path) -> Path:
    """Write ``net``'s state dict to ``path`` atomically (a finished network; a resumed run loads it)."""
    with atomic_path(path) as tmp:
        torch.save(net.state_dict(), tmp)
    return Path(path)
