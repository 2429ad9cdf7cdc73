# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Progressive (staged) training of one network whose parts train in turn: the multirater RCNN's schedule.

Each step of ``steps`` (declared in the config) names the parts that train, the loss weights, whether the
regression terms pass through a sigmoid, the iterations and the learning rate. A step is one MONAI
``SupervisedTrainer`` run on the same network (the other parts frozen, their batch norm statistics kept) with a
new optimiser over the trainable parameters; its result is saved to ``output_dir/checkpoints/<network>_<n>_<step>.pt``
(atomically), and with ``resume`` a rerun loads the last finished step and continues after it. The last step's
weights are also written to ``output_dir/models/<network>.pt``: the detector's one state dict.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from ignite.engine import Events
from monai.handlers import StatsHandler, TensorBoardStatsHandler, from_engine
from torch import nn

from ...engines.plan import FinishedNetworks, TrainingPlan
from ...engines.runs import attach_progress, save_state, window_trainer
from ...engines.windows import WindowStream
from ...utils import as_bool
from .losses import MultiraterRCNNLoss

__all__ = ["RCNNPrepareBatch", "StagedTraining"]

logger = logging.getLogger(__name__)

_TARGET_KEYS = ("distance", "rpn_target", "boxes")


class RCNNPrepareBatch:
    """``prepare_batch`` of the RCNN's trainers: the image as input, the targets as a dict, and the patch's boxes
    passed to the network (``network(image, boxes=...)``) for its refinement proposals."""

    def __call__(self, batchdata: Mapping, device=None, non_blocking: bool = False, **kwargs):
        image = torch.as_tensor(batchdata["image"]).to(device=device, non_blocking=non_blocking)
        targets = {k: torch.as_tensor(batchdata[k]).to(device=device, non_blocking=non_blocking) for k in _TARGET_KEYS}
        return image, targets, (), {"boxes": targets["boxes"]}


class StagedTraining(TrainingPlan):
    """Train ``network`` part by part following ``steps``: a :class:`~bundle.engines.TrainingPlan` whose steps are
    the config's ``steps``; each finished step is a :class:`~bundle.engines.FinishedNetworks` checkpoint
    (``checkpoints/<name>_<n>_<step>.pt``), and a rerun with ``resume`` continues after the last one.

    Args:
        network: a module with ``set_trainable(parts)`` (:class:`bundle.methods.rcnn.MultiraterRCNN`).
        steps: list of dicts with ``name``, ``train`` (parts), ``iterations``, ``weights`` (loss term weights,
            see :class:`bundle.methods.rcnn.MultiraterRCNNLoss`), optional ``sigmoid_regression`` (default false) and
            ``learning_rate`` (default ``learning_rate``).
        subjects: preprocessed entries the sampler draws patches from.
        sampler: randomizable transform returning a list of patch dicts (crop, augmentation, targets).
        output_dir: run folder (``checkpoints/``, ``models/``, ``tensorboard/``).
        optimizer: callable ``(params, lr) -> optimiser``.
        batch_size: patches per step.
        learning_rate: default learning rate of the steps (1e-4 in the paper).
        samples, match_distance: see the loss.
        name: file name stem of the checkpoints and of the exported model.
        device, amp: torch device; mixed precision (CUDA only).
        resume: reuse finished steps.
        seed: seed of the patch stream (the step index is added).
        log_every: iterations between loss lines.
        progress: show a progress bar.
        train_handlers: ignite/MONAI handlers attached to the engine.
    """

    def __init__(
        self,
        network: nn.Module,
        steps: Sequence[Mapping],
        subjects: Sequence[dict],
        sampler: Callable,
        output_dir: str | os.PathLike,
        optimizer: Callable | None = None,
        batch_size: int = 1,
        learning_rate: float = 1e-4,
        samples: int = 300,
        match_distance: float = 2.0,
        name: str = "rcnn",
        device: str | torch.device = "cpu",
        amp: bool = False,
        resume: bool = True,
        seed: int = 0,
        log_every: int = 50,
        progress: bool = True,
        train_handlers: Sequence | None = None,
    ) -> None:
        super().__init__(train_handlers)
        if not steps:
            raise ValueError("no training steps given")
        for n, s in enumerate(steps):
            missing = [k for k in ("name", "train", "iterations", "weights") if k not in s]
            if missing:
                raise ValueError(f"training step {n} ({s.get('name', '?')}) lacks {missing}")
        self.network, self.steps, self.subjects, self.sampler = network, list(steps), subjects, sampler
        self.output_dir, self.name = Path(output_dir), name
        self.optimizer = optimizer or (lambda params, lr: torch.optim.Adam(params, lr=lr))
        self.batch_size, self.learning_rate = int(batch_size), float(learning_rate)
        self.samples, self.match_distance = int(samples), float(match_distance)
        self.device = torch.device(device)
        self.amp = as_bool(amp, "amp") and self.device.type == "cuda"
        self.resume, self.progress = as_bool(resume, "resume"), as_bool(progress, "progress")
        self.finished = FinishedNetworks(self.output_dir / "checkpoints", self.resume)
        self.seed, self.log_every = int(seed), int(log_every)
        self.trained: list[str] = []  # steps trained (not loaded) by the last run()

    def _tag(self, n: int) -> str:
        return f"{self.name}_{n}_{self.steps[n]['name']}"

    def checkpoint(self, n: int) -> Path:
        return self.finished.path(self._tag(n))

    @property
    def model_path(self) -> Path:
        return self.output_dir / "models" / f"{self.name}.pt"

    def loss(self, step: Mapping, n: int) -> MultiraterRCNNLoss:
        return MultiraterRCNNLoss(
            step["weights"],
            as_bool(step.get("sigmoid_regression", False), "sigmoid_regression"),
            self.samples,
            self.match_distance,
            seed=self.seed + n,
        )

    def run(self) -> Path:  # type: ignore[override]  # the plan is the steps: nothing to pass
        """Train every step after the last finished one, then write the model; returns its path."""
        net = self.network.to(self.device)
        self.trained = []
        done = [n for n in range(len(self.steps)) if self.finished.done(self._tag(n))]
        last = max(done) if done else -1
        if last >= 0:
            self.finished.load(net, self._tag(last), self.device)
            logger.info("resumed after step %d (%s)", last, self.steps[last]["name"])
        if last + 1 < len(self.steps):
            self.run_plan(range(last + 1, len(self.steps)))
        net.set_trainable(("backbone", "rpn", "rcn"))
        save_state(net, self.model_path)
        return self.model_path

    def run_step(self, n: int) -> tuple[str, None]:
        self._fit_step(n)
        self.trained.append(self.steps[n]["name"])
        return self._tag(n), None

    def _fit_step(self, n: int) -> None:
        step, net = self.steps[n], self.network
        tag = f"{n}_{step['name']}"
        net.set_trainable(list(step["train"]))
        params = [p for p in net.parameters() if p.requires_grad]
        loss_fn = self.loss(step, n)
        trainer = window_trainer(
            WindowStream(self.subjects, self.sampler, seed=self.seed + n),
            self.batch_size,
            int(step["iterations"]),
            device=self.device,
            network=net,
            optimizer=self.optimizer(params, float(step.get("learning_rate", self.learning_rate))),
            loss_function=loss_fn,
            prepare_batch=RCNNPrepareBatch(),
            amp=self.amp,
        )
        loss = from_engine(["loss"], first=True)
        every = max(self.log_every, 1)

        def log_terms(engine):
            if engine.state.iteration % every == 0:
                terms = ", ".join(f"{k} {v:.4f}" for k, v in loss_fn.last_terms.items())
                engine.logger.info("%s iteration %d: %s", tag, engine.state.iteration, terms)

        trainer.add_event_handler(Events.ITERATION_COMPLETED, log_terms)
        StatsHandler(name=logger.name, iteration_log=False, output_transform=loss).attach(trainer)
        TensorBoardStatsHandler(
            log_dir=str(self.output_dir / "tensorboard"),
            output_transform=lambda out: {
                f"{tag}/loss": loss(out),
                **{f"{tag}/{k}": v for k, v in loss_fn.last_terms.items()},
            },
        ).attach(trainer)
        attach_progress(trainer, tag, loss, self.progress)
        logger.info("step %s: training %s for %d iterations", tag, list(step["train"]), int(step["iterations"]))
        if int(step["iterations"]):
            trainer.run()
        self.finished.save(net, self._tag(n))
