# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Train one network on small windows drawn from cached volumes: one member of a two-stage detector's ensemble.

The training loop is MONAI's ``SupervisedTrainer``; this module only supplies the window stream and a fresh
network per call, because the two-stage detector trains the same configuration once per cross-validation fold.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path
from typing import Callable, Sequence

import ignite.distributed as idist
import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Events
from monai.handlers import StatsHandler, TensorBoardStatsHandler, from_engine
from monai.inferers import Inferer
from torch import nn
from torch.utils.data import IterableDataset

from ..utils import as_bool
from .plan import FinishedNetworks
from .runs import attach_progress, window_trainer

__all__ = ["WindowStream", "WindowTraining"]

logger = logging.getLogger(__name__)


class WindowStream(IterableDataset):
    """Endless stream of windows: draw a subject uniformly, draw windows from it with ``sampler``.

    One window per subject draw (``sampler.num_samples`` windows if larger), so a batch mixes subjects.

    Args:
        subjects: preprocessed entries (dicts of volumes) the sampler accepts.
        sampler: a MONAI randomizable transform returning a list of window dicts (e.g.
            :class:`bundle.transforms.RandWindowsd`).
        seed: seed of the subject draws and the sampler (which also augments, see ``RandWindowsd``).
    """

    def __init__(self, subjects: Sequence[dict], sampler: Callable, seed: int = 0):
        if not len(subjects):
            raise ValueError("no subjects to draw windows from")
        self.subjects, self.sampler, self.seed = list(subjects), sampler, seed

    def __iter__(self):
        rng = np.random.RandomState(self.seed)
        if hasattr(self.sampler, "set_random_state"):
            self.sampler.set_random_state(seed=int(rng.randint(2**31)))
        while True:
            subject = self.subjects[rng.randint(len(self.subjects))]
            yield from self.sampler(subject)


class WindowTraining:
    """One ensemble member: build a fresh network, train it on windows for ``iterations`` steps, save it.

    Every piece comes from the config: ``network_def`` and ``optimizer`` are callables (``_mode_: callable`` in
    MONAI config) so each :meth:`fit` starts from new weights. The loop is a MONAI ``SupervisedTrainer`` with
    ``StatsHandler`` and ``TensorBoardStatsHandler`` (tag ``<tag>/loss``) and a tqdm progress bar.

    A finished fit is saved to ``output_dir/checkpoints/<tag>.pt`` (state dict, written atomically). With
    ``resume``, a later :meth:`fit` with the same tag loads that file instead of training again, so an
    interrupted multi-stage run restarts at the first unfinished network.

    Args:
        name: member name, part of the checkpoint tag (e.g. ``unet_bs20``).
        network_def: callable returning a new ``nn.Module``.
        optimizer: callable taking the network's parameters and returning an optimiser.
        loss_function: loss of (network output, ``label``).
        sampler: window sampler (see :class:`WindowStream`).
        batch_size: windows per step (the paper's ensemble members use 20 and 30).
        iterations: training steps.
        output_dir: run folder (``checkpoints/``, ``tensorboard/``).
        device: torch device.
        amp: mixed precision (only used on CUDA).
        seed: random seed of the window stream and the weight initialisation.
        resume: reuse a finished checkpoint with the same tag.
        log_every: iterations between loss lines in the log; :attr:`last_loss` is the mean loss of the last
            ``log_every`` iterations of the latest :meth:`fit` (None when it loaded a finished network).
        progress: show a progress bar.
        inferer: MONAI inferer of the training steps (``train#inferer``; default ``SimpleInferer``).
        distributed: data-parallel training (``configs/multi_gpu_train.yaml``, under ``torchrun``): the network is
            wrapped in ``DistributedDataParallel``, each process draws its own windows (seed + rank), so a step
            sees ``batch_size`` windows per process; only rank 0 logs and writes the checkpoint, and every process
            waits for it before going on.
    """

    def __init__(
        self,
        name: str,
        network_def: Callable[[], nn.Module],
        optimizer: Callable,
        loss_function: Callable,
        sampler: Callable,
        batch_size: int,
        iterations: int,
        output_dir: str | os.PathLike,
        device: str | torch.device = "cpu",
        amp: bool = False,
        seed: int = 0,
        resume: bool = True,
        log_every: int = 50,
        progress: bool = True,
        inferer: Inferer | None = None,
        distributed: bool = False,
    ) -> None:
        if batch_size < 1 or iterations < 0:
            raise ValueError(f"{name}: batch_size must be >= 1 and iterations >= 0, got {batch_size}, {iterations}")
        self.name, self.network_def, self.optimizer, self.loss_function = name, network_def, optimizer, loss_function
        self.sampler = sampler
        self.batch_size, self.iterations = int(batch_size), int(iterations)
        self.output_dir, self.device = Path(output_dir), torch.device(device)
        self.amp = as_bool(amp, "amp") and self.device.type == "cuda"
        self.seed, self.log_every = int(seed), int(log_every)
        self.resume, self.progress = as_bool(resume, "resume"), as_bool(progress, "progress")
        self.finished = FinishedNetworks(self.output_dir / "checkpoints", self.resume)  # reused on resume
        self.inferer = inferer
        self.distributed = as_bool(distributed, "distributed")
        if self.distributed and not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                f"{name}: distributed training needs torch.distributed initialised: run under torchrun with "
                "configs/multi_gpu_train.yaml (docs/README.md)"
            )
        self.last_loss: float | None = None

    def checkpoint(self, tag: str) -> Path:
        return self.finished.path(tag)

    def new_network(self) -> nn.Module:
        return self.network_def().to(self.device)

    def fit(self, subjects: Sequence[dict], tag: str | None = None, init_state: dict | None = None) -> nn.Module:
        """Train a new network on ``subjects`` (or load the finished ``tag``) and return it in eval mode.

        ``init_state``: a state dict the network starts from instead of random weights (fine-tuning)."""
        tag = tag or self.name
        torch.manual_seed(self.seed)
        net = self.new_network()
        if init_state is not None:
            net.load_state_dict(init_state)
        self.last_loss = None
        if self.finished.done(tag):
            return self.finished.load(net, tag, self.device).eval()
        main = idist.get_rank() == 0
        train_net = net
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            train_net = nn.parallel.DistributedDataParallel(net, device_ids=ids)
        trainer = window_trainer(
            WindowStream(subjects, self.sampler, seed=self.seed + 7919 * idist.get_rank()),
            self.batch_size,
            self.iterations,
            device=self.device,
            network=train_net,
            optimizer=self.optimizer(train_net.parameters()),
            loss_function=self.loss_function,
            amp=self.amp,
            inferer=self.inferer,
        )
        recent = self._log(trainer, tag, main)
        if self.iterations:
            trainer.run()
            self.last_loss = float(np.mean(recent)) if recent else None
        if self.distributed:
            self._check_in_sync(net, tag)
        if main:
            self.finished.save(net, tag)  # the plain module's state dict, also under DistributedDataParallel
        idist.barrier()
        return net.eval()

    def _log(self, trainer, tag: str, main: bool) -> deque:
        """Attach the loss log (console every ``log_every`` iterations, TensorBoard, progress bar; rank 0 only);
        returns the deque of the last ``log_every`` losses."""
        loss = from_engine(["loss"], first=True)
        every = max(self.log_every, 1)
        recent: deque = deque(maxlen=every)
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED, lambda engine: recent.append(float(loss(engine.state.output)))
        )
        if main:
            StatsHandler(
                name=logger.name,
                iteration_log=lambda engine, it: it % every == 0,
                tag_name=f"{tag} loss",
                output_transform=loss,
            ).attach(trainer)
            TensorBoardStatsHandler(
                log_dir=str(self.output_dir / "tensorboard"), tag_name=f"{tag}/loss", output_transform=loss
            ).attach(trainer)
            attach_progress(trainer, tag, loss, self.progress)
        return recent

    def _check_in_sync(self, net: nn.Module, tag: str) -> None:
        """Every process must end with the same weights (DistributedDataParallel averages the gradients)."""
        total = torch.stack([p.detach().double().sum() for p in net.parameters()]).sum().reshape(1)
        total = total.to(self.device)
        values = [float(t) for t in idist.all_gather(total)]
        if max(values) - min(values) > 1e-6 * max(1.0, abs(values[0])):
            raise RuntimeError(f"{tag}: the processes' networks differ after training ({values}): not synchronised")
        logger.info("%s: weights identical in all %d processes", tag, len(values))
