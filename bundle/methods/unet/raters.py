# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Rater heads of the structural U-Net's detections (``docs/unet.md``): what each of the six raters would answer
(nothing, lacune, EPVS, undecided) about a detected object.

The multirater RCNN (Sudre et al.) puts one fully connected head per rater on each box's features. Here the heads
sit on each U-Net detection: :func:`object_features` describes a detected component by what makes raters disagree
(its volume, elongation and width, its class probability and score, its signal and the signal of the shell around
it in each modality, which modalities there are); :class:`RaterHeads` is one shared hidden layer and one linear head
per rater on those features. :func:`fit_rater_heads` fits them on the detections of training scans matched to their
objects' rater answers (an unmatched detection: every rater says "nothing"), as the RCNN's heads are trained.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ...data import load_volume
from ...data.datalist import load_datalist
from ...data.io import atomic_path
from ...data.vocabulary import ANSWERS, rater_columns
from ...metrics.lesion_matching import match_by_distance
from ...metrics.objects import objects_from_instances, objects_from_table

__all__ = ["HEAD_KINDS", "RaterHeads", "feature_names", "fit_rater_heads", "load_rater_heads", "object_features",
           "rater_columns", "rater_loss", "training_pairs"]  # fmt: skip

SHAPE_FEATURES = ("log_volume_mm3", "elongation", "width_mm", "score")


def feature_names(classes: Sequence[str], n_channels: int) -> tuple[str, ...]:
    """Names of :func:`object_features`' columns: shape, ``p_<class>`` for every class but the first, then per
    intensity channel ``c<k>_core``, ``c<k>_shell`` (contrast against the brain's median) and ``c<k>_present``."""
    per = [f"c{k}_{what}" for k in range(n_channels) for what in ("core", "shell", "present")]
    return (*SHAPE_FEATURES, *(f"p_{c}" for c in list(classes)[1:]), *per)


def object_features(images: np.ndarray, instance: np.ndarray, scores: np.ndarray, class_probs: np.ndarray,  # fmt: skip
                    inside: np.ndarray, brain: Sequence[float | None], spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Per object of ``instance`` (ids 1..N), the :func:`feature_names` columns, (N, F) float32.

    ``images`` (C, H, W, D): intensity channels (an absent one is 0 everywhere); ``scores`` (N,), ``class_probs``
    (N, n_classes): the detector's; ``inside``: the brain (boolean, same grid); ``brain``: the channels'
    :func:`bundle.methods.unet.brain_medians` there. Shape from the voxel coordinates in
    mm: the eigenvalues l1 >= l2 >= l3 of their covariance plus 1/12 of a voxel; elongation sqrt(l1 / l2), width
    4 sqrt(l2) (a disc's diameter). Contrast: median over the object (core) or its 26-connected one-voxel shell inside
    the brain (shell), divided by the channel's brain median, minus 1; 0 for an absent channel."""
    images, instance = np.asarray(images, np.float32), np.asarray(instance)
    spacing = np.asarray(spacing, float)
    n, n_ch = len(scores), images.shape[0]
    out = np.zeros((n, len(SHAPE_FEATURES) + class_probs.shape[1] - 1 + 3 * n_ch), np.float32)
    boxes = ndimage.find_objects(instance, max_label=n)
    for k, box in enumerate(boxes):
        if box is None:
            continue
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        obj = instance[box] == k + 1
        pts = np.argwhere(obj) * spacing
        cov = np.cov(pts.T) if len(pts) > 1 else np.zeros((3, 3))
        lam = np.sort(np.linalg.eigvalsh(cov))[::-1] + float(np.mean(spacing) ** 2) / 12.0
        shell = ndimage.binary_dilation(obj, np.ones((3, 3, 3), bool)) & ~obj & inside[box]
        row = [np.log1p(len(pts) * np.prod(spacing)), np.sqrt(lam[0] / lam[1]), 4.0 * np.sqrt(lam[1]), scores[k],
               *class_probs[k, 1:]]  # fmt: skip
        for x, ref in zip(images, brain):
            if not ref:  # an absent channel (None), or no signal in the brain
                row += [0.0, 0.0, 0.0]
                continue
            core = float(np.median(x[box][obj])) / ref - 1.0
            rim = float(np.median(x[box][shell])) / ref - 1.0 if shell.any() else core
            row += [core, rim, 1.0]
        out[k] = row
    return out


HEAD_KINDS = ("free", "ability")
TRUE_ANSWERS = 3  # what an object truly is: the first three answers (nothing = a false detection, lacune, EPVS)


class RaterHeads(nn.Module):
    """Rater heads on one hidden layer shared by all raters (on standardised features): (N, F) -> (N, n_raters, 4)
    logits over :data:`bundle.data.vocabulary.ANSWERS` (softmax gives each head's answer probabilities).

    ``kind``:
      - ``"free"``: one linear head per rater on the hidden layer (the multirater RCNN's fully connected heads).
      - ``"ability"``: an annotator model (item response with a per-rater confusion, after Dawid and Skene and the
        Rasch model). Shared by all raters, from the hidden layer: what the object truly is (a false detection,
        a lacune, an EPVS), how hard it is (the log-odds of a wrong answer, per true class) and which wrong answers
        it invites. Per rater only an ability (subtracted from that log-odds) and a leaning (added to the logits of
        the wrong answers, per true class): 1 + 3 x 4 numbers, which cannot learn where one rater happened to err.
        Its outputs are log-probabilities of the answers, summed over the true classes.
    """

    def __init__(self, n_features: int, n_raters: int = 6, hidden: int = 32, kind: str = "free") -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"rater head kind must be one of {list(HEAD_KINDS)}, got {kind!r}")
        self.kind, self.n_raters = kind, int(n_raters)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.shared = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU())
        n_a = len(ANSWERS)
        if kind == "free":
            self.heads = nn.ModuleList(nn.Linear(hidden, n_a) for _ in range(n_raters))
            return
        self.true_class = nn.Linear(hidden, TRUE_ANSWERS)
        self.difficulty = nn.Linear(hidden, TRUE_ANSWERS)
        self.wrong = nn.Linear(hidden, TRUE_ANSWERS * n_a)
        self.ability = nn.Parameter(torch.zeros(n_raters))
        self.leaning = nn.Parameter(torch.zeros(n_raters, TRUE_ANSWERS, n_a))
        right = torch.eye(TRUE_ANSWERS, n_a, dtype=torch.bool)  # the answer is the true class
        self.register_buffer("right", right, persistent=False)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The shared hidden layer on the standardised features."""
        return self.shared((x - self.mean) / self.std)

    def given_class(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``"ability"`` heads: log P(true class) (N, 3) and log P(answer | true class) per rater (N, R, 3, 4)."""
        h = self.hidden(x)
        log_class = torch.log_softmax(self.true_class(h), -1)
        err = self.difficulty(h)[:, None, :] - self.ability[None, :, None]  # (N, R, 3): log-odds of a wrong answer
        wrong = self.wrong(h).view(len(h), 1, TRUE_ANSWERS, -1) + self.leaning[None]
        wrong = torch.log_softmax(wrong.masked_fill(self.right, float("-inf")), -1)
        log_sig = nn.functional.logsigmoid
        given = torch.where(self.right, log_sig(-err)[..., None], log_sig(err)[..., None] + wrong)
        return log_class, given

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "free":
            h = self.hidden(x)
            return torch.stack([head(h) for head in self.heads], 1)
        log_class, given = self.given_class(x)
        return torch.logsumexp(log_class[:, None, :, None] + given, 2)


def load_rater_heads(path: str | os.PathLike, features: Sequence[str]) -> RaterHeads:
    """The heads saved by :func:`fit_rater_heads` (``torch.load(weights_only=True)``).

    Raises:
        ValueError: the file's features are not ``features`` (names the file and both lists)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if list(saved.get("features", [])) != list(features):
        raise ValueError(f"rater heads {path}: fitted on the features {saved.get('features')}, this detector gives "
                         f"{list(features)}")  # fmt: skip
    sd, kind = saved["state_dict"], saved.get("kind", "free")
    n_raters = sd["ability"].numel() if kind == "ability" else sum(k.startswith("heads.") and k.endswith(".weight")
                                                                   for k in sd)  # fmt: skip
    heads = RaterHeads(sd["mean"].numel(), n_raters, sd["shared.0.weight"].shape[0], kind)
    heads.load_state_dict(sd)
    return heads.eval()


def training_pairs(entry: dict, rows: list[dict], features: Sequence[str], max_distance_mm: float = 5.0,
                   unmatched: bool = True):  # fmt: skip
    """Features (N, F) of one scan's detection rows, each rater's answer index (N, n_raters) and what each
    detection truly is (N,; an index into the answers: nothing, lacune or EPVS): the answers about the object a
    detection is matched to (centre within ``max_distance_mm``, one-to-one, best score first) and its class; an
    unmatched detection is "nothing" and gets every rater "nothing" (``unmatched``) or is left out. Objects without
    rater answers are left out."""
    label = load_volume(entry["label"], entry["subject"], "label")
    lab = np.asarray(label[0]).astype(np.int64)
    records = {int(r["id"]): r for r in json.loads(Path(entry["lesions"]).read_text())} if entry.get("lesions") else {}
    ids = np.unique(lab[lab > 0])
    match = match_by_distance(objects_from_instances(lab, np.asarray(label.pixdim, float)),
                              objects_from_table(rows, np.asarray(label.pixdim, float)), max_distance_mm)  # fmt: skip
    n_raters = max([len(r.get("raters", [])) for r in records.values()] + [0])
    x, y, truth = [], [], []
    for row, m in zip(rows, match if len(rows) else []):
        record = records.get(int(ids[m]), {}) if m >= 0 else {"raters": ["nothing"] * n_raters, "class": "nothing"}
        answers = record.get("raters", [])
        if len(answers) != n_raters or not n_raters or (m < 0 and not unmatched):
            continue
        x.append([float(row[f"f_{f}"]) for f in features])
        y.append([ANSWERS.index(a) for a in answers])
        truth.append(ANSWERS.index(record["class"]))
    return (np.asarray(x, np.float32).reshape(-1, len(features)), np.asarray(y, np.int64).reshape(len(x), n_raters),
            np.asarray(truth, np.int64))


def rater_loss(heads: RaterHeads, x: torch.Tensor, answers: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The loss :func:`fit_rater_heads` minimises: for ``"free"`` heads the mean cross-entropy of the (N, R)
    ``answers``; for ``"ability"`` heads that of each answer given the (N,) ``truth`` plus the cross-entropy of the
    truth."""
    if heads.kind == "free":
        return nn.functional.cross_entropy(heads(x).reshape(-1, len(ANSWERS)), answers.reshape(-1))
    log_class, given = heads.given_class(x)
    rows = torch.arange(len(x))
    per_answer = given[rows[:, None], torch.arange(answers.shape[1])[None], truth[:, None], answers]
    return -per_answer.mean() - log_class[rows, truth].mean()


def fit_rater_heads(datalist: str, detections: str, output: str, split: str = "testing",
                    features: Sequence[str] | None = None, hidden: int = 32, steps: int = 3000, lr: float = 3e-3,
                    weight_decay: float = 1e-4, seed: int = 0, unmatched: bool = True,
                    kind: str = "free") -> dict:  # fmt: skip
    """Fit :class:`RaterHeads` on a detections table with feature columns (``f_<name>``, written by
    :class:`bundle.methods.unet.ClassMapDetections` with ``features: true``) of the datalist's ``split`` and save
    ``{"state_dict", "features", "kind"}`` to ``output`` (atomically; an existing file is an error). Full-batch Adam
    on the mean over raters of the cross-entropy (``kind`` "free"), or (``"ability"``) on that of each answer given
    what the detection truly is plus the cross-entropy of what it is (:func:`rater_loss`); ``unmatched``: detections
    matched to no object are examples of "nothing" for every rater (else they are left out, and the heads answer
    about real objects only).
    Returns and prints the number of objects, their answers and the loss."""
    from ...inference import read_detections

    if Path(output).exists():
        raise FileExistsError(f"rater heads {output} exist; choose another path")
    table = read_detections(detections)
    names = list(features) if features else [c[2:] for c in next(iter(table.values()), [{}])[0] if c.startswith("f_")]
    pairs = [training_pairs(e, table.get(e["subject"], []), names, unmatched=unmatched)
             for e in load_datalist(datalist, split)]  # fmt: skip
    x, y, truth = (torch.as_tensor(np.concatenate([p[k] for p in pairs])) for k in range(3))
    if not len(x):
        raise ValueError(f"no detection of {detections} has rater answers to fit the heads on")
    torch.manual_seed(seed)
    heads = RaterHeads(x.shape[1], y.shape[1], hidden, kind)
    heads.mean.copy_(x.mean(0)), heads.std.copy_(x.std(0).clamp_min(1e-3))
    opt = torch.optim.Adam(heads.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        loss = rater_loss(heads, x, y, truth)
        loss.backward()
        opt.step()
    with atomic_path(output) as tmp:
        torch.save({"state_dict": heads.state_dict(), "features": names, "kind": kind}, tmp)
    out = {"objects": len(x), "answers": {a: int((y == i).sum()) for i, a in enumerate(ANSWERS)},
           "loss": float(loss.detach()), "features": names, "output": str(output)}  # fmt: skip
    print(json.dumps(out))
    return out
