# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""One bad subject does not lose the others: a truncated file and a network failure are recorded in failed.csv
with one line each, the other subjects' tables and maps are written, and the run ends with exit status 3."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, write_nii
from monai.data import DataLoader

from bundle.data import LoadSubjectd
from bundle.handlers import CountsWriter, DetectionsTableWriter, FailuresWriter, MapWriter, Writers
from bundle.inference import IsolatedDataset, IsolatingEvaluator, MapDetections, OutputMap, finish_run


class Fragile(torch.nn.Module):
    """Identity, except that it fails on an input brighter than 5 (a network error of one subject)."""

    def forward(self, x):
        if float(x.max()) > 5:
            raise RuntimeError("network\nexploded")
        return x


def _scan(path, peak):
    vol = np.full((8, 8, 6), 0.1, np.float32)
    vol[3, 4, 2] = peak
    return write_nii(path, vol, np.eye(4))


def test_failures_are_recorded_and_the_other_subjects_written(tmp_path, capsys):
    _scan(tmp_path / "a.nii.gz", 1.0)
    whole = Path(_scan(tmp_path / "b.nii.gz", 1.0)).read_bytes()
    (tmp_path / "b.nii.gz").write_bytes(whole[: len(whole) // 2])  # a truncated file
    _scan(tmp_path / "c.nii.gz", 10.0)  # the network fails on it
    _scan(tmp_path / "d.nii.gz", 1.0)
    entries = [{"subject": s, "image": [str(tmp_path / f"{s}.nii.gz")]} for s in "abcd"]
    out = tmp_path / "out"
    table = DetectionsTableWriter(out, MapDetections(threshold=0.5, label="cmb"))
    writers = Writers([table, CountsWriter(table), MapWriter(out, OutputMap("pred", channel=-1))], FailuresWriter(out))
    loader = DataLoader(IsolatedDataset(entries, LoadSubjectd(keys="image", lesions_key=None)), batch_size=1)
    evaluator = IsolatingEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=Fragile(),
                                   val_handlers=[writers])  # fmt: skip
    evaluator.run()
    rows = list(csv.DictReader((out / "detections.csv").open()))
    assert [(r["subject"], r["i"], r["j"], r["k"]) for r in rows] == [
        ("a", "3.0", "4.0", "2.0"),
        ("d", "3.0", "4.0", "2.0"),
    ]
    counts = list(csv.reader((out / "counts.csv").open()))
    assert counts == [["subject", "cmb", "total"], ["a", "1", "1"], ["d", "1", "1"]]  # failed subjects are not zeros
    assert sorted(p.name for p in (out / "maps").iterdir()) == ["a_prob.nii.gz", "d_prob.nii.gz"]
    failed = list(csv.DictReader((out / "failed.csv").open()))
    assert [f["subject"] for f in failed] == ["b", "c"]
    assert failed[0]["reason"].startswith("b: image file ") and "b.nii.gz could not be read as NIfTI" in failed[0][
        "reason"]  # fmt: skip
    assert failed[1]["reason"] == f"c: RuntimeError: network exploded (files: {tmp_path / 'c.nii.gz'})"
    assert all("\n" not in f["reason"] for f in failed)
    with pytest.raises(SystemExit) as stop:
        finish_run(out)
    assert stop.value.code == 3
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("2 subject(s) failed") and err[1:] == [f"  {f['reason']}" for f in failed]


def test_a_run_without_failures_writes_an_empty_failed_csv_and_finishes(tmp_path):
    _scan(tmp_path / "a.nii.gz", 1.0)
    out = tmp_path / "out"
    table = DetectionsTableWriter(out, MapDetections(threshold=0.5))
    loader = DataLoader(IsolatedDataset([{"subject": "a", "image": [str(tmp_path / "a.nii.gz")]}],
                                        LoadSubjectd(keys="image", lesions_key=None)), batch_size=1)  # fmt: skip
    evaluator = IsolatingEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=Fragile(),
                                   val_handlers=[Writers([table], FailuresWriter(out))])  # fmt: skip
    evaluator.run()
    assert (out / "failed.csv").read_text() == "subject,reason\n"
    assert finish_run(out) is None
    # nothing of a written subject is held while the next one runs (memory flat over a cohort)
    assert evaluator.state.batch is None and evaluator.state.output is None
    assert getattr(table.detections, "_last", None) is None


def test_the_main_job_passes_its_preprocessing_workers_to_the_epvs_and_lacune_detector():
    """``--inference_workers`` of the main job (and of its evaluation) reaches the EPVS and lacune detector's own
    config (``run_part``'s settings), as ``--device`` and ``--atlas_deformable`` do."""
    from monai.bundle import ConfigParser

    for name in ("inference.yaml", "evaluate.yaml"):
        parser = ConfigParser()
        parser.read_config(str(REPO / "configs" / name))
        parser["inference_workers"] = 2
        assert parser.get_parsed_content("part_settings")["inference_workers"] == 2, name
