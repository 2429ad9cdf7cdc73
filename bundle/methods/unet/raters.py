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
from ...data.vocabulary import ANSWERS
from ...metrics.lesion_matching import match_by_distance
from ...metrics.objects import objects_from_instances, objects_from_table

__all__ = ["RaterHeads", "feature_names", "fit_rater_heads", "load_rater_heads", "object_features",
           "rater_columns", "training_pairs"]  # fmt: skip

SHAPE_FEATURES = ("log_volume_mm3", "elongation", "width_mm", "score")


def feature_names(classes: Sequence[str], n_channels: int) -> tuple[str, ...]:
    """Names of :func:`object_features`' columns: shape, ``p_<class>`` for every class but the first, then per
    intensity channel ``c<k>_core``, ``c<k>_shell`` (contrast against the brain's median) and ``c<k>_present``."""
    per = [f"c{k}_{what}" for k in range(n_channels) for what in ("core", "shell", "present")]
    return (*SHAPE_FEATURES, *(f"p_{c}" for c in list(classes)[1:]), *per)


def rater_columns(n_raters: int) -> tuple[str, ...]:
    """Table columns of the heads: ``rater<k>`` (the head's answer), then ``rater<k>_p_<answer>`` per head."""
    answers = tuple(f"rater{r + 1}" for r in range(n_raters))
    return (*answers, *(f"{a}_p_{x}" for a in answers for x in ANSWERS))


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


class RaterHeads(nn.Module):
    """One hidden layer shared by all raters (on standardised features), then one linear head per rater giving
    logits over :data:`bundle.data.vocabulary.ANSWERS`: (N, F) -> (N, n_raters, 4)."""

    def __init__(self, n_features: int, n_raters: int = 6, hidden: int = 32) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.shared = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(hidden, len(ANSWERS)) for _ in range(n_raters))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.shared((x - self.mean) / self.std)
        return torch.stack([head(h) for head in self.heads], 1)


def load_rater_heads(path: str | os.PathLike, features: Sequence[str]) -> RaterHeads:
    """The heads saved by :func:`fit_rater_heads` (``torch.load(weights_only=True)``).

    Raises:
        ValueError: the file's features are not ``features`` (names the file and both lists)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if list(saved.get("features", [])) != list(features):
        raise ValueError(f"rater heads {path}: fitted on the features {saved.get('features')}, this detector gives "
                         f"{list(features)}")  # fmt: skip
    sd = saved["state_dict"]
    heads = RaterHeads(sd["mean"].numel(), len([k for k in sd if k.endswith(".weight") and "heads" in k]),
                       sd["shared.0.weight"].shape[0])  # fmt: skip
    heads.load_state_dict(sd)
    return heads.eval()


def training_pairs(entry: dict, rows: list[dict], features: Sequence[str], max_distance_mm: float = 5.0,
                   unmatched: bool = True):  # fmt: skip
    """Features (N, F) of one scan's detection rows and each rater's answer index (N, n_raters): the answers about
    the object a detection is matched to (centre within ``max_distance_mm``, one-to-one, best score first); an
    unmatched detection gets every rater "nothing" (``unmatched``) or is left out. Objects without rater answers
    are left out."""
    label = load_volume(entry["label"], entry["subject"], "label")
    lab = np.asarray(label[0]).astype(np.int64)
    records = {int(r["id"]): r for r in json.loads(Path(entry["lesions"]).read_text())} if entry.get("lesions") else {}
    ids = np.unique(lab[lab > 0])
    match = match_by_distance(objects_from_instances(lab, np.asarray(label.pixdim, float)),
                              objects_from_table(rows, np.asarray(label.pixdim, float)), max_distance_mm)  # fmt: skip
    n_raters = max([len(r.get("raters", [])) for r in records.values()] + [0])
    x, y = [], []
    for row, m in zip(rows, match if len(rows) else []):
        answers = records.get(int(ids[m]), {}).get("raters", []) if m >= 0 else ["nothing"] * n_raters
        if len(answers) != n_raters or not n_raters or (m < 0 and not unmatched):
            continue
        x.append([float(row[f"f_{f}"]) for f in features])
        y.append([ANSWERS.index(a) for a in answers])
    return np.asarray(x, np.float32).reshape(-1, len(features)), np.asarray(y, np.int64).reshape(len(x), n_raters)


def fit_rater_heads(datalist: str, detections: str, output: str, split: str = "testing",
                    features: Sequence[str] | None = None, hidden: int = 32, steps: int = 3000, lr: float = 3e-3,
                    weight_decay: float = 1e-4, seed: int = 0, unmatched: bool = True) -> dict:  # fmt: skip
    """Fit :class:`RaterHeads` on a detections table with feature columns (``f_<name>``, written by
    :class:`bundle.methods.unet.ClassMapDetections` with ``features: true``) of the datalist's ``split`` and save
    ``{"state_dict", "features"}`` to ``output`` (atomically; an existing file is an error). Full-batch Adam on the
    mean over raters of the cross-entropy; ``unmatched``: detections matched to no object are examples of "nothing"
    for every rater (else they are left out, and the heads answer about real objects only).
    Returns and prints the number of objects, their answers and the loss."""
    from ...inference import read_detections

    if Path(output).exists():
        raise FileExistsError(f"rater heads {output} exist; choose another path")
    table = read_detections(detections)
    names = list(features) if features else [c[2:] for c in next(iter(table.values()), [{}])[0] if c.startswith("f_")]
    xs, ys = [], []
    for entry in load_datalist(datalist, split):
        x, y = training_pairs(entry, table.get(entry["subject"], []), names, unmatched=unmatched)
        xs.append(x), ys.append(y)
    x, y = torch.as_tensor(np.concatenate(xs)), torch.as_tensor(np.concatenate(ys))
    if not len(x):
        raise ValueError(f"no detection of {detections} has rater answers to fit the heads on")
    torch.manual_seed(seed)
    heads = RaterHeads(x.shape[1], y.shape[1], hidden)
    heads.mean.copy_(x.mean(0)), heads.std.copy_(x.std(0).clamp_min(1e-3))
    opt = torch.optim.Adam(heads.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(heads(x).reshape(-1, len(ANSWERS)), y.reshape(-1))
        loss.backward()
        opt.step()
    with atomic_path(output) as tmp:
        torch.save({"state_dict": heads.state_dict(), "features": names}, tmp)
    out = {"objects": len(x), "answers": {a: int((y == i).sum()) for i, a in enumerate(ANSWERS)},
           "loss": float(loss.detach()), "features": names, "output": str(output)}  # fmt: skip
    print(json.dumps(out))
    return out
