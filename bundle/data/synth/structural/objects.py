# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Objects of the structural simulator: EPVS that bend and branch in four regions, wide perivascular spaces at the
base of the basal ganglia, lacunes with and without a rim (labelled), and flow voids (unlabelled vessels)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..objects import ObjectSampler, SimObject
from ..shapes import Tube

EPVS_REGIONS = ("basal_ganglia", "centrum_semiovale", "hippocampus", "midbrain")
LACUNE_REGIONS = ("basal_ganglia", "thalamus", "centrum_semiovale")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


@dataclass
class BranchedTube(Tube):
    """A tube along a polyline that may visit a node twice (out along a side branch and back), so one capsule
    chain draws a branching tube. Length and centre count every segment once."""

    n_branches: int = 0

    def _unique(self) -> list[tuple[np.ndarray, np.ndarray]]:
        seen, out = set(), []
        for a, b in zip(self.points[:-1], self.points[1:]):
            key = tuple(sorted((tuple(np.round(a, 6)), tuple(np.round(b, 6)))))
            if key not in seen:
                seen.add(key)
                out.append((a, b))
        return out

    @property
    def length_mm(self) -> float:
        return float(sum(np.linalg.norm(b - a) for a, b in self._unique()))

    @property
    def centre(self) -> np.ndarray:
        segs = self._unique()
        w = np.array([np.linalg.norm(b - a) for a, b in segs]) + 1e-9
        mids = np.array([(a + b) / 2.0 for a, b in segs])
        return (mids * w[:, None]).sum(0) / w.sum()


class StructuralSampler(ObjectSampler):
    """:class:`ObjectSampler` with the structural simulator's EPVS, lacune mimics and flow voids. The clearance
    test checks only the placed objects whose bounding boxes come near the new one (hundreds of objects)."""

    def __init__(self, *args, to_mni: np.ndarray | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._lo = np.zeros((0, 3))
        self._hi = np.zeros((0, 3))
        self.to_mni = np.eye(3) if to_mni is None else np.asarray(to_mni, float)

    def _probe(self, obj: SimObject) -> np.ndarray:
        """A tube's points every ``margin`` mm along each segment (not only its corners, which may lie far apart),
        so its axis keeps more than its radius plus half the margin from every placed object."""
        if not isinstance(obj.shape, Tube):
            return super()._probe(obj)
        pts = [obj.shape.points[:1]]
        for a, b in zip(obj.shape.points[:-1], obj.shape.points[1:]):
            n = max(int(np.ceil(np.linalg.norm(b - a) / self.margin)), 1)
            pts.append(a + np.outer(np.arange(1, n + 1) / n, b - a))
        return np.concatenate(pts)

    def _world(self, direction_mni: np.ndarray) -> np.ndarray:
        """A direction given in MNI space as a direction on the subject's grid (the head is rotated)."""
        return _unit(np.linalg.solve(self.to_mni, direction_mni))

    def _free(self, points: np.ndarray, extent: float) -> bool:
        n = len(self._lo)
        if n < len(self.placed):  # boxes of the objects placed since the last test
            boxes = [(o.rim or o.shape).bounds() for o in self.placed[n:]]
            self._lo = np.concatenate([self._lo, np.array([b[0] for b in boxes])])
            self._hi = np.concatenate([self._hi, np.array([b[1] for b in boxes])])
        reach = extent + self.margin
        lo, hi = points.min(0) - reach, points.max(0) + reach
        near = np.flatnonzero(np.all((self._lo <= hi) & (self._hi >= lo), axis=1))
        return all(self.placed[i].clearance(p) > reach for i in near for p in points)

    def _walk(self, start: np.ndarray, direction: np.ndarray, n: int, step: float, turn: float) -> list[np.ndarray]:
        pts, d = [start], direction
        for _ in range(n):
            d = _unit(d + self.rng.normal(0.0, turn, 3))
            pts.append(pts[-1] + step * d)
        return pts[1:]

    def _axis(self, region: str, c: np.ndarray) -> np.ndarray:
        """The tube's direction on the grid: defined in the head (MNI) frame, so it turns with the head."""
        if region == "centrum_semiovale":  # radial, towards the cortex, from the middle of the brain
            middle = np.array([0.0, -15.0, 10.0])
            return self._world(self.to_mni @ (c - middle) + self.rng.normal(0, 8.0, 3))
        if region == "hippocampus":  # along the hippocampus
            return self._world(np.array([0.0, 1.0, 0.35]) + self.rng.normal(0, 0.4, 3))
        return self._world(np.array([0.0, 0.0, 1.0]) + self.rng.normal(0, 0.3, 3))  # perforating arteries

    def epvs_tree(self, region: str, width=(1.0, 3.0), length=(3.0, 20.0), p_branch=0.25, site=None):
        """EPVS: a tube of ``width`` mm along a smoothly bending polyline of ``length`` mm centred in ``region``;
        with probability ``p_branch`` one side branch of 30-60 % of that length."""
        w = width[0] + (width[1] - width[0]) * self.rng.beta(1.5, 2.5)
        ln = max(length[0] + (length[1] - length[0]) * self.rng.beta(1.5, 2.5), 1.5 * w)
        n_seg = int(self.rng.integers(2, 6))
        branch = self.rng.random() < p_branch and ln >= 6.0

        def build(c):
            axis = self._axis(region, c)
            step = max(ln - w, 0.4) / n_seg
            back = self._walk(c, -axis, n_seg // 2, step, 0.3)
            main = back[::-1] + [c] + self._walk(c, axis, n_seg - n_seg // 2, step, 0.3)
            pts, n_br = list(main), 0
            if branch and len(main) > 2:
                k = int(self.rng.integers(1, len(main) - 1))
                side = _unit(main[k + 1] - main[k - 1] + _unit(np.cross(axis, self.rng.normal(size=3))) * 1.2)
                arm = self._walk(main[k], side, 2, self.rng.uniform(0.15, 0.3) * ln, 0.25)
                pts = main[: k + 1] + arm + arm[-2::-1] + main[k:]
                n_br = 1
            obj = SimObject("epvs", BranchedTube(np.stack(pts), w / 2.0, n_br), region,
                            contrast=self.rng.uniform(0.85, 1.1))
            obj.site = site or region
            return obj

        return self._try(region, build)

    def flow_void(self, region: str) -> SimObject | None:
        """A vessel with fast flow (dark on spin echo): lenticulostriate-sized in the basal ganglia, larger in the
        cisterns."""
        r = self.rng.uniform(0.35, 0.7) if region == "basal_ganglia" else self.rng.uniform(0.7, 1.4)
        ln = self.rng.uniform(10.0, 30.0)

        def build(c):
            axis = self._axis("basal_ganglia", c) if region == "basal_ganglia" else _unit(self.rng.normal(size=3))
            back = self._walk(c, -axis, 2, ln / 4, 0.2)
            pts = back[::-1] + [c] + self._walk(c, axis, 2, ln / 4, 0.2)
            return SimObject("flow_void", Tube(np.stack(pts), r), region)

        return self._try(region, build)


def place_objects(acq, sampler: StructuralSampler) -> list[SimObject]:
    """Lacunes first (the largest), then the lacune mimics at the base of the basal ganglia, EPVS per region, then
    flow voids (unlabelled, kept clear of the labelled objects)."""
    rng = sampler.rng
    for _ in range(acq.lacunes):
        sampler.lacune(str(rng.choice(LACUNE_REGIONS, p=[0.45, 0.2, 0.35])), rim_probability=acq.p_rim)
    for _ in range(acq.bg_base_pvs):
        sampler.epvs_tree("bg_base", width=(2.0, 4.0), length=(3.0, 8.0), p_branch=0.0, site="bg_base")
    for region in EPVS_REGIONS:
        small = region in ("hippocampus", "midbrain")
        for _ in range(acq.epvs[region]):
            sampler.epvs_tree(region, length=(2.0, 8.0) if small else (3.0, 20.0))
    for i in range(acq.flow_voids):
        sampler.flow_void("basal_ganglia" if i % 2 == 0 else "cisterns")
    for obj in sampler.placed:  # bg_base objects are EPVS of the basal ganglia
        if obj.region == "bg_base":
            obj.region = "basal_ganglia"
    return sampler.placed
