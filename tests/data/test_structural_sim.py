# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The structural (T1/T2/FLAIR) simulator: physics, held-out settings, counts per region, contrast, determinism."""

from __future__ import annotations

import json
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from bundle.data.synth.shapes import Tube
from bundle.data.synth.structural import (
    HELD_OUT,
    REGION_CODES,
    draw_acquisition,
    generate_structural_cohort,
    generate_structural_subject,
    simulate,
    tissue_signals,
)
from bundle.data.synth.structural.objects import EPVS_REGIONS, LACUNE_REGIONS, BranchedTube

REGIONS = {"epvs": set(EPVS_REGIONS), "lacune": set(LACUNE_REGIONS)}


def _acq(preset="train", seed=0, **changes):
    """A drawn acquisition with some settings fixed (1 mm, physics contrast, a known load)."""
    acq = draw_acquisition(preset, np.random.default_rng(seed))
    base = {"spacing": (1.0, 1.0, 1.0), "wide": False, "pose_deg": 8.0, "atrophy": 0.3, "wmh_load": 0.4,
            "epvs": {"basal_ganglia": 6, "centrum_semiovale": 12, "hippocampus": 3, "midbrain": 2}, "lacunes": 3,
            "p_rim": 0.5, "bg_base_pvs": 2, "flow_voids": 4}
    return replace(acq, **{**base, **changes})


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    out = tmp_path_factory.mktemp("structural")
    entry = generate_structural_subject(3, out, seed=21, acquisition=_acq())
    return out, entry


def _load(out, rel):
    return np.asarray(nib.load(out / rel).dataobj)


def test_tissue_signals_follow_the_sequences():
    """Over many drawn scans (physics, not wide): the tissue order every rater relies on. The relaxation times
    are jittered per scan, so a rare scan may have grey and white matter level on T1 (1 in 2,000 draws)."""
    for preset in ("train", "other_contrast"):
        draws = []
        for seed in range(300):
            rng = np.random.default_rng(seed)
            draws.append(tissue_signals(replace(draw_acquisition(preset, rng), wide=False), rng))
        t1, t2, fl = ([d[m] for d in draws] for m in ("t1", "t2", "flair"))
        assert np.mean([s["wm"] > s["gm"] > s["csf"] and s["fluid"] < 0.7 for s in t1]) >= 0.99, preset
        assert all(s["csf"] > s["gm"] > s["wm"] and s["fluid"] > 1.5 for s in t2), preset
        assert all(s["wmh"] > 1.1 and s["gliosis"] > 1.1 for s in fl), preset
        if preset == "train":  # CSF nulled; fluid dark in nearly every scan (its T1 is a little shorter than CSF's)
            assert all(s["csf"] < 0.6 for s in fl) and np.mean([s["fluid"] < 0.7 for s in fl]) >= 0.95
        else:  # held out: the inversion time misses the null, CSF is grey
            assert np.median([s["csf"] for s in fl]) > 0.3
    for seed in range(100):  # wide scans: random signals, but fluid stays visible against white and grey matter
        rng = np.random.default_rng(seed)
        s = tissue_signals(replace(draw_acquisition("train", rng), wide=True), rng)
        for m in s.values():
            # drawn at least 0.2 apart on a scale up to 1.6, then divided by white matter
            around = ("wm", "gm", "deep_gm", "wmh")
            assert min(abs(m["fluid"] - m[t]) for t in around) >= 0.2 / 1.6 - 1e-4, m


def test_held_out_settings_lie_outside_the_training_draws():
    train = [draw_acquisition("train", np.random.default_rng(s)) for s in range(400)]
    held = {p: [draw_acquisition(p, np.random.default_rng(1000 + s)) for s in range(100)] for p in HELD_OUT}
    slices = [a.spacing[2] for a in train]
    inplane = [a.spacing[0] for a in train]
    assert min(inplane) < 0.55 and max(slices) > 2.9  # training covers 0.5 mm to 1 x 1 x 3 mm
    assert min(a.spacing[2] for a in held["thick_slices"]) > max(slices)
    assert {a.sequences["t1"]["kind"] for a in train} == {"mprage", "se"}
    assert {a.sequences["t1"]["kind"] for a in held["other_contrast"]} == {"spgr"}
    te = [a.sequences["t2"]["te_ms"] for a in train]
    assert min(a.sequences["t2"]["te_ms"] for a in held["other_contrast"]) > max(te)
    total = [sum(a.epvs.values()) for a in train]
    assert min(sum(a.epvs.values()) for a in held["high_load"]) > max(total) and max(total) >= 100
    assert min(a.lacunes for a in held["high_load"]) > max(a.lacunes for a in train)
    assert min(a.atrophy for a in held["severe_atrophy"]) > max(a.atrophy for a in train)
    assert min(a.wmh_load for a in held["severe_atrophy"]) > max(a.wmh_load for a in train)
    assert max(max(a.snr.values()) for a in held["low_snr"]) < min(min(a.snr.values()) for a in train)
    assert min(a.pose_deg for a in held["oblique"]) > max(a.pose_deg for a in train)
    assert all(sum(a.epvs.values()) + a.lacunes + a.bg_base_pvs == 0 for a in held["no_lesions"])
    assert 0.1 < np.mean([a.wide for a in train]) < 0.3


def test_train_wide_spans_the_geometric_held_out_settings():
    """The brain-mask network's extra scans (``train_wide``) reach past oblique heads, severe atrophy and thick
    slices, as it must to serve them; the other presets' factors (contrast, SNR, load) stay the training's."""
    wide = [draw_acquisition("train_wide", np.random.default_rng(s)) for s in range(300)]
    held = {p: [draw_acquisition(p, np.random.default_rng(1000 + s)) for s in range(100)] for p in HELD_OUT}
    assert max(a.pose_deg for a in wide) > max(a.pose_deg for a in held["oblique"])
    assert max(a.atrophy for a in wide) > 0.97 * max(a.atrophy for a in held["severe_atrophy"])
    assert max(a.spacing[2] for a in wide) > max(a.spacing[2] for a in held["thick_slices"])
    assert min(a.spacing[0] for a in wide) >= 0.8  # it works at 2 mm: no costly sub-0.8 mm voxels
    assert {a.sequences["t1"]["kind"] for a in wide} == {"mprage", "se"}
    assert max(max(a.snr.values()) for a in held["low_snr"]) < min(min(a.snr.values()) for a in wide)


def test_records_label_map_and_counts_per_region_agree(subject):
    out, entry = subject
    label = _load(out, entry["label"])
    records = json.loads((out / entry["lesions"]).read_text())
    ids, n_vox = np.unique(label[label > 0], return_counts=True)
    assert sorted(r["id"] for r in records) == ids.tolist()
    assert [r["n_voxels"] for r in sorted(records, key=lambda r: r["id"])] == n_vox.tolist()
    assert all(r["region"] in REGIONS[r["class"]] for r in records)
    for cls, per_region in entry["counts_by_region"].items():
        assert set(per_region) == REGIONS[cls]
        assert sum(per_region.values()) == entry["counts"][cls] == sum(r["class"] == cls for r in records)
    by_region = entry["counts_by_region"]["epvs"]
    # asked: 6 + 2 wide ones at the base of the basal ganglia, 12, 3, 2 (placement may give up on a few)
    assert 6 <= by_region["basal_ganglia"] <= 8 and 10 <= by_region["centrum_semiovale"] <= 12
    assert by_region["hippocampus"] >= 2 and by_region["midbrain"] >= 1
    assert sum(r.get("site") == "bg_base" for r in records) >= 1
    assert entry["count"] == len(records) and len(records) == len(ids)
    assert all(len(r["raters"]) == 6 for r in records)
    # the regions map: an object's voxels lie mostly in its region (bent tubes may leave it at their ends)
    regions = _load(out, entry["regions"])
    inside = [np.mean(regions[label == r["id"]] == REGION_CODES[r["region"]]) for r in records]
    assert np.mean(np.array(inside) >= 0.5) >= 0.8, inside
    roi = _load(out, entry["roi"]) > 0
    assert np.array_equal(roi, regions == REGION_CODES["basal_ganglia"])


def test_objects_have_the_contrast_of_fluid_and_lacune_rims_are_flair_bright(subject):
    out, entry = subject
    label = _load(out, entry["label"])
    records = json.loads((out / entry["lesions"]).read_text())
    t1, t2, flair = (_load(out, p).astype(np.float32) for p in entry["image"])
    for cls in ("epvs", "lacune"):
        inside = np.isin(label, [r["id"] for r in records if r["class"] == cls and r["n_voxels"] >= 8])
        ring = ndi.binary_dilation(inside, iterations=3) & ~ndi.binary_dilation(label > 0, iterations=1)
        ring &= _load(out, entry["mask"]) > 0
        assert np.median(t2[inside]) > 1.3 * np.median(t2[ring]), cls
        assert np.median(t1[inside]) < 0.8 * np.median(t1[ring]), cls
        assert np.median(flair[inside]) < 0.8 * np.median(flair[ring]), cls
    rimmed = [r for r in records if r["class"] == "lacune" and r["rim_mm"] >= 1.0]
    assert rimmed, "the fixture should hold a lacune with a rim"
    for r in rimmed:
        core = label == r["id"]
        shell = ndi.binary_dilation(core, iterations=1) & ~core & (label == 0)
        far = ndi.binary_dilation(core, iterations=6) & ~ndi.binary_dilation(core, iterations=4) & (label == 0)
        assert np.median(flair[shell]) > np.median(flair[far]), r


def test_branched_tube_counts_each_segment_once():
    pts = np.array([[0.0, 0, 0], [10, 0, 0], [10, 5, 0], [10, 0, 0], [20, 0, 0]])
    tube = BranchedTube(pts, 1.0, 1)
    assert tube.length_mm == pytest.approx(25.0)
    np.testing.assert_allclose(tube.centre, [10.0, 0.5, 0.0])  # (5*10 + 10*5 + 15*10 ... ) / 25
    inside = tube.inside(np.array([[10.0, 4.5, 0], [5.0, 0.9, 0], [5.0, 2.0, 0]]))
    assert inside.tolist() == [True, True, False]


def test_subjects_bend_branch_and_vary_anatomy():
    """Branching EPVS exist; atrophy enlarges the CSF and WMH load adds hyperintense white matter."""
    s0 = simulate(5, seed=8, acquisition=_acq(atrophy=0.0, wmh_load=0.0, lacunes=0, flow_voids=0,
                                              epvs={"basal_ganglia": 0, "centrum_semiovale": 30, "hippocampus": 0,
                                                    "midbrain": 0}))
    s1 = simulate(5, seed=8, acquisition=_acq(atrophy=0.8, wmh_load=0.6, lacunes=0, flow_voids=0,
                                              epvs={"basal_ganglia": 0, "centrum_semiovale": 30, "hippocampus": 0,
                                                    "midbrain": 0}))
    assert sum(r.get("branches", 0) for r in s0["records"]) >= 2
    bends = [o.shape for o in s0["objects"] if o.kind == "epvs" and len(o.shape.points) >= 4]
    assert bends and any(_max_turn_deg(t.points) > 10 for t in bends)
    csf0, csf1 = (float(s["fractions"]["csf"].sum()) for s in (s0, s1))
    assert csf1 > 1.25 * csf0
    assert float(s0["wmh"].sum()) == 0.0 and float(s1["wmh"].sum()) > 2000  # voxels of 1 mm^3


def _max_turn_deg(points: np.ndarray) -> float:
    d = np.diff(points, axis=0)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return float(np.degrees(np.arccos(np.clip((d[:-1] * d[1:]).sum(1), -1, 1))).max())


def test_deterministic_and_independent_of_the_modalities_written(tmp_path, subject):
    out, entry = subject
    again = generate_structural_subject(3, tmp_path, seed=21, acquisition=_acq(), modalities=("flair",))
    assert again["image"][0].endswith("_flair.nii.gz") and len(again["image"]) == 1
    np.testing.assert_array_equal(_load(tmp_path, again["image"][0]), _load(out, entry["image"][2]))
    np.testing.assert_array_equal(_load(tmp_path, again["label"]), _load(out, entry["label"]))
    assert json.loads((tmp_path / again["lesions"]).read_text()) == json.loads((out / entry["lesions"]).read_text())
    other = simulate(4, seed=21, acquisition=_acq())
    assert not np.array_equal(other["label"], _load(out, entry["label"]))


def test_a_scan_without_lesions_and_a_cohort_that_is_reused_or_refused(tmp_path):
    path = generate_structural_cohort(tmp_path / "c", {"testing": ("no_lesions", 1)}, seed=2, progress=False)
    data = json.loads(path.read_text())
    (entry,) = data["testing"]
    assert entry["count"] == 0 and entry["counts"] == {"epvs": 0, "lacune": 0}
    assert json.loads((path.parent / entry["lesions"]).read_text()) == []
    assert not _load(path.parent, entry["label"]).any()
    assert all(_load(path.parent, p).max() > 0 for p in entry["image"])
    assert data["modalities"] == ["t1", "t2", "flair"] and data["simulator"]["splits"] == {"testing": ["no_lesions", 1]}
    mtime = path.stat().st_mtime_ns
    assert generate_structural_cohort(tmp_path / "c", {"testing": ("no_lesions", 1)}, seed=2) == path
    assert path.stat().st_mtime_ns == mtime
    with pytest.raises(FileExistsError, match="differing: seed"):
        generate_structural_cohort(tmp_path / "c", {"testing": ("no_lesions", 1)}, seed=3)
    with pytest.raises(ValueError, match="unknown structural preset 'nope'"):
        generate_structural_cohort(tmp_path / "d", {"testing": ("nope", 1)})
    with pytest.raises(ValueError, match="non-empty subset"):
        generate_structural_subject(0, tmp_path / "e", modalities=("swi",))


def test_cli_writes_the_modalities_asked_for(tmp_path, capsys):
    from bundle.data.synth.__main__ import main

    assert main(["--task", "structural", "--preset", "no_lesions", "--n", "1", "--out", str(tmp_path / "c"),
                 "--modalities", "t2,flair", "--quiet", "--seed", "4"]) == 0
    data = json.loads((tmp_path / "c" / "datalist.json").read_text())
    (entry,) = data["training"]
    assert data["modalities"] == ["t2", "flair"]
    assert [p.rsplit("_", 1)[1] for p in entry["image"]] == ["t2.nii.gz", "flair.nii.gz"]
    assert "scans without objects: 1" in capsys.readouterr().out


def test_tubes_turn_with_the_head_and_may_not_cross_a_placed_object():
    from bundle.data.synth.anatomy import euler_rotation
    from bundle.data.synth.objects import SimObject
    from bundle.data.synth.structural.objects import StructuralSampler

    regions = {"basal_ganglia": np.ones((4, 4, 4), bool)}
    head = euler_rotation(np.deg2rad([30.0, 0.0, 0.0]))  # world -> MNI
    sampler = StructuralSampler(np.eye(4), regions, np.random.default_rng(0), margin_mm=1.5, to_mni=head)
    mean = np.mean([sampler._axis("basal_ganglia", np.zeros(3)) for _ in range(400)], axis=0)
    vertical_on_grid = head.T @ [0.0, 0.0, 1.0]  # the head's vertical, seen on the grid
    assert np.degrees(np.arccos(mean @ vertical_on_grid / np.linalg.norm(mean))) < 5.0
    sampler.placed.append(SimObject("epvs", BranchedTube(np.array([[0.0, 0, 0], [20, 0, 0]]), 1.0), "x"))
    crossing = SimObject("flow_void", Tube(np.array([[10.0, -12, 0], [10, 12, 0]]), 0.5), "x")
    assert not sampler._free(sampler._probe(crossing), 0.5)  # its corners are 12 mm away, its middle is inside
    beside = SimObject("flow_void", Tube(np.array([[10.0, -12, 5], [10, 12, 5]]), 0.5), "x")
    assert sampler._free(sampler._probe(beside), 0.5)
