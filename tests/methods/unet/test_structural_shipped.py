# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The shipped EPVS and lacune detector (models/structural_unet.pt) and its rater heads: the network loads strictly
with weights_only=True into the network the configs define; on a 1.5 mm structural scan of the project's simulator
it finds most EPVS and the lacunes with all three modalities and with T2 alone, a scan without any EPVS or lacune
gets almost nothing, and the rater heads keep their raters' leanings."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import REPO, config_files, run_bundle
from monai.bundle import ConfigParser

from bundle.data.synth.structural import draw_acquisition, generate_structural_subject

SHIPPED = ["configs/common.yaml", "configs/unet/train.yaml", "configs/unet/structural.yaml",
           "configs/unet/inference.yaml", "configs/unet/structural_inference.yaml"]  # fmt: skip


def test_shipped_weights_load_strictly():
    parser = ConfigParser()
    parser.read_config([str(REPO / c) for c in SHIPPED])
    parser.update({"bundle_root": str(REPO)})
    assert parser.get_parsed_content("checkpoint") == str(REPO / "models" / "structural_unet.pt")
    net = parser.get_parsed_content("network_def")
    state = torch.load(REPO / "models" / "structural_unet.pt", weights_only=True, map_location="cpu")
    net.load_state_dict(state, strict=True)
    convs = [v for v in state.values() if v.dim() == 5]
    assert convs[0].shape[1] == 6  # T1, T2, FLAIR and their availability flags


@pytest.fixture(scope="module")
def detected(tmp_path_factory):
    """One 1.5 mm structural subject of the validation distribution (25 EPVS placed, 2 lacunes), its T2 alone, and
    the same acquisition without any EPVS or lacune (its mimics kept), through the shipped inference config."""
    out = tmp_path_factory.mktemp("structural_shipped")
    acq = draw_acquisition("validation", np.random.default_rng(5))
    acq = replace(acq, spacing=(1.5, 1.5, 1.5), wide=False, pose_deg=5.0, lacunes=2,
                  epvs={"basal_ganglia": 8, "centrum_semiovale": 12, "hippocampus": 3, "midbrain": 2})  # fmt: skip
    e = generate_structural_subject(0, out, seed=11, acquisition=acq)
    empty = replace(acq, lacunes=0, bg_base_pvs=0, epvs={r: 0 for r in acq.epvs})
    none = generate_structural_subject(1, out, seed=11, acquisition=empty)
    assert none["counts"] == {"epvs": 0, "lacune": 0}
    keys = ("subject", "image", "label", "lesions", "mask")
    entry, none = {k: e[k] for k in keys}, {k: none[k] for k in keys}
    t2 = {**entry, "subject": "t2only", "modalities": ["t2"], "image": entry["image"][1:2]}
    path = out / "datalist.json"
    path.write_text(json.dumps({"modalities": ["t1", "t2", "flair"], "classes": ["epvs", "lacune"],
                                "testing": [entry, t2, none]}))  # fmt: skip
    run_bundle(["--config_file", config_files(SHIPPED), "--datalist", str(path), "--output_dir", str(out / "run"),
                "--progress", "false", "--atlas_deformable", "false"])  # fmt: skip  (detection, not regions)
    with open(out / "run" / "detections.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return out, e, rows


def _found(entry_dir, e, rows, subject, cls):
    """(found, total) objects of class ``cls`` with a detection of that class within 5 mm of their centre."""
    from bundle.data import load_volume
    from bundle.metrics.objects import objects_from_instances

    label = load_volume(str(entry_dir / e["label"]), e["subject"], "label")
    lab = label[0].numpy().astype(np.int64)
    affine = np.asarray(label.affine, float)
    classes = {int(r["id"]): r["class"] for r in json.loads((entry_dir / e["lesions"]).read_text())}
    ref = objects_from_instances(lab, np.ones(3))
    ids = np.unique(lab[lab > 0])
    world = ref.centres @ affine[:3, :3].T + affine[:3, 3]
    mine = np.array([[float(r[c]) for c in "xyz"] for r in rows if r["subject"] == subject and r["label"] == cls])
    want = [w for w, i in zip(world, ids) if classes[int(i)] == cls]
    hits = sum(bool(len(mine)) and np.linalg.norm(mine - w, axis=1).min() <= 5.0 for w in want)
    return hits, len(want)


def test_shipped_weights_find_epvs_and_lacunes_with_all_modalities_and_t2_alone(detected):
    out, e, rows = detected
    # measured at version 0.23.0: 13 / 27 EPVS and 1 / 2 lacunes with all three, 9 / 27 and 1 / 2 with T2 alone
    n_epvs = e["counts"]["epvs"]
    for subject, min_epvs in (("sub-0000", 0.35), ("t2only", 0.25)):
        hits, n = _found(out, e, rows, subject, "epvs")
        assert n == n_epvs and hits >= min_epvs * n, (subject, hits, n)
        hits, n = _found(out, e, rows, subject, "lacune")
        assert n == 2 and hits >= 1, (subject, hits, n)


def test_shipped_weights_on_a_scan_without_lesions(detected):
    _, _, rows = detected
    assert len([r for r in rows if r["subject"] == "sub-0001"]) <= 2  # measured: none


def test_shipped_rater_heads_keep_their_raters_leanings(detected):
    """Every detection carries the six shipped rater heads (models/structural_rater_heads.pt). Their simulated raters
    lean, on doubtful objects, to "nothing" (rater 2), "undecided" (rater 3) and the other class (rater 4); rater 1
    has no leaning. Over the EPVS calls, each leaning head gives its answer more probability than head 1 does."""
    _, _, rows = detected
    epvs = [r for r in rows if r["label"] == "epvs"]
    assert len(epvs) >= 10 and all(r["rater1"] in ("nothing", "lacune", "epvs", "undecided") for r in epvs)

    def mean(k, answer):
        return np.mean([float(r[f"rater{k}_p_{answer}"]) for r in epvs])

    # measured: undecided 0.109 vs 0.041, lacune 0.112 vs 0.035, nothing 0.156 vs 0.096
    for k, answer, ratio in ((3, "undecided", 2.0), (4, "lacune", 2.0), (2, "nothing", 1.3)):
        assert mean(k, answer) > ratio * mean(1, answer), (k, answer, mean(k, answer), mean(1, answer))


def test_shipped_rater_heads_rank_the_raters_by_skill():
    """The shipped heads are the annotator model ("ability"): one ability per rater. Fitted on the training scans'
    answers, they order the six simulated raters as their skills do (rater 6 0.95, 1 0.90, 2 and 3 0.85, 4 0.80,
    5 0.75; bundle/data/synth/raters.py), with raters 2 and 3 level."""
    from bundle.data.synth.raters import PROFILES
    from bundle.methods.unet import feature_names, load_rater_heads

    heads = load_rater_heads(REPO / "models" / "structural_rater_heads.pt", feature_names(["epvs", "lacune"], 3))
    assert heads.kind == "ability" and heads.n_raters == len(PROFILES) == 6
    ability = heads.ability.detach().numpy()
    skill = np.array([p[0] for p in PROFILES])
    distinct = [(a, b) for a in range(6) for b in range(6) if skill[a] > skill[b]]
    assert all(ability[a] > ability[b] for a, b in distinct), ability
    assert abs(ability[1] - ability[2]) < 0.05, ability  # measured: 0.097 and 0.097
