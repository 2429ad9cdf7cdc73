# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The training-plan engine and the one resume mechanism the multi-network methods share."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from torch import nn

from bundle.engines import FinishedNetworks, TrainingPlan


def test_finished_networks_are_reused_only_when_resuming(tmp_path):
    net = nn.Linear(3, 2)
    finished = FinishedNetworks(tmp_path / "checkpoints")
    assert not finished.done("a")
    finished.save(net, "a")
    assert finished.done("a") and not FinishedNetworks(tmp_path / "checkpoints", resume=False).done("a")
    other = nn.Linear(3, 2)
    finished.load(other, "a")
    assert torch.equal(other.weight, net.weight) and torch.equal(other.bias, net.bias)


class _Plan(TrainingPlan):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def run_step(self, step):
        self.seen.append(step)
        return f"s{step}", (None if step == 1 else float(step) / 10)


def test_the_plan_runs_each_step_once_in_order_and_reports_losses():
    plan = _Plan()
    outputs = []
    plan.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(e.state.output))
    plan.run_plan([0, 1, 2])
    assert plan.seen == [0, 1, 2]
    assert outputs == [[{"step": "s0", "loss": 0.0}], [{"step": "s1", "loss": None}], [{"step": "s2", "loss": 0.2}]]
    assert plan.step_metrics == {"s0_loss": 0.0, "s2_loss": 0.2}  # steps without a loss report none


def test_the_plan_attaches_handlers_and_runs_one_epoch_only():
    class Counter:
        n = 0

        def attach(self, engine):
            engine.add_event_handler(Events.ITERATION_COMPLETED, self.count)

        def count(self, engine):
            self.n += 1

    counter = Counter()
    _Plan(train_handlers=[counter]).run_plan([5, 6])
    assert counter.n == 2
    with pytest.raises(ValueError, match="max_epochs must be 1"):
        _Plan(max_epochs=2)
