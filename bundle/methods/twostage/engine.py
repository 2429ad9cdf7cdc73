# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Training of the two-stage microbleed detector (Rau et al.): out-of-fold mimic mining, both ensembles, export.

Steps of :meth:`TwoStageTraining.run` (every piece is declared in ``configs/twostage/train.yaml``):

1. Leave-k-out folds over the training subjects (k = 2: the paper's leave-two-out). Per fold, the stage-1
   ensemble is trained on the other subjects and run on the held-out ones: its candidates at
   ``mining_threshold`` (0.15) that are not microbleeds are the held-out scans' mimics, written to
   ``output_dir/mimics/<subject>_mimics.csv``; its candidates at the detector's threshold are the out-of-fold
   stage-1 detections.
2. With ``crossval``: per fold, the stage-2 ensemble is trained on the other subjects (with their mined
   mimics) and scores the held-out candidates: the out-of-fold two-stage detections. Both tables are evaluated
   per fold and pooled (``output_dir/crossval/``).
3. The final stage-1 ensemble is trained on all subjects, the final stage-2 ensemble on all subjects with all
   mined mimics, and the whole detector is saved as one state dict (``output_dir/models/cmb_detector.pt``).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import ignite.distributed as idist
import numpy as np
import torch
from monai.data.utils import affine_to_spacing
from nibabel.affines import apply_affine

from ...data.io import atomic_path, write_json
from ...engines.plan import TrainingPlan
from ...engines.runs import save_state
from ...engines.windows import WindowTraining
from ...evaluation.evaluate import evaluate
from ...inference.detections import input_grid_rows, write_detections
from ...utils import as_bool
from .candidates import candidates_from_map

__all__ = ["MIMIC_COLUMNS", "TwoStageTraining", "leave_k_out", "read_mimics", "write_mimics"]

logger = logging.getLogger(__name__)

MIMIC_COLUMNS = ("subject", "i", "j", "k", "x", "y", "z", "stage1_score", "fold")


def leave_k_out(n: int, k: int = 2) -> list[list[int]]:
    """Consecutive held-out groups of ``k`` indices covering ``range(n)`` (the last group may be smaller)."""
    if n < 2 or k < 1 or k >= n:
        raise ValueError(f"leave-{k}-out needs 1 <= k < n subjects, got k={k}, n={n}")
    return [list(range(s, min(s + k, n))) for s in range(0, n, k)]


def write_mimics(path: str | os.PathLike, subject: str, voxels: np.ndarray, affine, scores, fold: int) -> Path:
    """Write one scan's mined mimics (voxel and world coordinates, stage-1 score) atomically as CSV."""
    voxels = np.asarray(voxels, float).reshape(-1, 3)
    affine = np.asarray(affine, float)
    world = apply_affine(affine, voxels)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(MIMIC_COLUMNS)
        for v, x, s in zip(voxels, world, np.asarray(scores, float)):
            w.writerow([subject, *(int(a) for a in v), *(round(float(a), 3) for a in x), round(float(s), 6), fold])
    return Path(path)


def read_mimics(path: str | os.PathLike, with_scores: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """(M, 3) int voxel coordinates of a mimics file written by :func:`write_mimics` (with ``with_scores``, also
    their (M,) stage-1 scores).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the header is not the mimics header or a value is not a number (message names the file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mimics file {path} does not exist")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != MIMIC_COLUMNS:
        raise ValueError(f"{path}: not a mimics file (expected the header {','.join(MIMIC_COLUMNS)})")
    try:
        vox = np.asarray([[int(r[1]), int(r[2]), int(r[3])] for r in rows[1:]], int).reshape(-1, 3)
        return (vox, np.asarray([float(r[7]) for r in rows[1:]], float)) if with_scores else vox
    except (ValueError, IndexError) as err:
        raise ValueError(f"{path}: bad row in the mimics file: {err}") from err


class TwoStageTraining(TrainingPlan):
    """Train the two-stage detector on a list of subjects; see the module docstring for the steps.

    A :class:`~bundle.engines.TrainingPlan` whose steps are one per ensemble member to fit, one mimic-mining pass
    per fold, the cross-validation and the export; the config declares it as ``train#trainer`` with
    ``train#handlers`` (e.g. ``StatsHandler``, and the ``MLFlowHandler`` that ``--tracking mlflow`` adds). A step's
    loss is the mean loss of the fit's last iterations; at the end ``state.metrics`` holds every fit's final loss
    (``<tag>_loss``), the number of mimics mined and, with ``crossval``, the out-of-fold sensitivity and FP per
    scan of both stages. Each member's own loss curve goes to TensorBoard
    (:class:`~bundle.engines.windows.WindowTraining`).

    Args:
        subjects: preprocessed training entries (``image`` (1, H, W, D) with its affine, ``label`` instance map,
            ``mask``, ``centres``, ``subject``), e.g. a MONAI ``PersistentDataset`` of the preprocessing.
        stage1: the stage-1 ensemble members (:class:`WindowTraining`, U-Nets).
        stage2: the stage-2 ensemble members (:class:`WindowTraining`, mimic CNNs).
        detector_def: callable ``(stage1=[nets], stage2=[nets]) -> TwoStageCMBDetector``.
        output_dir: run folder.
        fold_size: subjects held out per fold (2: leave-two-out; at most half the subjects, so a small cohort still
            gets two folds).
        mining_threshold: stage-1 threshold of the mimic mining (0.15).
        mimic_clearance_mm: a mined candidate closer than this to a microbleed centre is not a mimic.
        crossval: also train stage 2 per fold and evaluate both stages out of fold (needs ``datalist``).
        datalist, split: where ``subjects`` come from; the cross-validation evaluates against their labels.
        match_rule, match_kwargs: lesion-wise matching of the cross-validation figures.
        mimics_key: entry key of the mined mimics (read by the stage-2 sampler); their stage-1 scores go under
            ``<mimics_key>_scores``.
        train_handlers: ignite/MONAI handlers to attach (``train#handlers``; the name ``SupervisedTrainer`` uses).
        init_checkpoint: fine-tuning (``configs/finetune.yaml``): a detector state dict (e.g. ``models/model.pt``);
            its stage-1 ensemble mines the mimics of every training scan (it never saw them, so no folds are
            needed), and each final member starts from its weights in that file instead of random ones.
        max_epochs: passes over the plan; must be 1 (the plan is run once; train longer with the members'
            ``iterations``). Declared so that ``train#trainer#max_epochs`` exists, as MONAI bundles have it.
    """

    def __init__(
        self,
        subjects: Sequence[dict],
        stage1: Sequence[WindowTraining],
        stage2: Sequence[WindowTraining],
        detector_def: Callable,
        output_dir: str | os.PathLike,
        fold_size: int = 2,
        mining_threshold: float = 0.15,
        mimic_clearance_mm: float = 5.0,
        crossval: bool = False,
        match_rule: str = "distance_mm",
        match_kwargs: dict | None = None,
        mimics_key: str = "mined_mimics",
        detector_name: str = "cmb_detector.pt",
        datalist: str | None = None,
        split: str = "training",
        train_handlers: Sequence | None = None,
        max_epochs: int = 1,
        init_checkpoint: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(train_handlers, max_epochs)
        self.subjects = subjects
        self.stage1, self.stage2, self.detector_def = list(stage1), list(stage2), detector_def
        self.output_dir = Path(output_dir)
        self.fold_size, self.mining_threshold = int(fold_size), float(mining_threshold)
        self.mimic_clearance_mm, self.crossval = float(mimic_clearance_mm), as_bool(crossval, "crossval")
        self.match_rule, self.match_kwargs = match_rule, dict(match_kwargs or {})
        self.mimics_key, self.detector_name = mimics_key, detector_name
        self.datalist, self.split = datalist, split
        self.init_checkpoint = Path(init_checkpoint) if init_checkpoint else None
        if self.init_checkpoint is not None and self.crossval:
            raise ValueError("crossval trains fold networks from scratch; it cannot be combined with init_checkpoint")
        if self.crossval and not datalist:
            raise ValueError("crossval needs the datalist the subjects come from")

    # -- helpers ----------------------------------------------------------------------------------------------
    def _mimics(self, entry: dict, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidates of ``prob`` at the mining threshold that touch no microbleed and lie clear of every centre."""
        image = entry["image"]
        spacing = affine_to_spacing(np.asarray(image.affine, float))
        cands = candidates_from_map(prob, self.mining_threshold)
        if not len(cands):
            return np.zeros((0, 3), int), np.zeros(0)
        label = np.asarray(entry["label"])[0]
        touches = np.zeros(len(cands), bool)
        hit_ids = np.unique(cands.instance[label > 0])
        touches[hit_ids[hit_ids > 0] - 1] = True
        centres = np.asarray(entry["centres"], float).reshape(-1, 3)  # stored once by ObjectCentresd
        if len(centres):
            d = np.linalg.norm((cands.centres[:, None] - centres[None]) * spacing, axis=2).min(1)
            touches |= d < self.mimic_clearance_mm
        keep = ~touches
        return cands.centres[keep].astype(int), cands.scores[keep]

    def _rows(self, entry: dict, table: torch.Tensor) -> list[dict]:
        """Detections on the input grid (the datalist's labels), from a table on the working grid."""
        return input_grid_rows(str(entry["subject"]), table, entry["image"], label="cmb")[0]

    def _detector(self, stage1, stage2=()):
        return self.detector_def(stage1=list(stage1), stage2=list(stage2)).eval()

    def _fold_size(self, n: int) -> int:
        """``fold_size``, but at most half the subjects (rounded up), so there are always at least two folds."""
        return max(1, min(self.fold_size, (n + 1) // 2))

    def _init_state(self, stage: int, m: int) -> dict:
        """Member ``m`` of ``stage`` in ``init_checkpoint`` (keys ``stage<stage>.<m>.*`` of the detector)."""
        if "init" not in self.__dict__:
            if not self.init_checkpoint.is_file():
                raise FileNotFoundError(f"init_checkpoint {self.init_checkpoint} does not exist")
            self.init = torch.load(self.init_checkpoint, map_location=self._device(), weights_only=True)
        prefix = f"stage{stage}.{m}."
        state = {k[len(prefix) :]: v for k, v in self.init.items() if k.startswith(prefix)}
        if not state:
            raise ValueError(f"init_checkpoint {self.init_checkpoint} has no member {prefix}* (networks differ?)")
        return state

    def _init_members(self, stage: int) -> list:
        members = self.stage1 if stage == 1 else self.stage2
        nets = []
        for m, member in enumerate(members):
            net = member.new_network()
            net.load_state_dict(self._init_state(stage, m))
            nets.append(net.eval())
        return nets

    def _device(self) -> torch.device:
        return self.stage1[0].device

    def _volume(self, entry: dict, key: str) -> torch.Tensor:
        return torch.as_tensor(np.asarray(entry[key]), dtype=torch.float32, device=self._device())

    # -- the plan and its steps -------------------------------------------------------------------------------
    def plan(self, n_subjects: int) -> list[tuple]:
        """The steps for ``n_subjects``: per fold the stage-1 fits and the mining, the cross-validation, the
        final fits, the export."""
        steps: list[tuple] = []
        if self.init_checkpoint is not None:  # fine-tuning: the given detector's stage 1 mines every scan
            steps += [("mine_init",)]
            steps += [("final_fit", 1, m) for m in range(len(self.stage1))]
            steps += [("final_fit", 2, m) for m in range(len(self.stage2))]
            return steps + [("export",)]
        folds = leave_k_out(n_subjects, self._fold_size(n_subjects))
        for f in range(len(folds)):
            steps += [("fold_fit", f, m) for m in range(len(self.stage1))] + [("mine", f)]
        steps += [("crossval",)] if self.crossval else []
        steps += [("final_fit", 1, m) for m in range(len(self.stage1))]
        steps += [("final_fit", 2, m) for m in range(len(self.stage2))]
        return steps + [("export",)]

    def run(self) -> dict:  # type: ignore[override]  # the plan is the data: nothing to pass
        """Run every step; return paths and the cross-validation figures (when computed)."""
        subjects = [dict(s) for s in self.subjects]
        ids = [str(s["subject"]) for s in subjects]
        if len(set(ids)) != len(ids):
            raise ValueError(f"subject ids are not unique: {sorted(i for i in set(ids) if ids.count(i) > 1)}")
        n = len(subjects)
        folds = [list(range(n))] if self.init_checkpoint else leave_k_out(n, self._fold_size(n))
        logger.info("two-stage training on %d subjects, %d folds of <= %d (process %d of %d)", len(subjects),
                    len(folds), len(folds[0]), idist.get_rank(), idist.get_world_size())  # fmt: skip
        self._run = {"subjects": subjects, "ids": ids, "folds": folds, "fold_nets": {}, "stage1_rows": [],
                     "final": {1: {}, 2: {}},
                     "out": {"folds": [[ids[i] for i in held] for held in folds],
                             "mimics_dir": str(self.output_dir / "mimics")}}  # fmt: skip
        self.run_plan(self.plan(len(subjects)))
        return self._run["out"]

    def run_step(self, step: tuple) -> tuple[str, float | None]:
        run = {"fold_fit": self._fold_fit, "mine": self._mine, "mine_init": self._mine, "crossval": self._cv_step,
               "final_fit": self._final_fit, "export": self._export}[step[0]]  # fmt: skip
        return run(step)

    def _fold_fit(self, step: tuple) -> tuple[str, float | None]:
        ctx, (f, m) = self._run, step[1:]
        subjects, held, member = ctx["subjects"], ctx["folds"][f], self.stage1[m]
        name = f"fold{f:02d}_{member.name}"
        train = [subjects[i] for i in range(len(subjects)) if i not in held]
        ctx["fold_nets"].setdefault(f, {})[m] = member.fit(train, name)
        return name, member.last_loss

    def _mine(self, step: tuple) -> tuple[str, None]:
        ctx = self._run
        subjects, ids, folds = ctx["subjects"], ctx["ids"], ctx["folds"]
        f = step[1] if step[0] == "mine" else 0
        name = f"fold{f:02d}_mining" if step[0] == "mine" else "init_mining"
        if step[0] == "mine":
            det = self._detector([ctx["fold_nets"][f][m] for m in range(len(self.stage1))])
        else:
            det = self._detector(self._init_members(1))  # stage 1 alone, as in the fold mining
        for i in folds[f]:
            entry = subjects[i]
            image, mask = self._volume(entry, "image"), self._volume(entry, "mask")
            with torch.no_grad():
                prob = det.stage1_map(image, mask)
                table = det.detect(image, mask, prob)
            vox, scores = self._mimics(entry, prob.cpu().numpy())
            if idist.get_rank() == 0:  # every process computes the same mimics; one writes them
                path = self.output_dir / "mimics" / f"{ids[i]}_mimics.csv"
                write_mimics(path, ids[i], vox, entry["image"].affine, scores, f)
            ctx["stage1_rows"] += self._rows(entry, table)
            self.step_metrics["mimics_mined"] = self.step_metrics.get("mimics_mined", 0) + len(vox)
            logger.info("fold %d, %s: %d stage-1 candidates, %d mimics mined", f, ids[i], len(table), len(vox))
        idist.barrier()
        if f == len(folds) - 1:  # every subject's mimics are known: the stage-2 sampler reads them
            for s in subjects:
                path = self.output_dir / "mimics" / f"{s['subject']}_mimics.csv"
                s[self.mimics_key], s[f"{self.mimics_key}_scores"] = read_mimics(path, with_scores=True)
        return name, None

    def _cv_step(self, step: tuple) -> tuple[str, None]:
        ctx = self._run
        folds = ctx["folds"]
        fold_nets = [[ctx["fold_nets"][f][m] for m in range(len(self.stage1))] for f in range(len(folds))]
        ctx["out"]["crossval"] = cv = self._crossval(ctx["subjects"], folds, fold_nets, ctx["stage1_rows"])
        for stage, figures in cv.items():
            for key in ("sensitivity", "fp_per_scan"):
                if isinstance(figures["pooled"].get(key), (int, float)):
                    self.step_metrics[f"crossval_{stage}_{key}"] = figures["pooled"][key]
        return "crossval", None

    def _final_fit(self, step: tuple) -> tuple[str, float | None]:
        ctx, (stage, m) = self._run, step[1:]
        member = (self.stage1 if stage == 1 else self.stage2)[m]
        name = f"final_{member.name}"
        init = self._init_state(stage, m) if self.init_checkpoint is not None else None
        ctx["final"][stage][m] = member.fit(ctx["subjects"], name, init_state=init)
        return name, member.last_loss

    def _export(self, step: tuple) -> tuple[str, None]:
        ctx = self._run
        final1 = [ctx["final"][1][m] for m in range(len(self.stage1))]
        final2 = [ctx["final"][2][m] for m in range(len(self.stage2))]
        detector = self._detector(final1, final2)
        path = self.output_dir / "models" / self.detector_name
        if idist.get_rank() == 0:
            save_state(detector, path)
        idist.barrier()
        logger.info("saved the detector (%d + %d networks) to %s", len(final1), len(final2), path)
        ctx["out"]["detector"] = str(path)
        self.state.metrics.update(self.step_metrics)
        return step[0], None

    def _crossval(self, subjects: list[dict], folds: list[list[int]], fold_nets: list, stage1_rows: list[dict]) -> dict:
        cv = self.output_dir / "crossval"
        rows = []
        for f, held in enumerate(folds):
            train = [subjects[i] for i in range(len(subjects)) if i not in held]
            det = self._detector(fold_nets[f], [m.fit(train, f"fold{f:02d}_{m.name}") for m in self.stage2])
            for i in held:
                with torch.no_grad():
                    table = det.detect(self._volume(subjects[i], "image"), self._volume(subjects[i], "mask"))
                rows += self._rows(subjects[i], table)
        if idist.get_rank() != 0:  # the fits above are collective; the tables and figures are rank 0's to write
            idist.barrier()
            return {}
        write_detections(stage1_rows, cv / "stage1_detections.csv")
        write_detections(rows, cv / "detections.csv")
        datalist = self.datalist
        result = {}
        for name, table in (("stage1", "stage1_detections.csv"), ("two_stage", "detections.csv")):
            pooled = evaluate(
                datalist, str(cv / name), "training", str(cv / table), rule=self.match_rule, **self.match_kwargs
            )
            per_fold = []
            for f, held in enumerate(folds):
                sub = evaluate(
                    datalist,
                    str(cv / name / f"fold{f:02d}"),
                    self.split,
                    str(cv / table),
                    rule=self.match_rule,
                    subjects=[str(subjects[i]["subject"]) for i in held],
                    **self.match_kwargs,
                )
                per_fold.append({"fold": f, "subjects": sub["settings"]["subjects"], **_brief(sub["pooled"])})
            result[name] = {"pooled": _brief(pooled["pooled"]), "per_fold": per_fold}
        write_json(result, cv / "summary.json")
        idist.barrier()
        return result


def _brief(figures: dict) -> dict:
    keys = ("scans", "tp", "fp", "fn", "sensitivity", "fp_per_scan", "precision", "f1", "cpm")
    return {k: figures[k] for k in keys if k in figures} | {"froc": figures.get("froc")}
