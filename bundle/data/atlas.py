# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Brain regions of detections, from the bundle's atlas in template space (``docs/regions.md#atlas-regions``).

:func:`template_transform` registers the ICBM152 2009a template (its T1 within its brain mask) to a subject's
image (within its brain mask) with SimpleITK: a start from the two brain masks' centres, then an affine fitted by
Mattes mutual information (any contrast). It returns the 4 x 4 map from the subject's world (RAS mm) to template
millimetres. :func:`regions_at` looks up the atlas (``bundle/data/synth/template/regions_atlas.npz``, derived by
``derive_atlas.py``) at world points through that map: the fine region (:data:`FINE`), the microbleed and lacune
region (:data:`GROUPS`: lobar, deep, infratentorial, as the MARS scale) and the EPVS rating region
(:data:`EPVS_REGIONS`). :func:`epvs_grade` turns a count into the 0-4 grade of the usual EPVS rating scale.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["EPVS_REGIONS", "FINE", "GROUPS", "OUTSIDE", "REGIONS_OF", "atlas_on_grid", "epvs_grade", "load_atlas",
           "regions_at",
           "template_transform", "to_template"]  # fmt: skip

ATLAS = Path(__file__).with_name("synth") / "template" / "regions_atlas.npz"
FINE = {1: "frontal", 2: "parietal", 3: "temporal", 4: "occipital", 5: "insula", 6: "hippocampus",
        7: "basal_ganglia", 8: "thalamus", 9: "internal_capsule", 10: "external_capsule", 11: "corpus_callosum",
        12: "deep_white_matter", 13: "midbrain", 14: "pons_medulla", 15: "cerebellum"}  # fmt: skip
#: the MARS groups of the fine regions (microbleeds and lacunes)
GROUPS = {"lobar": ("frontal", "parietal", "temporal", "occipital", "insula", "hippocampus"),
          "deep": ("basal_ganglia", "thalamus", "internal_capsule", "external_capsule", "corpus_callosum",
                   "deep_white_matter"),
          "infratentorial": ("midbrain", "pons_medulla", "cerebellum")}  # fmt: skip
#: the EPVS rating regions (values 1-4 of the atlas's ``epvs`` map); EPVS elsewhere are ``other``
EPVS_REGIONS = ("basal_ganglia", "centrum_semiovale", "hippocampus", "midbrain")
OUTSIDE = "outside"  # a point the registered atlas puts outside the brain (farther than NEAREST_MM from it)
NEAREST_MM = 6.0
#: the B-spline stage (``deformable``): control-point spacing (mm), L-BFGS-B iterations per level, share of the
#: brain's voxels sampled by the metric; chosen on the development subjects of ``bench_registration.py``
BSPLINE_MM, BSPLINE_ITERATIONS, BSPLINE_SAMPLING = 25.0, 30, 0.05
#: the ``region`` values of each class, in the order counts.csv lists them
REGIONS_OF = {"cmb": tuple(GROUPS), "lacune": tuple(GROUPS), "epvs": (*EPVS_REGIONS, "other")}
_GROUP_OF = {fine: group for group, names in GROUPS.items() for fine in names}
EPVS_GRADES = (0, 10, 20, 40)  # grade g: a count above EPVS_GRADES[g - 1], up to EPVS_GRADES[g]; 4: above 40


@lru_cache(maxsize=1)
def load_atlas() -> dict[str, np.ndarray]:
    """The atlas (``labels``, ``epvs``, ``affine``) and the template it lives on (``t1``, ``brain``), cached."""
    from .synth.anatomy import load_template

    with np.load(ATLAS) as data:
        out = {k: data[k] for k in ("labels", "epvs", "affine")}
    tmpl = load_template()
    out["t1"], out["brain"] = tmpl["t1"] * tmpl["brain"], tmpl["brain"]
    return out


def _isotropic(img, mm: float):
    """``img`` resampled (linear) onto a grid of ``mm`` voxels along its own axes, over the same box."""
    import SimpleITK as sitk

    size = [max(int(round(n * s / mm)), 1) for n, s in zip(img.GetSize(), img.GetSpacing())]
    return sitk.Resample(img, size, sitk.Transform(), sitk.sitkLinear, img.GetOrigin(), [mm] * 3,
                         img.GetDirection(), 0.0, sitk.sitkFloat32)  # fmt: skip


def _matrix(transform) -> np.ndarray:
    """The 4 x 4 (RAS mm) of a SimpleITK affine transform (composite or not) from where it sends four points."""
    from .align import LPS

    pts = np.array([[0.0, 0, 0], [100.0, 0, 0], [0, 100.0, 0], [0, 0, 100.0]])
    out = np.array([transform.TransformPoint([float(v) for v in p]) for p in pts])
    m = np.eye(4)
    m[:3, :3] = (out[1:] - out[0]).T / 100.0
    m[:3, 3] = out[0]
    return LPS @ m @ LPS


def template_transform(image: np.ndarray, affine: np.ndarray, mask: np.ndarray | None = None,
                       deformable: bool = False, seed: int = 1, spacing_mm: float = 2.0) -> dict:  # fmt: skip
    """The map from the subject's world (RAS mm) to template millimetres, as JSON-ready lists: ``affine`` (4 x 4)
    and, when ``deformable``, ``bspline`` (a SimpleITK B-spline on the subject's side, applied before the affine).

    Args:
        image: the subject's image (I, J, K), any contrast.
        affine: its voxel-to-world matrix.
        mask: its brain mask (non-zero inside); None: the whole image (a scan with skull registers worse).
        deformable: refine the affine with a cubic B-spline (:data:`BSPLINE_MM` control points, Mattes MI,
            L-BFGS-B on the 4 and 2 mm levels).
        seed: the metric's sampling seed (fixed: a rerun gives the same map).
        spacing_mm: the isotropic grid both images are resampled to before registering.
    """
    import SimpleITK as sitk

    from .align import sitk_image

    atlas = load_atlas()
    img = np.asarray(image, np.float32)
    inside = np.ones(img.shape, bool) if mask is None else np.asarray(mask) > 0
    fixed = _isotropic(sitk_image(img * inside, affine), spacing_mm)
    fixed_mask = sitk.Cast(_isotropic(sitk_image(inside.astype(np.float32), affine), spacing_mm) > 0.5, sitk.sitkUInt8)
    moving = _isotropic(sitk_image(atlas["t1"], atlas["affine"]), spacing_mm)
    moving_mask = _isotropic(sitk_image(atlas["brain"], atlas["affine"]), spacing_mm)
    start = sitk.CenteredTransformInitializer(sitk.Cast(fixed_mask, sitk.sitkFloat32), moving_mask,
                                              sitk.Similarity3DTransform(),
                                              sitk.CenteredTransformInitializerFilter.MOMENTS)  # fmt: skip
    similar = _register(_method(fixed_mask, seed, [4, 2]), start, fixed, moving)
    linear = sitk.AffineTransform(3)
    linear.SetMatrix(similar.GetMatrix())
    linear.SetTranslation(similar.GetTranslation())
    linear.SetCenter(similar.GetCenter())
    linear = _register(_method(fixed_mask, seed, [2, 1]), linear, fixed, moving)
    out = {"affine": _matrix(linear).round(6).tolist(), "bspline": None}
    if deformable:
        mesh = [max(int(round(n * sp / BSPLINE_MM)), 1) for n, sp in zip(fixed.GetSize(), fixed.GetSpacing())]
        warp = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
        reg = _method(fixed_mask, seed, [2, 1], deformable=True)
        reg.SetMovingInitialTransform(linear)
        warp = _register(reg, warp, fixed, moving)
        out["bspline"] = {"fixed": list(warp.GetFixedParameters()), "parameters": list(warp.GetParameters())}
    return out


def _method(fixed_mask, seed: int, shrink: list, deformable: bool = False):
    """Mattes mutual information (32 bins, 25 % of the voxels inside ``fixed_mask``, fixed ``seed``) minimised on
    ``shrink``-ed levels (smoothing twice the shrink factor, mm) by regular-step gradient descent, or for a
    ``deformable`` B-spline by L-BFGS-B (:data:`BSPLINE_ITERATIONS` per level, :data:`BSPLINE_SAMPLING` of the
    voxels)."""
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(BSPLINE_SAMPLING if deformable else 0.25, seed)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    if deformable:
        reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=BSPLINE_ITERATIONS,
                                maximumNumberOfCorrections=5)
    else:
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=300)
        reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel([2.0 * f for f in shrink])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


def _register(reg, start, fixed, moving):
    """``start`` fitted in place by ``reg`` and returned."""
    reg.SetInitialTransform(start, inPlace=True)
    reg.Execute(fixed, moving)
    return start


def to_template(points: np.ndarray, tmap: dict) -> np.ndarray:
    """World points (N, 3, RAS mm) in template millimetres through a :func:`template_transform` map."""
    pts = np.asarray(points, float).reshape(-1, 3)
    if tmap.get("bspline"):
        import SimpleITK as sitk

        from .align import LPS

        warp = sitk.BSplineTransform(3, 3)
        warp.SetFixedParameters(tmap["bspline"]["fixed"])
        warp.SetParameters(tmap["bspline"]["parameters"])
        flip = LPS[:3, :3]
        pts = np.array([warp.TransformPoint([float(v) for v in flip @ p]) for p in pts]).reshape(-1, 3) @ flip
    m = np.asarray(tmap["affine"], float)
    return pts @ m[:3, :3].T + m[:3, 3]


def _lookup(vox: np.ndarray, volume: np.ndarray, nearest_vox: int) -> np.ndarray:
    """``volume`` at the voxels ``vox`` (N, 3), or its nearest non-zero voxel within ``nearest_vox`` (0: none)."""
    out = np.zeros(len(vox), volume.dtype)
    shape = np.array(volume.shape)
    for n, v in enumerate(vox):
        lo, hi = np.maximum(v - nearest_vox, 0), np.minimum(v + nearest_vox + 1, shape)
        if np.any(hi <= lo):
            continue
        box = volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        found = np.argwhere(box > 0)
        if len(found):
            d = ((found + lo - v) ** 2).sum(1)
            if d.min() <= nearest_vox**2:
                out[n] = box[tuple(found[d.argmin()])]
    return out


def regions_at(points: np.ndarray, tmap: dict) -> list[dict]:
    """Per world point (N, 3, RAS mm): ``subregion`` (the fine region), ``group`` (lobar, deep or
    infratentorial) and ``epvs_region`` (a rating region or ``other``); points farther than ``NEAREST_MM`` from the
    atlas's brain are ``outside`` in all three."""
    atlas = load_atlas()
    mni = to_template(points, tmap)
    vox = np.rint((mni - atlas["affine"][:3, 3]) @ np.linalg.inv(atlas["affine"][:3, :3]).T).astype(int)
    near = int(round(NEAREST_MM))  # the atlas is on a 1 mm grid
    fine = _lookup(vox, atlas["labels"], near)
    # EPVS regions where the point is; elsewhere in the brain "other"
    epvs = _lookup(vox, atlas["epvs"], 0)
    out = []
    for f, e in zip(fine, epvs):
        if f == 0:
            out.append({"subregion": OUTSIDE, "group": OUTSIDE, "epvs_region": OUTSIDE})
            continue
        name = FINE[int(f)]
        out.append({"subregion": name, "group": _GROUP_OF[name],
                    "epvs_region": EPVS_REGIONS[int(e) - 1] if e else "other"})  # fmt: skip
    return out


def atlas_on_grid(tmap: dict, affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The atlas's fine regions (uint8 codes of :data:`FINE`, 0 outside) on a subject's grid (``affine``, ``shape``)
    through the affine part of a :func:`template_transform` map (nearest atlas voxel; a B-spline stage is left out
    here: the map is for looking at, the detections' regions use the whole map)."""
    from scipy import ndimage as ndi

    atlas = load_atlas()
    m = np.asarray(tmap["affine"], float) @ np.asarray(affine, float)  # subject voxel -> template mm
    to_vox = np.linalg.inv(atlas["affine"]) @ m  # subject voxel -> atlas voxel
    return ndi.affine_transform(atlas["labels"], to_vox, output_shape=tuple(int(n) for n in shape), order=0,
                                mode="constant", cval=0, prefilter=False).astype(np.uint8, copy=False)  # fmt: skip


def epvs_grade(count: int) -> int:
    """The 0-4 grade of a region's EPVS count (0; 1-10; 11-20; 21-40; above 40)."""
    return int(np.searchsorted(EPVS_GRADES, int(count), side="left"))
