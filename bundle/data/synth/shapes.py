# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Analytic object shapes rendered with sub-voxel supersampling (partial volume).

A shape is defined in world millimetres. :func:`render` returns, for the voxels of a small box around it, the
fraction of each voxel the shape covers, estimated from ``s x s x s`` sub-samples per voxel where ``s`` keeps the
sub-sample pitch at or below ``pitch_mm``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from monai.data.utils import affine_to_spacing

__all__ = ["Ellipsoid", "Tube", "render", "random_rotation"]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


@dataclass
class Ellipsoid:
    """Solid ellipsoid: ``centre`` (mm, world), semi-axes ``radii`` (mm) along the columns of ``rotation``."""

    centre: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def inside(self, pts: np.ndarray) -> np.ndarray:
        """Boolean (N,) for points (N, 3) in mm."""
        local = (pts - self.centre) @ self.rotation / self.radii
        return (local**2).sum(1) <= 1.0

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        half = np.sqrt(((self.rotation * self.radii) ** 2).sum(1))
        return self.centre - half, self.centre + half

    @property
    def volume_mm3(self) -> float:
        return float(4.0 / 3.0 * np.pi * np.prod(self.radii))


@dataclass
class Tube:
    """Capsule chain: all points within ``radius`` mm of the polyline ``points`` (M, 3) in mm."""

    points: np.ndarray
    radius: float

    def inside(self, pts: np.ndarray) -> np.ndarray:
        best = np.full(len(pts), np.inf)
        for a, b in zip(self.points[:-1], self.points[1:]):
            ab = b - a
            t = np.clip(((pts - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
            best = np.minimum(best, ((pts - (a + t[:, None] * ab)) ** 2).sum(1))
        return best <= self.radius**2

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.points.min(0) - self.radius, self.points.max(0) + self.radius

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())

    @property
    def centre(self) -> np.ndarray:
        return self.points.mean(0)

    @property
    def volume_mm3(self) -> float:
        return float(np.pi * self.radius**2 * self.length_mm + 4.0 / 3.0 * np.pi * self.radius**3)


def render(
    shape: Ellipsoid | Tube, affine: np.ndarray, grid_shape: tuple[int, ...], pitch_mm: float = 0.34
) -> tuple[tuple[slice, ...], np.ndarray]:
    """Fraction of each voxel covered by ``shape``.

    Args:
        shape: the object, in world mm.
        affine: 4x4 voxel-to-world matrix of the grid.
        grid_shape: spatial shape of the grid.
        pitch_mm: largest distance between sub-samples along an axis.

    Returns:
        ``(box, fraction)``: slices into the grid and a float32 array of that box's shape with values in [0, 1].
        An object entirely outside the grid gives empty slices.
    """
    inv = np.linalg.inv(affine)
    lo, hi = shape.bounds()
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    vox = corners @ inv[:3, :3].T + inv[:3, 3]
    start = np.maximum(np.floor(vox.min(0)).astype(int) - 1, 0)
    stop = np.minimum(np.ceil(vox.max(0)).astype(int) + 2, grid_shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(start, stop))
    size = np.maximum(stop - start, 0)
    if np.any(size == 0):
        return box, np.zeros(size, np.float32)
    spacing = affine_to_spacing(affine)
    n_sub = np.maximum(np.ceil(spacing / pitch_mm).astype(int), 1)
    sub = [(np.arange(n) + 0.5) / n - 0.5 for n in n_sub]
    idx = [np.add.outer(np.arange(a, b), o).ravel() for a, b, o in zip(start, stop, sub)]
    ii, jj, kk = np.meshgrid(*idx, indexing="ij")
    pts = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], 1) @ affine[:3, :3].T + affine[:3, 3]
    hit = shape.inside(pts).reshape(size[0], n_sub[0], size[1], n_sub[1], size[2], n_sub[2])
    return box, hit.mean(axis=(1, 3, 5)).astype(np.float32)
