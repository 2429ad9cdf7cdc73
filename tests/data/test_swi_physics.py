# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The physics SWI simulator: dipole field, blooming, signs, voxel integration, determinism."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import swi_acquisition

from bundle.data.synth.anatomy import build_anatomy, region_masks
from bundle.data.synth.swi_physics import (
    PRESETS,
    box_integrate,
    dipole_field,
    draw_acquisition,
    generate_swi_subject,
    preset,
    sphere_field,
    sphere_phantom,
    vein_susceptibility,
)


def _sphere(n: int = 64, radius: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    c = np.arange(n) - (n - 1) / 2.0
    g = np.stack(np.meshgrid(c, c, c, indexing="ij"), -1)
    occ = np.zeros((n, n, n), np.float32)
    sub = np.array([-0.375, -0.125, 0.125, 0.375])
    for dx in sub:
        for dy in sub:
            for dz in sub:
                occ += np.linalg.norm(g + (dx, dy, dz), axis=-1) <= radius
    return occ / 64.0, g


@pytest.mark.parametrize("b_dir", [(0.0, 0.0, 1.0), (1.0, 1.0, 2.0)])
def test_dipole_field_of_a_sphere_is_the_analytic_field(b_dir):
    """Outside (1.5 to 4 radii) within 5 % of the largest analytic value there; inside close to 0 (Lorentz)."""
    occ, g = _sphere()
    field = dipole_field(occ * 1.0, b_dir, pad=32)
    ref = sphere_field(g, np.zeros(3), 6.0, 1.0, b_dir)
    r = np.linalg.norm(g, axis=-1)
    out = (r >= 9.0) & (r <= 24.0)
    assert np.abs(field - ref)[out].max() <= 0.05 * np.abs(ref[out]).max()
    assert abs(float(field[r < 4.5].mean())) < 0.02
    # on the B0 axis the field is positive (paramagnetic), at the equator negative, in the ratio -2 : 1
    b = np.asarray(b_dir) / np.linalg.norm(b_dir)
    axis_pt, eq_dir = 12 * b, np.cross(b, [1.0, 0.0, 0.0] if abs(b[0]) < 0.9 else [0.0, 1.0, 0.0])
    eq_pt = 12 * eq_dir / np.linalg.norm(eq_dir)
    at = [field[tuple(np.round(p + 31.5).astype(int))] for p in (axis_pt, eq_pt)]
    assert at[0] > 0 > at[1]


def test_calcification_and_microbleed_have_opposite_field_signs():
    cmb = sphere_phantom(3.0, 1.0, 3.0, 20.0)["field_ppm"]
    calc = sphere_phantom(3.0, -1.0, 3.0, 20.0)["field_ppm"]
    n = cmb.shape[0]
    on_axis = (n // 2, n // 2, n // 2 + 5)  # 2.5 mm along B0 from the centre, outside the 1.5 mm radius
    equator = (n // 2 + 5, n // 2, n // 2)
    assert cmb[on_axis] > 0 > calc[on_axis]
    assert cmb[equator] < 0 < calc[equator]
    np.testing.assert_allclose(cmb, -calc, atol=1e-6)


def test_blooming_grows_with_echo_time_and_field_strength():
    vol = {(b0, te): sphere_phantom(2.0, 1.5, b0, te, spacing=(0.5, 0.5, 0.5))["volume_mm3"]
           for b0 in (1.5, 3.0) for te in (20.0, 40.0)}  # fmt: skip
    assert vol[1.5, 20.0] < vol[1.5, 40.0] and vol[3.0, 20.0] < vol[3.0, 40.0]  # TE
    assert vol[1.5, 20.0] < vol[3.0, 20.0] and vol[1.5, 40.0] < vol[3.0, 40.0]  # B0
    # and the visible extent is larger than the 2 mm core (4.19 mm3) at 3 T, 40 ms
    assert vol[3.0, 40.0] > 2 * 4.19


def test_box_integrate_is_the_voxel_mean():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(8, 6, 12)).astype(np.float32)
    out = box_integrate(f, 0.5, (1.0, 1.0, 2.0), (4, 3, 3))  # integer ratios: block means
    np.testing.assert_allclose(out, f.reshape(4, 2, 3, 2, 3, 4).mean(axis=(1, 3, 5)), rtol=1e-5, atol=1e-6)
    # non-integer ratio (0.7 mm from 0.5 mm): a constant stays constant, the integral is kept
    np.testing.assert_allclose(box_integrate(np.full((10, 10, 10), 3.0, np.float32), 0.5, (0.7,) * 3, (7, 7, 7)), 3.0,
                               rtol=1e-5)  # fmt: skip
    one = box_integrate(f[:, :1, :1].copy(), 0.5, (0.7, 0.5, 0.5), (5, 1, 1))[:, 0, 0]
    assert abs(one.sum() * 0.7 - f[:7, 0, 0].sum() * 0.5) < 1e-4  # 5 x 0.7 = 3.5 mm = 7 input voxels


def test_presets_move_one_factor_outside_training():
    rng = np.random.default_rng(1)
    train = [draw_acquisition("train", rng) for _ in range(200)]
    assert max(a.spacing[2] for a in train) <= 2.5 and min(a.spacing[0] for a in train) >= 0.5
    assert {a.b0 for a in train} == {1.5, 3.0} and max(a.n_cmb for a in train) <= 20
    assert all(draw_acquisition("thick_slices", rng).spacing[2] == 3.0 for _ in range(5))
    assert all(draw_acquisition("no_cmb", rng).n_cmb == 0 for _ in range(5))
    assert all(draw_acquisition("high_load", rng).n_cmb >= 25 for _ in range(5))
    assert all(draw_acquisition("long_te", rng).te_ms > 25.0 for _ in range(5))
    # training places twice the share of microbleeds beside veins of validation and every test setting
    assert {a.p_near_vein for a in train} == {0.4} and draw_acquisition("train_wide", rng).p_near_vein == 0.4
    assert {draw_acquisition(n, rng).p_near_vein for n in PRESETS if not n.startswith("train")} == {0.2}
    with pytest.raises(ValueError, match="unknown SWI preset"):
        draw_acquisition("nope", rng)
    assert "validation" in PRESETS


def test_vein_susceptibility_is_one_draw_in_the_presets_range():
    """``train_wide`` draws venous susceptibility over 0.25-1 ppm; every other preset over 0.3-0.55 ppm with the
    random numbers of before (one uniform draw), so cohorts made earlier are reproduced from their seed."""
    wide = [vein_susceptibility(draw_acquisition("train_wide", np.random.default_rng(i)), np.random.default_rng(i))
            for i in range(300)]  # fmt: skip
    assert 0.25 <= min(wide) < 0.3 and 0.95 < max(wide) <= 1.0
    for name in (n for n in PRESETS if n != "train_wide"):
        acq = draw_acquisition(name, np.random.default_rng(5))
        a, b = np.random.default_rng(9), np.random.default_rng(9)
        assert vein_susceptibility(acq, a) == float(b.uniform(0.3, 0.55)) and a.random() == b.random()


@pytest.fixture(scope="module")
def scene():
    """A ``train`` acquisition, a small anatomy, its microbleed regions and venous tree, for ``place_cmbs``."""
    from bundle.data.synth.swi_physics import sources as sp

    rng = np.random.default_rng([3, 0, 7])
    acq = draw_acquisition("train", rng)
    anat = build_anatomy((1.0, 1.0, 1.0), rng, rotation_deg=6.0, scale=0.08)
    hs, regions = sp.HeadSpace(anat), sp.microbleed_regions(anat, region_masks(anat))
    veins = sp.vein_tree(hs, acq, rng)
    return acq, anat, hs, regions, veins


def test_share_of_microbleeds_beside_veins_follows_the_preset(scene):
    """``p_near_vein`` 1 puts every microbleed within 2.5 mm of a vein's wall (not into it), 0 none flagged."""
    import dataclasses

    from bundle.data.synth.swi_physics import sources as sp

    acq, anat, hs, regions, veins = scene
    segs = sp.vein_segments(veins)
    for p in (0.0, 1.0):
        placed = sp.place_cmbs(anat, hs, regions, veins, dataclasses.replace(acq, n_cmb=12, p_near_vein=p),
                                np.random.default_rng(0))  # fmt: skip
        assert len(placed) == 12 and {c["near_vein"] for c in placed} == {bool(p)}
        for c in placed:
            gap = min(_segment_distance(c["centre"], a, b) - r for a, b, r in segs) - c["radii"].max()
            assert (0.4 < gap <= 2.6) if p else gap > 0.4


def test_train_small_changes_only_the_contrast_mix_and_the_microbleed_cores(scene):
    """``train_small`` is ``train`` with 70 % magnitude scans and cores of 1 + 5 Beta(1, 4) mm (mean 2 mm); every
    other preset keeps Beta(1.2, 2.5) (mean 2.62 mm), so every held-out setting stays outside it and cohorts made
    earlier are reproduced."""
    import dataclasses

    from bundle.data.synth.swi_physics import sources as sp

    train, small = preset("train"), preset("train_small")
    assert {k for k in {*train, *small} if train.get(k) != small.get(k)} == {"p_swi", "cmb_core_beta"}
    rng = np.random.default_rng(4)
    acqs = [draw_acquisition("train_small", rng) for _ in range(400)]
    assert {a.cmb_core_beta for a in acqs} == {(1.0, 4.0)}
    assert 0.6 < np.mean([a.contrast == "magnitude" for a in acqs]) < 0.8
    assert {draw_acquisition(n, rng).cmb_core_beta for n in PRESETS if n != "train_small"} == {(1.2, 2.5)}
    acq, anat, hs, regions, veins = scene
    mean_core = {}
    for beta in ((1.2, 2.5), (1.0, 4.0)):
        placed = sp.place_cmbs(anat, hs, regions, veins, dataclasses.replace(acq, n_cmb=60, cmb_core_beta=beta),
                                np.random.default_rng(1))  # fmt: skip
        mean_core[beta] = np.mean([2.0 * c["radii"][0] for c in placed])
    assert 2.3 < mean_core[(1.2, 2.5)] < 3.0 and 1.7 < mean_core[(1.0, 4.0)] < 2.3


def test_a_dropped_faint_microbleed_gives_its_voxels_back():
    """A 1-voxel microbleed nearer to some voxels of a 5 mm neighbour's extent wins them first; once dropped (under
    2 mm) the neighbour competes again and keeps its whole extent, with no hole; an 11 mm one is unlabelled too."""
    from bundle.data.synth.swi_physics.sources import compete

    shape, sp = (40, 40, 40), np.ones(3)
    grid = np.indices(shape).transpose(1, 2, 3, 0).astype(float)

    def rec(i, centre, radius, world):
        ball = np.linalg.norm(grid - centre, axis=-1) <= radius
        box = tuple(slice(0, n) for n in shape)
        return {"id": i, "box": box, "own": ball, "dist": np.linalg.norm(np.argwhere(ball) - centre, axis=1),
                "world": np.asarray(world, float)}  # fmt: skip

    big = rec(1, np.array([10.0, 10.0, 10.0]), 2.6, [1, 1, 1])  # 81 voxels: 5.4 mm
    faint = rec(2, np.array([12.0, 10.0, 10.0]), 0.5, [2, 2, 2])  # one voxel, inside the big one's extent
    huge = rec(3, np.array([28.0, 28.0, 28.0]), 5.6, [3, 3, 3])  # 11.4 mm
    hidden = []
    label, kept = compete([big, faint, huge], shape, sp, hidden)
    assert [r["id"] for r in kept] == [1] and (label == 1).sum() == big["own"].sum() and label.max() == 1
    assert [(h["kind"], h["centre_mm"]) for h in hidden] == [("subvisible_cmb", [2, 2, 2]),
                                                              ("cmb_over_10mm", [3, 3, 3])]
    assert 0.5 < hidden[0]["diameter_mm"] < 2.0 and hidden[1]["diameter_mm"] > 10.0


def _segment_distance(p, a, b) -> float:
    ab = b - a
    t = np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-9), 0.0, 1.0)
    return float(np.linalg.norm(a + t * ab - p))


@pytest.mark.slow
def test_subject_is_deterministic_and_consistent(swi_1mm, tmp_path):
    """Same seed, index and acquisition -> identical files (conftest's ``swi_1mm`` simulated again), and the same
    generator state draws the same acquisition; labels, records and the acquisition agree with each other."""
    folder, a = swi_1mm
    b = generate_swi_subject(0, tmp_path / "b", seed=21, acquisition=swi_acquisition((1.0, 1.0, 1.0)))
    for key in ("image", "label", "mask"):
        pa = a[key][0] if isinstance(a[key], list) else a[key]
        va, vb = nib.load(folder / pa), nib.load(tmp_path / "b" / pa)
        np.testing.assert_array_equal(np.asanyarray(va.dataobj), np.asanyarray(vb.dataobj))
        np.testing.assert_array_equal(va.affine, vb.affine)
    assert (folder / a["lesions"]).read_text() == (tmp_path / "b" / b["lesions"]).read_text()
    assert draw_acquisition("train", np.random.default_rng([5, 2, 7])) == draw_acquisition(
        "train", np.random.default_rng([5, 2, 7]))  # fmt: skip  (what generate_swi_subject draws without one)
    img = nib.load(folder / a["image"][0])
    assert np.allclose(img.header.get_zooms(), a["swi"]["spacing"], atol=1e-3)
    assert abs(img.affine[:3, :3] - np.diag(np.diag(img.affine[:3, :3]))).max() > 1e-3  # oblique
    label = np.asanyarray(nib.load(folder / a["label"]).dataobj)
    lesions = json.loads((folder / a["lesions"]).read_text())
    assert sorted(np.unique(label[label > 0]).tolist()) == [r["id"] for r in lesions]
    for r in lesions:
        assert r["n_voxels"] == int((label == r["id"]).sum()) and r["region"] in ("lobar", "deep", "infratentorial")
        centre = img.affine[:3, :3] @ np.argwhere(label == r["id"]).mean(0) + img.affine[:3, 3]
        np.testing.assert_allclose(centre, r["centre_mm"], atol=0.01)
    mimics = json.loads((folder / a["mimics"]).read_text())
    assert 0.3 <= a["swi"]["vein_chi"] <= 0.55 and tuple(a["swi"]["chi_vein_ppm"]) == (0.3, 0.55)
    assert sum(m["kind"] == "vein" for m in mimics) >= 100 and a["swi"]["n_vein_segments"] >= 300
    # raters' 2-10 mm: a microbleed visible over less is left unlabelled and listed (this subject has three)
    assert 2.0 <= min(r["diameter_mm"] for r in lesions) and max(r["diameter_mm"] for r in lesions) <= 10.0
    faint = [m["diameter_mm"] for m in mimics if m["kind"] == "subvisible_cmb" and "diameter_mm" in m]
    assert len(faint) == 3 and all(0.5 < f < 2.0 for f in faint)


def test_cohort_and_command_line_write_a_datalist_of_every_split(tmp_path, monkeypatch):
    """The cohort writer and ``python -m bundle.data.synth --task swi`` (the documented ways to make training
    data) number subjects across splits, pass the preset and seed on, reuse an identical cohort and refuse
    another's folder. The 30-s subject simulation is replaced by a stub: ``generate_swi_subject`` is tested above."""
    from bundle.data.synth import __main__ as cli
    from bundle.data.synth import swi_physics

    calls = []

    def fake_subject(index, out_dir, seed=0, preset_name="train"):
        calls.append((index, seed, preset_name))
        return {"subject": f"sub-{index:04d}", "preset": preset_name}

    monkeypatch.setattr(swi_physics.subject, "generate_swi_subject", fake_subject)
    path = swi_physics.generate_swi_cohort(tmp_path / "a", {"training": ("train", 2), "testing": ("oblique", 1)},
                                           seed=7, progress=False)  # fmt: skip
    d = json.loads(path.read_text())
    assert calls == [(0, 7, "train"), (1, 7, "train"), (2, 7, "oblique")]
    assert [e["subject"] for e in d["training"]] == ["sub-0000", "sub-0001"] and d["validation"] == []
    assert d["testing"] == [{"subject": "sub-0002", "preset": "oblique"}] and d["modalities"] == ["swi"]
    assert swi_physics.generate_swi_cohort(tmp_path / "a", {"training": ("train", 2), "testing": ("oblique", 1)},
                                           seed=7, progress=False) == path and len(calls) == 3  # fmt: skip
    with pytest.raises(FileExistsError, match="differing: presets, seed, splits"):
        swi_physics.generate_swi_cohort(tmp_path / "a", {"training": ("train", 2)}, seed=8, progress=False)
    # a preset whose definition changed since (e.g. a new training distribution) is not silently reused
    monkeypatch.setitem(swi_physics.PRESETS, "oblique", {**swi_physics.PRESETS["oblique"], "tilt_deg": 30.0})
    with pytest.raises(FileExistsError, match="differing: presets"):
        swi_physics.generate_swi_cohort(tmp_path / "a", {"training": ("train", 2), "testing": ("oblique", 1)},
                                        seed=7, progress=False)  # fmt: skip
    with pytest.raises(ValueError):
        swi_physics.generate_swi_cohort(tmp_path / "b", {"training": ("no_such_preset", 1)}, progress=False)
    calls.clear()
    assert cli.main(["--task", "swi", "--preset", "dense_veins", "--n", "3", "--out", str(tmp_path / "c"),
                     "--seed", "5", "--quiet"]) == 0  # fmt: skip
    d = json.loads((tmp_path / "c" / "datalist.json").read_text())
    assert {p for _, _, p in calls} == {"dense_veins"} and {s for _, s, _ in calls} == {5}
    assert sum(len(d[s]) for s in ("training", "validation", "testing")) == 3
