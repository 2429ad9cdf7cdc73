# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Derive the vendored region atlas ``regions_atlas.npz`` on the grid of ``mni152_2009a_tissue.npz``.

The atlas is this project's own, made from the template's tissue maps and landmarks in MNI millimetres (planes for
the lobes, the simulator's ellipsoids for the deep nuclei, the hippocampus and the midbrain), so it is covered by
the project's licence and the template's notice (``docs/data_license.txt``). It is a coarse parcellation of the
regions raters use (docs/regions.md#atlas-regions), not a validated anatomical atlas. Run once by a maintainer::

    python -m bundle.data.synth.template.derive_atlas
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..anatomy import NUCLEI, load_template
from ..structural.anatomy import HIPPOCAMPUS, MIDBRAIN

__all__ = ["LABELS", "derive"]

OUT = Path(__file__).with_name("regions_atlas.npz")
#: the atlas's fine regions (value -> name); bundle.data.atlas groups them for each class
LABELS = {1: "frontal", 2: "parietal", 3: "temporal", 4: "occipital", 5: "insula", 6: "hippocampus",
          7: "basal_ganglia", 8: "thalamus", 9: "internal_capsule", 10: "external_capsule", 11: "corpus_callosum",
          12: "deep_white_matter", 13: "midbrain", 14: "pons_medulla", 15: "cerebellum"}  # fmt: skip
CODE = {v: k for k, v in LABELS.items()}
JUXTACORTICAL_MM = 4.0  # cerebral white matter this close to the cortex is lobar (MARS: juxtacortical)
EPVS_MARGIN_MM = 3.0  # EPVS rating regions reach this far beyond their structure (registration error, rater habit)


def _ellipsoid(x, y, z, centre, radii, both: bool = True) -> np.ndarray:
    out = np.zeros(x.shape, bool)
    for sx in (1.0, -1.0) if both else (1.0,):
        out |= ((x - sx * centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + \
            ((z - centre[2]) / radii[2]) ** 2 <= 1.0  # fmt: skip
    return out


def _lobes(x, y, z) -> np.ndarray:
    """The lobe (code) of every voxel from planes in MNI mm: the central sulcus (frontal/parietal), the
    parieto-occipital line, the Sylvian line (temporal below it) and the insula's box."""
    ax = np.abs(x)
    central = -5.0 - 0.4 * z  # y of the central sulcus at height z
    occipital = np.clip(-60.0 - 0.35 * z, -80.0, -60.0)
    sylvian = np.where(y > 5.0, -12.0, np.clip(-2.0 - 0.3 * y, -2.0, 16.0))  # top of the temporal lobe at y
    temporal = (z < sylvian) & (ax > 14.0) & (y < 22.0) & (y > occipital - 5.0) & ((ax > 22.0) | (y < 5.0))
    lobe = np.where(y > central, CODE["frontal"], CODE["parietal"])
    lobe = np.where(y <= occipital, CODE["occipital"], lobe)
    lobe = np.where(temporal, CODE["temporal"], lobe)
    insula = (ax > 28.0) & (ax < 41.0) & (y > -28.0) & (y < 24.0) & (z > -10.0) & (z < 20.0)
    return np.where(insula, CODE["insula"], lobe).astype(np.uint8)


def derive(out: Path = OUT) -> dict[str, np.ndarray]:
    """Write (and return) ``labels`` (fine regions, :data:`LABELS`), ``epvs`` (1 basal ganglia, 2 centrum
    semiovale, 3 hippocampus, 4 midbrain) and ``affine`` on the tissue template's 1 mm grid."""
    t = load_template()
    gm, wm, csf, brain = t["gm"], t["wm"], t["csf"], t["brain"] > 0
    ijk = np.indices(gm.shape, dtype=np.float32)
    x, y, z = (np.tensordot(t["affine"][:3, :3], ijk, axes=1) + t["affine"][:3, 3, None, None, None]).astype(np.float32)
    ax = np.abs(x)
    tentorium = -5.0 + 0.25 * (y + 45.0)  # z of the tentorium at y (behind y = -40)
    stem = brain & (ax < 13.0) & (y > -44.0) & (y < -10.0) & (z < -4.0)
    midbrain = (stem & (z >= -17.0)) | (_ellipsoid(x, y, z, *MIDBRAIN, both=False) & brain)
    cerebellum = brain & ~stem & (y < -38.0) & (z < np.minimum(tentorium, -4.0))
    cerebrum = brain & ~stem & ~cerebellum
    labels = np.zeros(gm.shape, np.uint8)
    nuclei = {n: _ellipsoid(x, y, z, *NUCLEI[n]) & cerebrum for n in NUCLEI}
    bg = nuclei["putamen"] | nuclei["pallidum"] | nuclei["caudate"]
    deep_grey = bg | nuclei["thalamus"] | nuclei["internal_capsule"]
    # grey matter around the deep nuclei (their borders, hypothalamus, basal forebrain) is deep, not cortex
    diencephalon = (ax < 14.0) & (y > -32.0) & (y < 0.0) & (z > -12.0) & (z < 20.0)
    deep_zone = ndi.binary_dilation(deep_grey, iterations=5) | diencephalon
    cortex = cerebrum & (gm >= 0.5) & (gm >= wm) & ~deep_zone
    white = cerebrum & ~cortex & ~deep_grey
    lobe = _lobes(x, y, z)
    near = ndi.distance_transform_edt(~cortex) <= JUXTACORTICAL_MM  # 1 mm voxels
    labels[white] = CODE["deep_white_matter"]
    callosum = white & (ax < 10.0) & (y > -42.0) & (y < 34.0) & (z > 4.0) & (z < 30.0) & (wm > 0.5)
    labels[callosum] = CODE["corpus_callosum"]
    external = white & (ax > 28.0) & (ax < 33.0) & (y > -12.0) & (y < 16.0) & (z > -6.0) & (z < 16.0)
    labels[external] = CODE["external_capsule"]
    juxta = white & near & ~callosum & ~external
    cortex &= ~((ax < 14.0) & (z < 5.0) & (y > -45.0) & (y < 5.0))  # the diencephalon's floor and the cisterns: deep
    juxta &= ~((ax < 14.0) & (z < 5.0) & (y > -45.0) & (y < 5.0))
    labels[cerebrum & (ax < 14.0) & (z < 5.0) & (y > -45.0) & (y < 5.0)] = CODE["deep_white_matter"]
    labels[juxta | cortex] = lobe[juxta | cortex]
    rim = white & deep_zone & (gm >= 0.5) & (gm >= wm) & (z > -8.0)  # deep grey matter beyond the ellipsoids
    labels[rim] = np.where(y[rim] < -8.0, CODE["thalamus"], CODE["basal_ganglia"])
    labels[_ellipsoid(x, y, z, *HIPPOCAMPUS) & cerebrum & ~deep_grey] = CODE["hippocampus"]
    labels[nuclei["internal_capsule"]] = CODE["internal_capsule"]
    labels[bg] = CODE["basal_ganglia"]
    labels[nuclei["thalamus"] & ~bg] = CODE["thalamus"]
    labels[stem] = CODE["pons_medulla"]
    labels[midbrain] = CODE["midbrain"]
    labels[cerebellum] = CODE["cerebellum"]
    labels[~brain] = 0
    labels = _fill_csf(labels, brain & (csf > 0.5) & ~deep_grey & ~stem)
    epvs = np.zeros(gm.shape, np.uint8)  # rating regions, each EPVS_MARGIN_MM wider than the structure
    grow = ndi.generate_binary_structure(3, 1)
    cso = cerebrum & (z > 16.0) & ~ndi.binary_dilation(deep_grey | callosum, grow, iterations=2)
    epvs[cso] = 2
    for code, region in ((3, labels == CODE["hippocampus"]), (4, labels == CODE["midbrain"]),
                         (1, bg | nuclei["internal_capsule"])):
        epvs[ndi.binary_dilation(region, grow, iterations=int(EPVS_MARGIN_MM)) & brain & ~cerebellum] = code
    epvs[~brain] = 0
    np.savez_compressed(out, labels=labels, epvs=epvs, affine=t["affine"])
    return {"labels": labels, "epvs": epvs, "affine": t["affine"]}


def _fill_csf(labels: np.ndarray, fluid: np.ndarray) -> np.ndarray:
    """Fluid inside the brain (ventricles, sulci) takes the label of the nearest tissue voxel."""
    tissue = (labels > 0) & ~fluid
    _, idx = ndi.distance_transform_edt(~tissue, return_indices=True)
    out = labels.copy()
    out[fluid] = labels[tuple(i[fluid] for i in idx)]
    return out


if __name__ == "__main__":
    derive()
