# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""One engine for the methods that train several networks in sequence, and one resume mechanism.

:class:`TrainingPlan` is an ignite ``Engine`` whose iterations are the steps of a plan (fit a network, mine
examples, evaluate, export): MONAI's conventions apply (``train#trainer``, handlers such as ``StatsHandler`` and
``MLFlowHandler`` attach to it). A method subclasses it with its ``plan`` and ``run_step``: the two-stage detector
(``bundle.methods.twostage.TwoStageTraining``) and the multirater RCNN (``bundle.methods.rcnn.StagedTraining``).

:class:`FinishedNetworks` is how every such run resumes: a network that finished training is written atomically
to ``checkpoints/<tag>.pt``; a rerun with ``resume`` loads it instead of training it again. (The single-network
workflows, U-Net and GP-Unet, resume with MONAI's ``CheckpointSaver``/``CheckpointLoader`` instead, which also keep
the optimiser's state mid-run.)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import torch
from ignite.engine import Engine
from torch import nn

from .runs import save_state

__all__ = ["FinishedNetworks", "TrainingPlan"]

logger = logging.getLogger(__name__)


class FinishedNetworks:
    """The finished networks of a run: ``folder/<tag>.pt`` state dicts.

    Args:
        folder: where they are written (a run's ``checkpoints/``).
        resume: whether a rerun reuses them (``False``: every network trains again and overwrites its file).
    """

    def __init__(self, folder: str | os.PathLike, resume: bool = True) -> None:
        self.folder, self.resume = Path(folder), bool(resume)

    def path(self, tag: str) -> Path:
        return self.folder / f"{tag}.pt"

    def done(self, tag: str) -> bool:
        """Whether ``tag`` finished in an earlier run and is to be reused."""
        return self.resume and self.path(tag).is_file()

    def load(self, net: nn.Module, tag: str, device: str | torch.device = "cpu") -> nn.Module:
        net.load_state_dict(torch.load(self.path(tag), map_location=device, weights_only=True))
        logger.info("%s: loaded the finished network %s", tag, self.path(tag))
        return net

    def save(self, net: nn.Module, tag: str) -> Path:
        return save_state(net, self.path(tag))


class TrainingPlan(Engine):
    """An ignite ``Engine`` over the steps of a plan. After each step ``state.output`` is ``[{"step": name, "loss":
    loss or None}]`` (a decollated batch of one, as MONAI engines give, so ``from_engine(["loss"], first=True)``
    reads it), and ``step_metrics`` collects ``<name>_loss`` of every step that reports a loss.

    Subclasses define :meth:`run_step` (``step -> (name, loss)``) and call :meth:`run_plan` with their steps.

    Args:
        train_handlers: ignite/MONAI handlers attached to the engine (``train#handlers``).
        max_epochs: passes over the plan; must be 1 (declared so that ``train#trainer#max_epochs`` exists).
    """

    def __init__(self, train_handlers: Sequence | None = None, max_epochs: int = 1) -> None:
        if int(max_epochs) != 1:
            raise ValueError(
                f"max_epochs must be 1 (one pass over the training plan), got {max_epochs}; "
                "train longer with the networks' iterations"
            )
        super().__init__(self._iterate)
        self.step_metrics: dict = {}
        for handler in train_handlers or ():
            handler.attach(self)

    def run_step(self, step) -> tuple[str, float | None]:
        raise NotImplementedError

    def _iterate(self, engine: Engine, step) -> list[dict]:
        name, loss = self.run_step(step)
        if loss is not None:
            self.step_metrics[f"{name}_loss"] = loss
        return [{"step": name, "loss": loss}]

    def run_plan(self, steps: Sequence) -> None:
        """Run every step once, in order."""
        self.step_metrics = {}
        Engine.run(self, list(steps), max_epochs=1)
