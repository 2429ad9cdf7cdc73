# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Fine-tuning the shipped detector on a site's scans from the real configs (configs/finetune.yaml)."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import GRID_2MM, REPO, config_files, run_bundle


@pytest.mark.slow
def test_finetune_starts_from_the_shipped_weights_and_mines_every_scan(cmb_2mm, tmp_path):
    data = json.loads(cmb_2mm.read_text())
    entries = [dict(e, image=[e["image"][0]]) for s in ("training", "validation", "testing") for e in data[s]]
    site = {"modalities": ["swi"], "classes": ["cmb"], "training": entries}
    (cmb_2mm.parent / "site.json").write_text(json.dumps(site))
    out = tmp_path / "ft"
    log = run_bundle([
        "training", "--config_file", config_files(["configs/train.yaml", "configs/finetune.yaml"]),
        "--datalist", str(cmb_2mm.parent / "site.json"), "--output_dir", str(out),
        "--stage1_iterations", "4", "--stage2_iterations", "4", "--progress", "false", *GRID_2MM,
    ])  # fmt: skip
    shipped = torch.load(REPO / "models" / "model.pt", weights_only=True)
    tuned = torch.load(out / "models" / "cmb_detector.pt", weights_only=True)
    assert tuned.keys() == shipped.keys()
    # every network moved from the shipped weights, and only a few steps away (fine-tuned, not retrained)
    for prefix in ("stage1.0.", "stage1.1.", *(f"stage2.{n}." for n in range(8))):
        keys = [k for k in shipped if k.startswith(prefix) and shipped[k].is_floating_point() and "running" not in k]
        diff = sum(float((tuned[k] - shipped[k]).abs().sum()) for k in keys)
        norm = sum(float(shipped[k].abs().sum()) for k in keys)
        assert 0 < diff < 0.1 * norm, prefix
    # no fold networks: the shipped stage 1 mined every training scan
    cnns = [f"final_cnn_bs{b}{s}{u}" for b in (20, 30) for s in ("", "_slices") for u in ("", "_uniform")]
    unets = ["final_unet_bs20", "final_unet_bs30"]
    assert sorted(p.stem for p in (out / "checkpoints").glob("*.pt")) == sorted([*cnns, *unets])
    for e in entries:
        with open(out / "mimics" / f"{e['subject']}_mimics.csv") as f:
            rows = list(csv.DictReader(f))
        assert all(r["fold"] == "0" for r in rows)
    assert "init_mining" in log or "fold 0" in log
