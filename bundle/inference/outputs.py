# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""What a detector's output holds, read once per subject: its detections-table rows, its maps, its instance map.

A method declares what it produces by naming these readers in its ``inference.yaml``; the writers of
:mod:`bundle.handlers.writers` only write what they are given. Each reader is a callable
``reader(subject, image, output)`` (``image``: the preprocessed image, ``output``: the post-processed network
output of one subject) that computes its result once per subject, so that two writers sharing a reader (e.g. the
table and the instance map) do not compute it twice.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from monai.data.utils import affine_to_spacing

from ..metrics.objects import connected_components, objects_from_map
from .detections import detection_rows, input_grid, input_grid_rows, to_grid


class SubjectReader:
    """Base of the readers: ``reader(subject, image, output)`` returns :meth:`compute`'s result, computed once per
    output (the last subject's result is kept until :meth:`forget`, which the writers call after each subject)."""

    _readers: weakref.WeakSet = weakref.WeakSet()

    #: the table's extra columns: ``p_<choice>`` per choice and one column per rater head (``write_detections``)
    choices: tuple[str, ...] = ()
    raters: tuple[str, ...] = ()
    #: further columns after the rater heads' (a measurement of the reader's own, e.g. ``fluid_beyond_mm3``)
    extra_columns: tuple[str, ...] = ()
    #: the class written in the ``label`` column ("" where the detector does not classify)
    label: str = ""

    def __call__(self, subject: str, image, output: dict) -> Any:
        last = getattr(self, "_last", None)
        if last is None or last[0] is not output or last[1] != subject:
            self._last = (output, subject, self.compute(subject, image, output))
            SubjectReader._readers.add(self)
        return self._last[2]

    @classmethod
    def forget(cls) -> None:
        """Drop every reader's kept result (and the output it came from), so that nothing of one subject stays in
        memory while the next is processed."""
        for reader in list(cls._readers):
            reader._last = None

    def compute(self, subject: str, image, output: dict) -> Any:
        raise NotImplementedError

    @staticmethod
    def item(subject: str, output: dict, key: str):
        """``output[key]``, or a readable error naming the subject and the keys there are."""
        if key not in output:
            raise KeyError(f"subject {subject!r}: the network output has no {key!r} (it has {sorted(output)})")
        return output[key]


class MapDetections(SubjectReader):
    """Rows from a probability map ``output[key][channel]`` on the image's grid: connected components of
    ``map >= threshold`` (see :func:`bundle.metrics.objects_from_map`), scored by their maximum, all of class
    ``label``; coordinates from the image's affine (the segmentation workflow neither resamples nor crops)."""

    def __init__(
        self, threshold: float = 0.5, connectivity: int = 26, min_voxels: int = 1, channel: int = -1,
        label: str = "", key: str = "pred",
    ) -> None:  # fmt: skip
        self.threshold, self.connectivity, self.min_voxels = float(threshold), int(connectivity), int(min_voxels)
        self.channel, self.label, self.key = int(channel), label, key

    def compute(self, subject: str, image, output: dict) -> list[dict]:
        prob = np.asarray(self.item(subject, output, self.key)[self.channel].detach().float().cpu())
        affine = np.asarray(image.affine, float)
        objs = objects_from_map(prob, self.threshold, self.connectivity, affine_to_spacing(affine), self.min_voxels)
        objs.labels = np.full(len(objs), self.label, dtype=object)
        return detection_rows(subject, objs, affine)


class TableDetections(SubjectReader):
    """Rows from a point detector's (N, 6) table ``output[key]`` (:data:`bundle.inference.TABLE_COLUMNS`, computed on
    the image's grid, e.g. the 1 mm working grid), reported on the input file's grid; rows with a score below
    ``threshold`` are dropped. ``score_column``: 3 the detector's score, 4 its stage-1 score."""

    def __init__(self, threshold: float = 0.5, label: str = "", score_column: int = 3, key: str = "pred") -> None:
        self.threshold, self.label, self.score_column, self.key = float(threshold), label, int(score_column), key

    def compute(self, subject: str, image, output: dict) -> list[dict]:
        table = self.item(subject, output, self.key)
        return input_grid_rows(subject, table, image, self.label, self.score_column, min_score=self.threshold)[0]


class RegionDetections(SubjectReader):
    """The rows of the reader ``detections`` with two more columns from the bundle's atlas
    (:func:`bundle.data.atlas.regions_at`, through the image's ``meta["template_map"]`` that
    :class:`bundle.transforms.TemplateMapd` wrote): ``region`` (EPVS: the rating region or ``other``; every other
    class: lobar, deep or infratentorial) and ``subregion`` (the atlas's fine region). A subject without a map
    gets ``unknown`` in both."""

    def __init__(self, detections: SubjectReader) -> None:
        self.detections = detections
        self.choices, self.raters, self.label = detections.choices, detections.raters, detections.label
        self.extra_columns = (*detections.extra_columns, "region", "subregion")

    def compute(self, subject: str, image, output: dict) -> list[dict]:
        import json

        from ..data.atlas import regions_at

        rows = [dict(r) for r in self.detections(subject, image, output)]
        tmap = getattr(image, "meta", {}).get("template_map")
        if not rows:
            return rows
        if not tmap:
            return [{**r, "region": "unknown", "subregion": "unknown"} for r in rows]
        found = regions_at(np.array([[float(r[a]) for a in "xyz"] for r in rows]), json.loads(tmap))
        for r, f in zip(rows, found):
            r["region"] = f["epvs_region"] if r.get("label") == "epvs" else f["group"]
            r["subregion"] = f["subregion"]
        return rows


class RegionMap(SubjectReader):
    """``(uint8 map, affine)`` of the atlas's fine regions on the input file's grid
    (:func:`bundle.data.atlas.atlas_on_grid`, through the image's ``meta["template_map"]``); zeros where the
    subject has no map."""

    def compute(self, subject: str, image, output: dict) -> tuple[np.ndarray, np.ndarray]:
        import json

        from ..data.atlas import atlas_on_grid

        affine, shape = input_grid(image)
        tmap = getattr(image, "meta", {}).get("template_map")
        if not tmap:
            return np.zeros(shape, np.uint8), affine
        return atlas_on_grid(json.loads(tmap), affine, shape), affine


class OutputMap(SubjectReader):
    """``(array, affine)`` of the map ``output[key]`` (channel ``channel`` when given) on one of three grids:
    ``image``: the preprocessed image's (its affine); ``input``: the input file's (resampled there from the
    image's grid, :func:`bundle.inference.input_grid`); ``own``: the map's own (a MetaTensor already brought back,
    e.g. by MONAI ``Invertd``)."""

    grids = ("image", "input", "own")

    def __init__(self, key: str = "pred", channel: int | None = None, grid: str = "image") -> None:
        if grid not in self.grids:
            raise ValueError(f"grid must be one of {self.grids}, got {grid!r}")
        self.key, self.channel, self.grid = key, channel, grid

    def compute(self, subject: str, image, output: dict) -> tuple[np.ndarray, np.ndarray]:
        value = self.item(subject, output, self.key)
        arr = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
        arr = arr[self.channel] if self.channel is not None else arr
        if self.grid == "own":
            return arr.reshape(arr.shape[-3:]), np.asarray(value.affine, float)
        affine = np.asarray(image.affine, float)
        arr = arr.reshape(tuple(image.shape[-3:]))
        if self.grid == "image":
            return arr, affine
        in_affine, in_shape = input_grid(image)
        return to_grid(arr.astype(np.float32, copy=False), affine, in_affine, in_shape), in_affine


class MaskMap(OutputMap):
    """:class:`OutputMap` of a binary mask (e.g. the brain mask the detector used), as uint8 0/1 after the
    resampling (at 0.5)."""

    def compute(self, subject: str, image, output: dict) -> tuple[np.ndarray, np.ndarray]:
        arr, affine = super().compute(subject, image, output)
        return (np.asarray(arr) >= 0.5).astype(np.uint8), affine


class ComponentInstances(SubjectReader):
    """``(int16 instance map, affine)``: the connected component of ``map >= threshold`` under each of the
    subject's detections, filled with its ``lesion_id`` (:func:`instance_map_of_rows`); ``map`` and ``detections``
    are readers (an :class:`OutputMap` on the grid the rows' ``i, j, k`` refer to, and the table's reader)."""

    def __init__(self, detections: SubjectReader, map: OutputMap, threshold: float = 0.2, connectivity: int = 26):
        self.detections, self.map = detections, map
        self.threshold, self.connectivity = float(threshold), int(connectivity)

    def compute(self, subject: str, image, output: dict) -> tuple[np.ndarray, np.ndarray]:
        prob, affine = self.map(subject, image, output)
        rows = self.detections(subject, image, output)
        return instance_map_of_rows(rows, prob, self.threshold, self.connectivity), affine


def instance_map_of_rows(rows: list[dict], prob: np.ndarray, threshold: float, connectivity: int = 26) -> np.ndarray:
    """int16 map: the connected component of ``prob >= threshold`` that holds each row's (i, j, k) voxel, filled
    with the row's ``lesion_id`` (a single voxel where that voxel is below the threshold)."""
    comps = connected_components(prob >= threshold, int(connectivity))
    n_comps = int(comps.max())
    lut = np.zeros(n_comps + 1, np.int16)  # component -> lesion_id, applied to the volume once
    below = []
    for r in rows:
        ijk = tuple(int(np.clip(round(float(r[a])), 0, size - 1)) for a, size in zip("ijk", prob.shape))
        if comps[ijk]:
            lut[comps[ijk]] = int(r["lesion_id"])
        else:
            below.append((ijk, int(r["lesion_id"])))
    out = lut[comps]
    for ijk, lesion_id in below:
        out[ijk] = lesion_id
    return out
