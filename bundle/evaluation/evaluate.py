# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Evaluate a detections table or a folder of predicted maps against a datalist; write metrics.json and froc.png.

    python -m bundle.evaluation --datalist D.json [--split testing] --detections detections.csv --output_dir OUT
    python -m bundle.evaluation --datalist D.json --predictions PRED_DIR --output_dir OUT [--rule overlap]

Predicted maps are ``PRED_DIR/<subject>.nii.gz`` or ``PRED_DIR/<subject>_*.nii.gz`` on the label's grid:
probabilities or binary masks (split into connected components at ``--threshold``), or instance maps with
``--instances``. A detections table holds voxel centres only, so it is evaluated with a distance rule.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.datalist import SPLITS, DatalistError, load_datalist
from ..data.io import write_json
from ..metrics import (
    LABEL_FORMATS,
    RULES,
    VALDO_TASKS,
    connected_components,
    evaluate_scan,
    label_instances,
    objects_from_instances,
    objects_from_map,
    objects_from_table,
    summarise_scans,
    valdo_scan,
)
from .plots import plot_froc

__all__ = ["evaluate", "evaluate_valdo", "main"]
logger = logging.getLogger(__name__)


def _reference(entry: dict, label_format: str = "auto", connectivity: int = 26):
    """(reference objects, label volume, how the label was read: ``"instances"`` or ``"binary"``)."""
    from ..data.subject import load_volume  # MONAI's reader: deferred, so that `--help` is quick

    if not entry.get("label"):
        raise DatalistError(f"{entry['subject']}: no 'label' to evaluate against")
    label = load_volume(entry["label"], entry["subject"], "label")
    records = json.loads(Path(entry["lesions"]).read_text()) if entry.get("lesions") else []
    classes = {int(r["id"]): str(r["class"]) for r in records}
    spacing = np.asarray(label.pixdim, float)
    try:
        inst, how = label_instances(label[0].numpy(), label_format, connectivity, known_ids=bool(records))
    except ValueError as err:
        raise DatalistError(f"{entry['subject']}: label {entry['label']}: {err} (see --label_format)") from None
    if how == "binary" and label_format == "auto":
        logger.info("%s: label %s holds only 0 and 1 in separate components: read as a binary mask, one lesion "
                    "per %d-connected component (label_format)", entry["subject"], entry["label"], connectivity)
    return objects_from_instances(inst, spacing, labels=classes if how == "instances" else None), label, how


def _prediction_map(folder: Path, entry: dict, label) -> tuple[np.ndarray, Path]:
    from ..data.subject import load_volume

    sid = entry["subject"]
    hits = sorted(folder.glob(f"{sid}.nii*")) + sorted(folder.glob(f"{sid}_*.nii*"))
    if not hits:
        raise FileNotFoundError(f"{sid}: no predicted map {sid}.nii.gz or {sid}_*.nii.gz in {folder}")
    pred = load_volume(str(hits[0]), sid, "prediction")
    if pred.shape != label.shape or not np.allclose(pred.affine, label.affine, atol=1e-3):
        raise DatalistError(f"{sid}: prediction {hits[0]} is not on the grid of the label {entry['label']}")
    return pred[0].numpy(), hits[0]


def _restrict(entries: list[dict], subjects: Sequence[str] | None, split: str, datalist: str) -> list[dict]:
    """The entries of ``subjects`` (all when None); a subject not in the split raises ValueError."""
    if subjects is None:
        return entries
    wanted = set(subjects)
    missing = sorted(wanted - {e["subject"] for e in entries})
    if missing:
        raise ValueError(f"subjects {missing[:5]} are not in the {split} list of {datalist}")
    return [e for e in entries if e["subject"] in wanted]


def _check_instances(m: np.ndarray, path: Path, subject: str, connectivity: int) -> None:
    """An instance map holds integer ids and never gives separate objects one id: refuse a probability map or a
    0/1 mask given as one."""
    values = np.unique(m)
    if not np.all(values == np.round(values)):
        raise DatalistError(
            f"{subject}: prediction {path} holds non-integer values (a probability map?), not instance ids: evaluate "
            "it without --instances (instances: false), which thresholds it at --threshold"
        )
    if values.max(initial=0) <= 1 and connected_components(m != 0, 26).max() > 1:
        raise DatalistError(
            f"{subject}: prediction {path} holds only 0 and 1 in separate components, a binary mask, not an instance "
            f"map: evaluate it without --instances (instances: false), which takes its {connectivity}-connected "
            "components"
        )


def _pooled(results: list[dict], all_results: list[dict]) -> dict:
    """Pooled figures of the scans; with ``all_results`` (every table row kept), CPM and FROC come from those."""
    figures = summarise_scans(results)
    if all_results:
        curve = summarise_scans(all_results)
        figures.update(cpm=curve["cpm"], froc=curve["froc"])
    return figures


def _scan_row(subject: str, how: str, res: dict) -> dict:
    """One subject's row of ``per_scan``: counts and the figures of that scan alone."""
    scan = summarise_scans([res])
    return (
        {"subject": subject, "label_read_as": how}
        | {k: res[k] for k in ("tp", "fp", "fn", "n_ref", "n_pred")}
        | {k: scan[k] for k in ("sensitivity", "precision", "f1", "count_abs_diff_mean")}
    )


def _read_table(detections: str | None) -> dict | None:
    from ..inference.detections import read_detections  # torch and MONAI: deferred, so that `--help` is quick

    return read_detections(detections) if detections else None


def _check_table_subjects(table: dict | None, entries: list[dict], detections, split: str, datalist) -> None:
    """Raise DatalistError when the table holds subjects that the split does not."""
    unknown = sorted(set(table) - {e["subject"] for e in entries}) if table else []
    if unknown:
        raise DatalistError(f"{detections} has subjects {unknown[:5]} that are not in the {split} list of {datalist}")


def _check_sources(detections, predictions, rule, instances, score_threshold, label_format, match_kwargs) -> None:
    """Raise ValueError for a combination of :func:`evaluate`'s arguments that has no meaning."""
    if (detections is None) == (predictions is None):
        raise ValueError("give exactly one of detections (a CSV table) or predictions (a folder of maps)")
    if detections is not None and rule == "overlap":
        raise ValueError("a detections table has no object masks: use rule distance_mm or distance_voxels")
    if rule == "valdo":
        if detections is not None:
            raise ValueError("rule valdo evaluates predicted maps, as the challenge did: give predictions, not a table")
        other = sorted(set(match_kwargs) - {"task", "thresh_assign", "official_ties"})
        if instances or score_threshold is not None or label_format != "auto" or other:
            raise ValueError("rule valdo reads 0/1 (or 0/0.5/1) masks and thresholds predictions at --threshold; it "
                             f"takes no instances, score_threshold, label_format or {other or 'other options'}")


def _predicted_objects(predictions: Path, entry: dict, label, spacing, instances: bool, threshold: float,
                       connectivity: int):
    """The objects of one subject's predicted map: its instances, or its components at ``threshold``."""
    m, path = _prediction_map(predictions, entry, label)
    if instances:
        _check_instances(m, path, entry["subject"], connectivity)
        return objects_from_instances(m.astype(np.int64), spacing)
    return objects_from_map(m, threshold, connectivity, spacing)


def evaluate(
    datalist: str,
    output_dir: str,
    split: str = "testing",
    detections: str | None = None,
    predictions: str | None = None,
    rule: str = "distance_mm",
    threshold: float = 0.5,
    connectivity: int = 26,
    instances: bool = False,
    subjects: Sequence[str] | None = None,
    score_threshold: float | None = None,
    label_format: str = "auto",
    **match_kwargs,
) -> dict:
    """Compute the pooled and per-scan figures and write ``output_dir/metrics.json`` and ``output_dir/froc.png``.

    With a table and ``score_threshold``, the counts, sensitivity, FP per scan and the other operating-point
    figures use the rows with ``score >= score_threshold``, while the FROC curve and CPM use every row.

    ``subjects`` restricts it to those subjects of the split (e.g. one fold); other subjects' rows are ignored.

    ``label_format`` (:func:`bundle.metrics.label_instances`): how reference labels are read: ``instances``,
    ``binary`` (one lesion per ``connectivity``-connected component, e.g. VALDO's masks) or ``auto`` (a 0/1 map with
    several components and no lesion file is binary). ``per_scan`` says how each label was read.

    Raises:
        ValueError: neither or both of ``detections``/``predictions``; overlap rule with a table; unknown subjects.
        FileNotFoundError, DatalistError: missing or invalid inputs (message names the subject and file).
    """
    _check_sources(detections, predictions, rule, instances, score_threshold, label_format, match_kwargs)
    if rule == "valdo":
        return evaluate_valdo(datalist, output_dir, predictions, split, threshold, connectivity, subjects=subjects,
                              **match_kwargs)  # fmt: skip
    entries = load_datalist(datalist, split)
    table = _read_table(detections)
    _check_table_subjects(table, entries, detections, split, datalist)
    entries = _restrict(entries, subjects, split, datalist)
    results, all_results, per_scan = [], [], []
    for entry in entries:
        ref, label, how = _reference(entry, label_format, connectivity)
        pred = (objects_from_table(table.get(entry["subject"], []), ref.spacing) if table is not None else
                _predicted_objects(Path(predictions), entry, label, ref.spacing, instances, threshold, connectivity))
        if table is not None and score_threshold is not None:
            all_results.append(evaluate_scan(ref, pred, rule, **match_kwargs))
            rows = [r for r in table.get(entry["subject"], []) if float(r["score"]) >= score_threshold]
            pred = objects_from_table(rows, ref.spacing)
        results.append(evaluate_scan(ref, pred, rule, **match_kwargs))
        per_scan.append(_scan_row(entry["subject"], how, results[-1]))
    figures = _pooled(results, all_results)
    settings = {"datalist": str(datalist), "split": split, "rule": rule, "label_format": label_format,
                "connectivity": connectivity, **match_kwargs}
    settings.update({"subjects": [e["subject"] for e in entries]} if subjects is not None else {})
    settings.update({"detections": detections} if detections else {"predictions": predictions, "threshold": threshold})
    settings.update({"score_threshold": score_threshold} if detections and score_threshold is not None else {})
    out = {"settings": settings, "pooled": figures, "per_scan": per_scan}
    write_json(out, Path(output_dir) / "metrics.json")
    plot_froc(figures, Path(output_dir) / "froc.png", title=f"{Path(datalist).parent.name} / {split} ({rule})")
    return out


def evaluate_valdo(
    datalist: str,
    output_dir: str,
    predictions: str,
    split: str = "testing",
    threshold: float = 0.5,
    connectivity: int = 26,
    task: str = "microbleeds",
    thresh_assign: float = 0.1,
    official_ties: bool = False,
    subjects: Sequence[str] | None = None,
) -> dict:
    """The VALDO 2021 figures of predicted maps (:func:`bundle.metrics.valdo_scan`) per scan, and over scans the
    summed TP/FP/FN, the mean and median F1 of the scans where it is defined, the mean count difference; writes
    ``output_dir/metrics.json``. An instance-map label is binarised (the challenge's masks are 0/1, or 0.5 where
    raters disagree)."""
    from ..data.subject import load_volume

    entries = load_datalist(datalist, split)
    entries = _restrict(entries, subjects, split, datalist)
    per_scan = []
    for entry in entries:
        if not entry.get("label"):
            raise DatalistError(f"{entry['subject']}: no 'label' to evaluate against")
        label = load_volume(entry["label"], entry["subject"], "label")
        m, _ = _prediction_map(Path(predictions), entry, label)
        ref = label[0].numpy().astype(float)
        ref = ref if np.isin(ref, (0.0, 0.5, 1.0)).all() else (ref > 0).astype(float)
        res = valdo_scan(ref, m, np.asarray(label.pixdim, float), task, thresh_assign, connectivity, threshold,
                         official_ties)  # fmt: skip
        per_scan.append({"subject": entry["subject"], **{k: v for k, v in res.items() if k != "table"},
                         "table": res["table"]})  # fmt: skip
    f1 = np.array([s["f1"] for s in per_scan], float)
    diffs = [s["count_abs_diff"] for s in per_scan if s["count_abs_diff"] is not None]
    pooled = {"scans": len(per_scan), **{k: int(sum(s[k] for s in per_scan)) for k in ("tp", "fp", "fn")},
              "f1_mean": float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan"),
              "f1_median": float(np.nanmedian(f1)) if np.isfinite(f1).any() else float("nan"),
              "scans_f1_undefined": int(np.isnan(f1).sum()),
              "count_abs_diff_mean": float(np.mean(diffs)) if diffs else None}  # fmt: skip
    settings = {"datalist": str(datalist), "split": split, "rule": "valdo", "task": task, "limit": thresh_assign,
                "threshold": threshold, "connectivity": connectivity, "official_ties": official_ties,
                "predictions": predictions}  # fmt: skip
    out = {"settings": settings, "pooled": pooled, "per_scan": per_scan}
    write_json(out, Path(output_dir) / "metrics.json")
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bundle.evaluation", description=__doc__.split("\n\n")[0])
    p.add_argument("--datalist", required=True)
    p.add_argument("--split", default="testing", choices=SPLITS)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--detections", help="detections.csv")
    src.add_argument("--predictions", help="folder of predicted maps")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--rule", choices=(*RULES, "valdo"), default=None,
                   help="default: overlap for maps, distance_mm for tables; valdo: the challenge's official figures")
    p.add_argument("--valdo_task", choices=VALDO_TASKS, default="microbleeds")
    p.add_argument("--valdo_limit", type=float, default=None,
                   help="rule valdo: distance limit in mm (microbleeds, lacunes; strict <) or IoU limit (epvs); "
                   "default 0.1, the official code's")
    p.add_argument("--official_ties", action="store_true",
                   help="rule valdo: count every prediction tied at the best distance/IoU as TP, as the official code")
    p.add_argument("--min_overlap", type=float, default=None)
    p.add_argument("--max_distance", type=float, default=None, help="mm or voxels, by rule (5 mm / 3 voxels)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument(
        "--score_threshold", type=float, default=None, help="table rows counted as detections (FROC uses all rows)"
    )
    p.add_argument("--connectivity", type=int, choices=(6, 18, 26), default=26)
    p.add_argument("--instances", action="store_true", help="predicted maps are instance maps")
    p.add_argument("--label_format", choices=LABEL_FORMATS, default="auto",
                   help="reference labels: instance maps, binary masks (one lesion per connected component at "
                   "--connectivity), or auto: a 0/1 map with several components and no lesion file is binary")
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    rule = a.rule or ("distance_mm" if a.detections else "overlap")
    kw = {k: v for k, v in (("min_overlap", a.min_overlap), ("max_distance", a.max_distance)) if v is not None}
    if rule == "valdo":
        if kw:
            print("error: rule valdo takes --valdo_limit, not --max_distance or --min_overlap", file=sys.stderr)
            return 1
        kw = {"task": a.valdo_task, "official_ties": a.official_ties}
        kw.update({"thresh_assign": a.valdo_limit} if a.valdo_limit is not None else {})
    try:
        out = evaluate(
            a.datalist,
            a.output_dir,
            a.split,
            a.detections,
            a.predictions,
            rule,
            a.threshold,
            a.connectivity,
            a.instances,
            score_threshold=a.score_threshold,
            label_format=a.label_format,
            **kw,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    f = out["pooled"]
    if rule == "valdo":
        print(f"{f['scans']} scans (VALDO {a.valdo_task}): TP {f['tp']}, FP {f['fp']}, FN {f['fn']}, F1 mean "
              f"{f['f1_mean']:.3f}, median {f['f1_median']:.3f}; wrote {a.output_dir}/metrics.json")
        return 0
    print(
        f"{f['scans']} scans: sensitivity {f['sensitivity']:.3f}, FP per scan {f['fp_per_scan']:.2f}, "
        f"precision {f['precision']:.3f}, F1 {f['f1']:.3f}, CPM {f['cpm']:.3f}; wrote {a.output_dir}/metrics.json"
    )
    return 0
