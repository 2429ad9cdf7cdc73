# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""MONAI Label's detection hook for the main job's detector (``docs/monai_label.md``).

MONAI Label's bundle app treats a bundle whose folder name contains "detection" as a detection model: it runs the
config's ``pre_transforms`` (or ``preprocessing``) on ``{"image": path}``, sets ``detector.network`` to
``network_def`` with ``models/model.pt`` loaded, calls ``detector(batch, use_inferer=True)``, runs
``post_transforms`` (or ``postprocessing``) and writes the ``box`` and ``label`` keys as Slicer ROI markups
(centre and size in LPS millimetres). :class:`SlicerBoxDetector` is that ``detector``: microbleeds on an SWI or
T2* volume, and, through :class:`StructuralBoxes`, EPVS and lacunes on a T1, T2 or FLAIR volume (told by its file
name, as :mod:`bundle.data.discover` reads names).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from nibabel.affines import apply_affine

from ..transforms.array import head_mask
from ..utils import pad_rows
from .detections import objects_from_detector_table

__all__ = ["SlicerBoxDetector", "StructuralBoxes"]

RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])


class StructuralBoxes:
    """EPVS and lacune boxes of one T1, T2 or FLAIR volume: the main job's EPVS and lacune detector (its own config,
    :data:`bundle.inference.cohort.PARTS`, shipped weights) run on the volume's file in a temporary folder, its
    template registration affine only (boxes carry no region; the B-spline stage would add 10-15 s per volume).

    ``__call__(path, modality)`` returns ``(boxes (N, 6) LPS centre and side, labels (N,), scores (N,))``: label
    ``epvs_index`` or ``lacune_index``, side the detection's equivalent-sphere diameter, at least ``min_size_mm``.
    A volume the detector cannot run on (FLAIR alone is not a trained input) gives no box (one log line)."""

    def __init__(self, bundle_root, epvs_index: int = 2, lacune_index: int = 3, min_size_mm: float = 2.0,
                 device="cpu") -> None:  # fmt: skip
        self.bundle_root, self.device, self.min_size_mm = bundle_root, device, float(min_size_mm)
        self.index = {"epvs": int(epvs_index), "lacune": int(lacune_index)}

    def __call__(self, path: str, modality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import csv
        import json
        import tempfile
        from pathlib import Path

        from ..data.plan import plan
        from .cohort import run_part

        step = plan({"subject": "volume", "modalities": {modality: str(path)}})["structural"]
        if not step["run"]:  # the detector's trained inputs only, as in the main job
            logging.getLogger("bundle").warning("%s: no EPVS and lacune boxes: %s", path, step["why"])
            return np.zeros((0, 6)), np.zeros(0, int), np.zeros(0)
        with tempfile.TemporaryDirectory() as tmp:
            datalist = Path(tmp) / "volume.json"
            datalist.write_text(json.dumps({"testing": [{"subject": "volume", "image": [str(path)],
                                                         "modalities": [modality]}]}))  # fmt: skip
            settings = {"report": False, "progress": False, "device": self.device, "atlas_deformable": False}
            run_part("structural", self.bundle_root, str(datalist), tmp, settings)  # boxes carry no region
            table = Path(tmp) / "structural" / "detections.csv"
            rows = list(csv.DictReader(table.open(newline=""))) if table.is_file() else []
        world = np.array([[float(r[a]) for a in "xyz"] for r in rows], float).reshape(-1, 3)
        side = np.maximum([float(r["diameter_mm"]) for r in rows], self.min_size_mm).reshape(-1, 1).repeat(3, 1)
        labels = np.array([self.index[r["label"]] for r in rows], int)
        return np.concatenate([world * RAS_TO_LPS, side], 1), labels, np.array([float(r["score"]) for r in rows])


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
        structural: the EPVS and lacune boxes of a volume whose file name says T1, T2 or FLAIR
            (:class:`StructuralBoxes`); None: every volume is read as SWI.
    """

    def __init__(
        self,
        network: torch.nn.Module | None = None,
        threshold: float = 0.5,
        score_column: int = 3,
        label_index: int = 1,
        min_size_mm: float = 2.0,
        masker=None,
        structural: StructuralBoxes | None = None,
    ) -> None:
        self.network, self.masker, self.structural = network, masker, structural
        self.threshold, self.score_column = float(threshold), int(score_column)
        self.label_index, self.min_size_mm = int(label_index), float(min_size_mm)

    def eval(self) -> SlicerBoxDetector:
        if self.network is not None:
            self.network.eval()
        return self

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, use_inferer: bool = True) -> dict[str, torch.Tensor]:
        path, modality = _volume_modality(inputs)
        if self.structural is not None and modality in ("t1", "t2", "flair"):
            box, label, score = self.structural(path, modality)
            return {"box": torch.as_tensor(box, dtype=torch.float32).reshape(1, -1, 6),
                    "label": torch.as_tensor(label, dtype=torch.long).reshape(1, -1),
                    "score": torch.as_tensor(score, dtype=torch.float32).reshape(1, -1)}  # fmt: skip
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


def _volume_modality(inputs) -> tuple[str, str | None]:
    """The file a MONAI Label volume was read from and the modality its name says (None: not T1, T2 or FLAIR by
    name, or no file)."""
    from pathlib import Path

    from ..data.discover import _name_modality, _stem

    name = getattr(inputs, "meta", {}).get("filename_or_obj", "")
    name = str(name[0] if isinstance(name, (list, tuple)) and name else name)
    stem = _stem(Path(name).name) if name else None
    return name, (_name_modality(stem) if stem else None)
