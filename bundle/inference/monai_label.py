# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""MONAI Label's detection hook for the main job's detector (``docs/monai_label.md``).

MONAI Label's bundle app treats a bundle whose folder name contains "detection" as a detection model: it runs the
config's ``pre_transforms`` (or ``preprocessing``) on ``{"image": path}``, sets ``detector.network`` to
``network_def`` with ``models/model.pt`` loaded, calls ``detector(batch, use_inferer=True)``, runs
``post_transforms`` (or ``postprocessing``) and writes the ``box`` and ``label`` keys as Slicer ROI markups
(centre and size in LPS millimetres). :class:`SlicerBoxDetector` is that ``detector``.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from nibabel.affines import apply_affine

from ..transforms.array import head_mask
from ..utils import pad_rows
from .detections import objects_from_detector_table

__all__ = ["SlicerBoxDetector"]

RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])


class SlicerBoxDetector:
    """Run the detector on a preprocessed batch and give MONAI Label's detection keys.

    The input is the preprocessed image batch (B, 1, H, W, D), a MONAI ``MetaTensor`` whose affine maps voxels to
    RAS millimetres (as everywhere in this bundle). MONAI Label passes only the image, so the brain region is the
    ``masker``'s (the main job's ``brain_mask``: the brain-mask network, as in the main job for a subject without a
    mask), or without one the image's Otsu head mask (:func:`bundle.transforms.head_mask`). Detections with
    ``score >= threshold`` become boxes centred on the detection (world coordinates, LPS: x
    and y of RAS negated) whose side is the detection's equivalent-sphere diameter, at least ``min_size_mm``.

    Returns ``{"box": (B, N, 6) [cx, cy, cz, sx, sy, sz], "label": (B, N) class index, "score": (B, N)}``; rows
    beyond a volume's own N are NaN (batches of one, as MONAI Label sends, have none).

    Args:
        network: the detector (``network_def``: :class:`bundle.methods.twostage.TwoStageCMBDetector`); MONAI Label
            sets it.
        threshold: the operating point (the main job's ``detection_threshold``).
        score_column: detector table column used as the score.
        label_index: class index written as ``label`` (``network_data_format`` ``channel_def``: 1 = cmb).
        min_size_mm: smallest box side.
        masker: a dictionary transform giving ``{"image": volume}`` its ``mask`` (e.g.
            :class:`bundle.transforms.BrainMaskd`); None: the Otsu head mask.
    """

    def __init__(
        self,
        network: torch.nn.Module | None = None,
        threshold: float = 0.5,
        score_column: int = 3,
        label_index: int = 1,
        min_size_mm: float = 2.0,
        masker=None,
    ) -> None:
        self.network, self.masker = network, masker
        self.threshold, self.score_column = float(threshold), int(score_column)
        self.label_index, self.min_size_mm = int(label_index), float(min_size_mm)

    def eval(self) -> SlicerBoxDetector:
        if self.network is not None:
            self.network.eval()
        return self

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, use_inferer: bool = True) -> dict[str, torch.Tensor]:
        if self.network is None:
            raise ValueError("SlicerBoxDetector has no network: set .network (MONAI Label does) first")
        if inputs.ndim != 5:
            raise ValueError(f"expected a batch (B, C, H, W, D), got shape {tuple(inputs.shape)}")
        affines = self._affines(inputs)
        plain = inputs.as_tensor() if hasattr(inputs, "as_tensor") else inputs
        masks = torch.stack([self._mask(v.cpu(), a) for v, a in zip(plain, affines)]).to(plain.device)
        out = self.network(plain, masks.float())
        table = out["table"] if isinstance(out, dict) else out
        boxes, labels, scores = [], [], []
        for b in range(plain.shape[0]):
            spacing = affine_to_spacing(affines[b])
            objs = objects_from_detector_table(table[b], spacing, self.score_column, min_score=self.threshold)
            world = apply_affine(affines[b], objs.centres.reshape(-1, 3))
            side = np.maximum(objs.diameters_mm, self.min_size_mm)[:, None].repeat(3, 1)
            boxes.append(np.concatenate([world * RAS_TO_LPS, side], 1))
            labels.append(np.full(len(objs), self.label_index))
            scores.append(np.asarray(objs.scores, float))
        box = pad_rows([torch.as_tensor(b, dtype=torch.float32).reshape(-1, 6) for b in boxes])
        label = pad_rows([torch.as_tensor(v, dtype=torch.long) for v in labels], fill=-1)
        score = pad_rows([torch.as_tensor(s, dtype=torch.float32) for s in scores])
        return {"box": box, "label": label, "score": score}

    def _mask(self, volume: torch.Tensor, affine: np.ndarray) -> torch.Tensor:
        """(1, H, W, D) brain region of one preprocessed volume (C, H, W, D) on its grid."""
        if self.masker is None:
            return torch.as_tensor(head_mask(volume.numpy()))[None]
        image = MetaTensor(volume, affine=torch.as_tensor(affine))
        return torch.as_tensor(self.masker({"image": image})["mask"]).reshape(1, *volume.shape[1:]) > 0

    @staticmethod
    def _affines(inputs: torch.Tensor) -> list[np.ndarray]:
        affine = getattr(inputs, "affine", None)
        if affine is None:
            raise ValueError("the input has no affine: SlicerBoxDetector needs a MetaTensor (MONAI's LoadImage)")
        a = np.asarray(affine.cpu() if hasattr(affine, "cpu") else affine, float)
        return [a] * inputs.shape[0] if a.ndim == 2 else [a[b] for b in range(inputs.shape[0])]
