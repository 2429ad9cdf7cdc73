# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The atlas regions: look-up in template space, registration of the template to a moved copy of itself, the EPVS
grades, and the region columns of the detections table and of counts.csv."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from bundle.data import atlas as A
from bundle.data.synth.regrid import rigid

IDENTITY = {"affine": np.eye(4).tolist(), "bspline": None}


@pytest.mark.parametrize(
    "mni, subregion, group, epvs",
    [
        ((-11.0, -18.0, 7.0), "thalamus", "deep", "other"),
        ((-25.0, 2.0, 1.0), "basal_ganglia", "deep", "basal_ganglia"),
        ((0.0, -26.0, -12.0), "midbrain", "infratentorial", "midbrain"),
        ((20.0, -70.0, -35.0), "cerebellum", "infratentorial", "other"),
        ((-27.0, -22.0, -13.0), "hippocampus", "lobar", "hippocampus"),
        ((-25.0, -10.0, 30.0), "deep_white_matter", "deep", "centrum_semiovale"),
        ((-40.0, 30.0, 30.0), "frontal", "lobar", "centrum_semiovale"),
        ((-30.0, -90.0, 5.0), "occipital", "lobar", "other"),
        ((-55.0, -20.0, -15.0), "temporal", "lobar", "other"),
        ((0.0, 0.0, 200.0), A.OUTSIDE, A.OUTSIDE, A.OUTSIDE),
    ],
)
def test_regions_in_template_space(mni, subregion, group, epvs):
    got = A.regions_at(np.array([mni]), IDENTITY)[0]
    assert got == {"subregion": subregion, "group": group, "epvs_region": epvs}


def test_every_fine_region_has_one_group():
    fine = [f for names in A.GROUPS.values() for f in names]
    assert sorted(fine) == sorted(A.FINE.values())
    labels = np.unique(A.load_atlas()["labels"])
    assert set(labels) == {0, *A.FINE}  # every region is in the atlas, nothing else


def test_registration_finds_a_moved_template():
    """The template's own T1 on a grid moved by a known rigid motion (and 2 mm voxels): the registered map must
    send every point back to where it came from within 2 mm."""
    atlas = A.load_atlas()
    move = rigid((12.0, -8.0, 15.0), (30.0, -25.0, 40.0), (0.0, 0.0, 0.0))
    t1, brain = atlas["t1"][::2, ::2, ::2], atlas["brain"][::2, ::2, ::2]
    aff = atlas["affine"].copy()
    aff[:3, :3] *= 2.0
    tmap = A.template_transform(t1, move @ aff, brain)
    inside = np.argwhere(brain > 0)[::50]
    tmpl = inside @ aff[:3, :3].T + aff[:3, 3]
    world = tmpl @ move[:3, :3].T + move[:3, 3]
    err = np.linalg.norm(A.to_template(world, tmap) - tmpl, axis=1)
    assert err.max() < 2.0, err.max()
    assert json.loads(json.dumps(tmap)) == tmap  # what the image's meta carries


def test_a_zero_bspline_is_the_affine():
    import SimpleITK as sitk

    warp = sitk.BSplineTransform(3, 3)
    img = sitk.Image([10, 10, 10], sitk.sitkFloat32)
    img.SetOrigin((-50.0, -50.0, -50.0))
    img.SetSpacing((10.0, 10.0, 10.0))
    warp = sitk.BSplineTransformInitializer(img, [2, 2, 2], order=3)
    shift = np.eye(4)
    shift[:3, 3] = (1.0, 2.0, 3.0)
    pts = np.array([[0.0, 0.0, 0.0], [10.0, -20.0, 5.0]])
    params = np.zeros(len(warp.GetParameters()))
    spline = {"fixed": list(warp.GetFixedParameters()), "parameters": params.tolist()}
    tmap = {"affine": shift.tolist(), "bspline": spline}
    assert np.allclose(A.to_template(pts, tmap), pts + (1.0, 2.0, 3.0))
    params[: len(params) // 3] = 2.0  # the B-spline's first component (ITK's x: towards the left in RAS)
    tmap["bspline"]["parameters"] = params.tolist()
    assert np.allclose(A.to_template(pts, tmap), pts + (1.0 - 2.0, 2.0, 3.0))


@pytest.mark.parametrize("count, grade", [(0, 0), (1, 1), (10, 1), (11, 2), (20, 2), (21, 3), (40, 3), (41, 4)])
def test_epvs_grades(count, grade):
    assert A.epvs_grade(count) == grade


def test_counts_by_region_and_grades(tmp_path):
    from bundle.handlers import write_counts

    rows = [{"subject": "a", "label": "cmb", "region": "lobar"}, {"subject": "a", "label": "cmb", "region": "deep"},
            {"subject": "a", "label": "cmb", "region": "outside"}]  # fmt: skip
    rows += [{"subject": "b", "label": "epvs", "region": "basal_ganglia"}] * 11
    rows += [{"subject": "b", "label": "epvs", "region": "centrum_semiovale"}]
    write_counts(rows, ["a", "b", "c"], tmp_path / "counts.csv", ["cmb", "epvs"], regions=True)
    got = list(csv.DictReader((tmp_path / "counts.csv").open()))
    assert list(got[0]) == ["subject", "cmb", "epvs", "cmb_lobar", "cmb_deep", "cmb_infratentorial",
                            "epvs_basal_ganglia", "epvs_centrum_semiovale", "epvs_hippocampus", "epvs_midbrain",
                            "epvs_other", "epvs_basal_ganglia_grade", "epvs_centrum_semiovale_grade",
                            "total"]  # fmt: skip
    a, b, c = got
    assert [a[k] for k in ("cmb", "cmb_lobar", "cmb_deep", "cmb_infratentorial", "total")] == ["3", "1", "1", "0", "3"]
    assert [b[k] for k in ("epvs_basal_ganglia", "epvs_basal_ganglia_grade", "epvs_centrum_semiovale_grade")] == \
        ["11", "2", "1"]  # fmt: skip
    assert set(c.values()) == {"c", "0"}  # a subject without detections: zeros everywhere


def test_region_columns_from_the_images_map():
    import torch
    from monai.data import MetaTensor

    from bundle.inference import RegionDetections, SubjectReader

    class Fixed(SubjectReader):
        label = "epvs"

        def compute(self, subject, image, output):
            return [{"subject": subject, "label": "epvs", "x": -25.0, "y": 2.0, "z": 1.0},
                    {"subject": subject, "label": "lacune", "x": -11.0, "y": -18.0, "z": 7.0}]  # fmt: skip

    reader = RegionDetections(Fixed())
    assert reader.extra_columns[-2:] == ("region", "subregion")
    image = MetaTensor(torch.zeros(1, 2, 2, 2))
    image.meta["template_map"] = json.dumps(IDENTITY)
    rows = reader("s", image, {})
    assert [(r["region"], r["subregion"]) for r in rows] == [("basal_ganglia", "basal_ganglia"), ("deep", "thalamus")]
    del image.meta["template_map"]
    assert {r["region"] for r in reader("t", image, {})} == {"unknown"}


def test_the_atlas_on_a_subjects_grid():
    """Through an identity map onto a 2 mm grid that starts 10 mm inside the template: every voxel takes the atlas's
    label at its centre."""
    atlas = A.load_atlas()
    aff = atlas["affine"].copy()
    aff[:3, :3] *= 2.0
    aff[:3, 3] += 10.0
    shape = (60, 80, 70)
    got = A.atlas_on_grid(IDENTITY, aff, shape)
    ijk = np.indices(shape).reshape(3, -1).T
    src = (ijk * 2 + 10).clip(max=np.array(atlas["labels"].shape) - 1)  # atlas voxels (1 mm, same origin + 10 mm)
    inside = np.all(ijk * 2 + 10 < atlas["labels"].shape, axis=1)
    want = np.where(inside, atlas["labels"][src[:, 0], src[:, 1], src[:, 2]], 0).reshape(shape)
    assert got.dtype == np.uint8 and np.array_equal(got, want) and len(np.unique(got)) > 10


def test_the_bspline_stage_follows_a_smooth_warp():
    """The template's T1 (2 mm) warped by a known smooth field (5 mm sines of 100 mm wavelength, which no affine
    map follows): with the B-spline stage the registered map must send brain points much closer to where they came
    from than the affine map alone does (median 0.96 against 5.75 mm measured). Registered on a 3 mm grid instead of
    the default 2 mm: the same code, 3 times faster."""
    from scipy.ndimage import map_coordinates

    atlas = A.load_atlas()
    t1, brain = atlas["t1"][::2, ::2, ::2], atlas["brain"][::2, ::2, ::2]
    aff = atlas["affine"].copy()
    aff[:3, :3] *= 2.0
    world = np.indices(t1.shape).reshape(3, -1).T @ aff[:3, :3].T + aff[:3, 3]
    wave = 2 * np.pi * world / 100.0
    source = world + 5.0 * np.sin(wave[:, [1, 2, 0]])  # where each voxel of the warped image comes from
    vox = np.linalg.solve(aff[:3, :3], (source - aff[:3, 3]).T)
    image = map_coordinates(t1, vox, order=1).reshape(t1.shape)
    mask = map_coordinates(brain.astype(np.float32), vox, order=1).reshape(t1.shape) > 0.5
    points = np.flatnonzero(mask.ravel())[::40]
    tmap = A.template_transform(image, aff, mask, deformable=True, spacing_mm=3.0)  # affine: deformable=False's
    err = {deformable: np.median(np.linalg.norm(A.to_template(world[points], m) - source[points], axis=1))
           for deformable, m in ((False, {**tmap, "bspline": None}), (True, tmap))}  # fmt: skip
    assert tmap["bspline"] and err[True] < 0.5 * err[False] and err[True] < 2.0, err


@pytest.mark.parametrize("flag, want", [("false", False), ("true", True), (False, False), (True, True)])
def test_the_deformable_flag_from_the_command_line(flag, want):
    """`--atlas_deformable false` arrives as the string 'false', which must turn the B-spline stage off."""
    from bundle.transforms import TemplateMapd

    assert TemplateMapd(keys="image", deformable=flag).deformable is want


def _head(tmp_path, name: str, shift_mm: float = 0.0, scale: float = 1.0):
    """A 2 mm ellipsoidal 'head' (its intensity times ``scale``, as another contrast would be) written to
    ``name``.nii.gz with its frame shifted by ``shift_mm`` along x; returns (MetaTensor (1, ...), path)."""
    import nibabel as nib
    import torch
    from monai.data import MetaTensor

    i, j, k = np.meshgrid(*(np.arange(40.0),) * 3, indexing="ij")
    vol = (((i - 20) / 15) ** 2 + ((j - 20) / 17) ** 2 + ((k - 20) / 13) ** 2 < 1).astype(np.float32) * scale
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-40.0 + shift_mm, -40.0, -40.0]
    path = tmp_path / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(vol, affine), str(path))
    meta = {"filename_or_obj": str(path)}
    return MetaTensor(torch.from_numpy(vol)[None], affine=torch.tensor(affine), meta=meta), path


@pytest.mark.parametrize("case, reused", [("same session", True), ("head moved", False), ("other setting", False),
                                          ("no map", False), ("broken map", False)])  # fmt: skip
def test_a_map_of_another_image_of_the_session_is_reused(tmp_path, monkeypatch, caplog, case, reused):
    """The microbleed detector takes the subject's map that the EPVS and lacune detector wrote when its image's head
    agrees with the SWI's through the affines and it was made with the same B-spline setting; otherwise (a head
    20 mm off, an affine-only map for a B-spline run, no map, a broken file) it registers its own image and says
    why when a map was there."""
    from bundle.transforms import TemplateMapd

    calls = []
    own = {"affine": np.eye(4).tolist(), "bspline": {"own": 1}}
    monkeypatch.setattr(A, "template_transform", lambda *a, **k: calls.append(1) or dict(own))
    swi, swi_path = _head(tmp_path, "swi", scale=3.0)
    t1, t1_path = _head(tmp_path, "t1", shift_mm=20.0 if case == "head moved" else 0.0)
    maps = tmp_path / "maps"
    maps.mkdir()
    stored = {"affine": (2 * np.eye(4)).tolist(), "bspline": None if case == "other setting" else {"t1": 1},
              "image": str(t1_path)}  # fmt: skip
    if case != "no map":
        text = json.dumps(stored)
        (maps / "s1_template.json").write_text(text[:-5] if case == "broken map" else text)
    out = TemplateMapd(keys="image", deformable=True, maps_from=str(maps))({"image": swi, "subject": "s1"})
    got = json.loads(out["image"].meta["template_map"])
    if reused:
        assert got == stored and calls == []
    else:
        assert got["bspline"] == {"own": 1} and got["image"] == str(swi_path) and calls == [1]
    assert ("registering" in caplog.text) is (case in ("head moved", "broken map")), caplog.text


def test_an_affine_registration_reuses_a_bspline_map_of_the_session(tmp_path, monkeypatch):
    """The main job's microbleed detector registers an SWI with the affine alone (``deformable`` false) but takes
    the EPVS and lacune detector's B-spline map (``maps_deformable`` true), and not an affine one."""
    from bundle.transforms import TemplateMapd

    calls = []
    monkeypatch.setattr(A, "template_transform", lambda *a, **k: calls.append(k["deformable"]) or {"affine": 1})
    swi, _ = _head(tmp_path, "swi", scale=3.0)
    _, t1_path = _head(tmp_path, "t1")
    (tmp_path / "s1_template.json").write_text(json.dumps({"bspline": {"t1": 1}, "image": str(t1_path)}))
    make = TemplateMapd(keys="image", deformable="false", maps_from=str(tmp_path), maps_deformable="true")
    assert json.loads(make({"image": swi, "subject": "s1"})["image"].meta["template_map"])["bspline"] == {"t1": 1}
    (tmp_path / "s1_template.json").write_text(json.dumps({"bspline": None, "image": str(t1_path)}))
    assert json.loads(make({"image": swi, "subject": "s1"})["image"].meta["template_map"])["affine"] == 1
    assert calls == [False]
