# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Samplers of the objects the simulator draws: labelled markers (CMB, EPVS, lacunes) and unlabelled CMB mimics.

Sizes follow the clinical definitions: CMB 2-10 mm (visible diameter on SWI, blooming included), EPVS 1-3 mm wide
and 3-15 mm long, lacunes 3-15 mm. Every size limit is an argument of :class:`ObjectSampler`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shapes import Ellipsoid, Tube, random_rotation

__all__ = ["SimObject", "ObjectSampler"]


@dataclass
class SimObject:
    """One simulated object.

    Attributes:
        kind: ``cmb``, ``epvs``, ``lacune`` (labelled) or ``vein``, ``calcification``, ``artefact`` (mimics).
        shape: geometry in world mm; for labelled objects the label map is drawn from it.
        region: anatomical region it was placed in.
        core: for CMB, the true (non-bloomed) extent seen on T1/T2/FLAIR; unused otherwise.
        rim: for lacunes with a gliotic rim, the outer ellipsoid (rim = rim minus shape).
        contrast: per-object multiplier of the object's contrast (inter-object variability).
    """

    kind: str
    shape: Ellipsoid | Tube
    region: str
    core: Ellipsoid | None = None
    rim: Ellipsoid | None = None
    contrast: float = 1.0

    @property
    def labelled(self) -> bool:
        return self.kind in ("cmb", "epvs", "lacune")

    def clearance(self, point: np.ndarray) -> float:
        """Distance (mm) from ``point`` to the object's surface (negative inside), approximated."""
        if isinstance(self.shape, Tube):
            pts = self.shape.points
            seg = [(a, b) for a, b in zip(pts[:-1], pts[1:])]
            d = min(_point_segment(point, a, b) for a, b in seg)
            return d - self.shape.radius
        outer = self.rim or self.shape
        return float(np.linalg.norm(point - outer.centre) - outer.radii.max())


def _point_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = np.clip((p - a) @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * ab)))


class ObjectSampler:
    """Places objects in region masks without overlap.

    Args:
        affine: voxel-to-world matrix of the subject grid.
        regions: boolean region masks (see :func:`bundle.data.synth.anatomy.region_masks`).
        rng: random generator.
        margin_mm: minimum gap between two objects.
    """

    def __init__(self, affine: np.ndarray, regions: dict[str, np.ndarray], rng: np.random.Generator, margin_mm=2.0):
        self.affine = affine
        self.rng = rng
        self.margin = margin_mm
        self.flat = {k: np.flatnonzero(v) for k, v in regions.items()}
        self.shape = next(iter(regions.values())).shape
        self.placed: list[SimObject] = []

    # -- placement -------------------------------------------------------------------------------------------
    def _point(self, region: str) -> np.ndarray | None:
        idx = self.flat.get(region)
        if idx is None or len(idx) == 0:
            return None
        ijk = np.array(np.unravel_index(self.rng.choice(idx), self.shape), float) + self.rng.uniform(-0.5, 0.5, 3)
        return self.affine[:3, :3] @ ijk + self.affine[:3, 3]

    def _free(self, points: np.ndarray, extent: float) -> bool:
        return all(o.clearance(p) > extent + self.margin for o in self.placed for p in points)

    def _probe(self, obj: SimObject) -> np.ndarray:
        """Points of a new object whose clearance from the placed objects is tested."""
        return obj.shape.points if isinstance(obj.shape, Tube) else obj.shape.centre[None]

    def _try(self, region: str, build, tries: int = 60) -> SimObject | None:
        for _ in range(tries):
            centre = self._point(region)
            if centre is None:
                return None
            obj = build(centre)
            probe = self._probe(obj)
            reach = obj.shape.radius if isinstance(obj.shape, Tube) else float((obj.rim or obj.shape).radii.max())
            if self._free(probe, reach):
                self.placed.append(obj)
                return obj
        return None

    # -- labelled markers -----------------------------------------------------------------------------------
    def cmb(self, region: str, diameter=(2.0, 10.0), bloom=(1.3, 1.8)) -> SimObject | None:
        """Microbleed: round/ovoid, ``diameter`` mm as seen on SWI; the true core is ``bloom`` times smaller."""
        d = diameter[0] + (diameter[1] - diameter[0]) * self.rng.beta(1.3, 3.5)
        radii = d / 2.0 * np.array([1.0, *self.rng.uniform(0.75, 1.0, 2)])
        b = self.rng.uniform(*bloom)

        def build(c):
            rot = random_rotation(self.rng)
            return SimObject(
                "cmb",
                Ellipsoid(c, radii, rot),
                region,
                core=Ellipsoid(c, radii / b, rot),
                contrast=self.rng.uniform(0.85, 1.15),
            )

        return self._try(region, build)

    def epvs(self, region: str, width=(1.0, 3.0), length=(3.0, 15.0)) -> SimObject | None:
        """Perivascular space: a slightly curved tube, vertical in the basal ganglia, radial in the centrum."""
        w = width[0] + (width[1] - width[0]) * self.rng.beta(1.5, 2.5)
        ln = max(length[0] + (length[1] - length[0]) * self.rng.beta(1.5, 2.5), 1.5 * w)

        def build(c):
            if region == "basal_ganglia":
                axis = np.array([0.0, 0.0, 1.0]) + self.rng.normal(0, 0.25, 3)
            else:
                axis = c - np.array([0.0, -15.0, 10.0]) + self.rng.normal(0, 8.0, 3)
            axis /= np.linalg.norm(axis)
            half = max(ln - w, 0.2) / 2.0
            bend = np.cross(axis, self.rng.normal(size=3))
            bend *= 0.12 * ln / max(np.linalg.norm(bend), 1e-9)
            pts = np.stack([c - half * axis, c + bend, c + half * axis])
            return SimObject("epvs", Tube(pts, w / 2.0), region, contrast=self.rng.uniform(0.85, 1.1))

        return self._try(region, build)

    def lacune(self, region: str, diameter=(3.0, 15.0), rim_probability=0.8, rim=(0.8, 1.5)) -> SimObject | None:
        """Lacune: CSF-filled ovoid with (usually) a FLAIR-bright gliotic rim of ``rim`` mm."""
        d = diameter[0] + (diameter[1] - diameter[0]) * self.rng.beta(1.5, 3.0)
        radii = d / 2.0 * np.array([1.0, *self.rng.uniform(0.6, 1.0, 2)])
        thickness = self.rng.uniform(*rim) if self.rng.random() < rim_probability else 0.0

        def build(c):
            rot = random_rotation(self.rng)
            outer = Ellipsoid(c, radii + thickness, rot) if thickness > 0 else None
            return SimObject("lacune", Ellipsoid(c, radii, rot), region, rim=outer, contrast=self.rng.uniform(0.9, 1.1))

        return self._try(region, build)

    # -- mimics (never labelled) ----------------------------------------------------------------------------
    def vein(self, region: str, radius=(0.45, 0.9), length=(20.0, 50.0), segments: int = 5) -> SimObject | None:
        """Vein: a long dark tube on SWI crossing many slices (random walk with smooth turns)."""
        r = self.rng.uniform(*radius)
        step = self.rng.uniform(*length) / segments

        def build(c):
            d = self.rng.normal(size=3)
            d[2] = np.sign(d[2] or 1.0) * max(abs(d[2]), 0.8)
            pts = [c]
            for _ in range(segments):
                d = d / np.linalg.norm(d) + self.rng.normal(0, 0.25, 3)
                pts.append(pts[-1] + step * d / np.linalg.norm(d))
            return SimObject("vein", Tube(np.stack(pts), r), region, contrast=self.rng.uniform(0.8, 1.1))

        return self._try(region, build)

    def calcification(self, region: str = "pallidum", diameter=(3.0, 7.0)) -> SimObject | None:
        """Calcification-like blob (dark on SWI), typically in the globus pallidus."""
        d = self.rng.uniform(*diameter)
        radii = d / 2.0 * np.array([1.0, *self.rng.uniform(0.6, 0.9, 2)])
        return self._try(
            region, lambda c: SimObject("calcification", Ellipsoid(c, radii, random_rotation(self.rng)), region)
        )

    def artefact(self, region: str = "inferior_edge", size=(8.0, 16.0)) -> SimObject | None:
        """Susceptibility artefact at the skull base: a flat, smooth signal drop on SWI."""
        radii = np.array([self.rng.uniform(*size), self.rng.uniform(*size), self.rng.uniform(3.0, 6.0)])
        return self._try(
            region,
            lambda c: SimObject(
                "artefact", Ellipsoid(c, radii, np.eye(3)), region, contrast=self.rng.uniform(0.5, 0.85)
            ),
        )
