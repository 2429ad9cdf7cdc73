# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The staged (progressive) RCNN training: each step trains only its parts with only its loss terms, and a rerun
continues after the last finished step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, RandWeightedCropd, SelectItemsd

from bundle.methods.rcnn import (
    MultiraterRCNN,
    RPNTargetsd,
    StagedTraining,
    highresnet_layers,
    object_table,
    sampling_weights,
    signed_distance,
)

STEPS = [
    {"name": "backbone", "train": ["backbone"], "iterations": 2, "weights": {"distance": 1.0}},
    {"name": "rpn_cls", "train": ["rpn"], "iterations": 2, "weights": {"rpn_cls": 1.0, "rpn_reg": 1.0},
     "sigmoid_regression": True},
    {"name": "rcn_joint", "train": ["rcn"], "iterations": 2, "weights": {"rcn_cls": 1.0, "rcn_raters": 0.5,
     "rcn_reg": 0.5}},
]  # fmt: skip
PARTS = {"backbone": ("backbone.", "distance_head."), "rpn": ("rpn.",), "rcn": ("rcn.",)}


def _subject(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    label = np.zeros((24, 24, 24), np.int32)
    records = []
    for n in range(3):
        c = rng.integers(4, 20, 3)
        label[c[0] - 1 : c[0] + 2, c[1], c[2]] = n + 1
        records.append({"id": n + 1, "class": "epvs", "raters": ["epvs"] * 5 + ["nothing"]})
    image = rng.normal(0, 0.1, (3, 24, 24, 24)).astype(np.float32) + (label > 0)
    affine = torch.eye(4, dtype=torch.float64)
    return {
        "image": MetaTensor(torch.as_tensor(image), affine=affine),
        "distance": signed_distance(label)[None],
        "weights": sampling_weights(label, {r["id"]: "epvs" for r in records})[None],
        "objects": object_table(label, records, affine.numpy()),
    }


def _training(out, steps=STEPS, resume=True):
    torch.manual_seed(0)
    net = MultiraterRCNN(3, highresnet_layers((4, 4, 4, 8, 8), 1), 4, 4, 8, patch_size=(16, 16, 16), patch_margin=2)
    sampler = Compose(
        [
            RandWeightedCropd(["image", "distance"], w_key="weights", spatial_size=(16, 16, 16)),
            RPNTargetsd("image"),
            SelectItemsd(["image", "distance", "rpn_target", "boxes"]),
        ]
    )
    return StagedTraining(
        net, steps, [_subject(1), _subject(2)], sampler, out, batch_size=2, learning_rate=1e-2, progress=False,
        name="rcnn_detector", resume=resume,
    )  # fmt: skip


def _changed(before: dict, after: dict) -> set[str]:
    parts = set()
    for k, v in before.items():
        if not torch.equal(v, after[k]):
            parts |= {p for p, prefixes in PARTS.items() if k.startswith(prefixes)}
    return parts


def test_each_step_trains_only_its_parts_and_terms(tmp_path):
    run = _training(tmp_path)
    initial = {k: v.clone() for k, v in run.network.state_dict().items()}
    path = run.run()
    assert run.trained == ["backbone", "rpn_cls", "rcn_joint"]
    states = [initial] + [torch.load(run.checkpoint(n), weights_only=True) for n in range(3)]
    for n, step in enumerate(STEPS):
        assert _changed(states[n], states[n + 1]) == set(step["train"]), step["name"]
    final = torch.load(path, weights_only=True)
    assert all(torch.equal(final[k], states[-1][k]) for k in final)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for n, step in enumerate(STEPS):
        terms = {t.split("/", 1)[1] for t in tags if t.startswith(f"{n}_{step['name']}/")}
        assert terms == {"loss", *step["weights"]}, step["name"]
        assert len(events.Scalars(f"{n}_{step['name']}/loss")) == 2


def test_rerun_continues_after_the_last_finished_step(tmp_path):
    first = _training(tmp_path)
    first.run()
    done = torch.load(first.model_path, weights_only=True)
    again = _training(tmp_path)
    again.run()
    assert again.trained == []
    assert all(torch.equal(v, torch.load(again.model_path, weights_only=True)[k]) for k, v in done.items())
    again.checkpoint(2).unlink()
    third = _training(tmp_path)
    third.run()
    assert third.trained == ["rcn_joint"]
    fresh = _training(tmp_path, resume=False)
    fresh.run()
    assert fresh.trained == ["backbone", "rpn_cls", "rcn_joint"]


def test_bad_steps_are_reported(tmp_path):
    with pytest.raises(ValueError, match="step 0 \\(backbone\\) lacks \\['weights'\\]"):
        _training(tmp_path, steps=[{"name": "backbone", "train": ["backbone"], "iterations": 1}])
    with pytest.raises(ValueError, match="no training steps"):
        _training(tmp_path, steps=[])
