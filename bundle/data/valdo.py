# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Import a VALDO 2021 challenge folder into a datalist, turning binary masks into instance maps.

Layouts (one folder per subject, ``sub-XXX/``):

* Task 1, EPVS: ``sub-XXX_space-T1_desc-masked_{T1,T2,FLAIR}.nii.gz``,
  ``sub-XXX_space-T1_desc-Rater<N>_PVSSeg.nii.gz``
* Task 2, microbleeds: ``sub-XXX_space-T2S_desc-masked_{T2S,T1,T2}.nii.gz``, ``sub-XXX_space-T2S_CMB.nii.gz``
* Task 3, lacunes: ``sub-XXX_space-T1_desc-masked_{T1,T2,FLAIR}.nii.gz``,
  ``sub-XXX_space-T1_desc-Rater<N>_Lacunes.nii.gz``

CLI::

    python -m bundle.data.valdo --task 2 --root VALDO/Task2 --out valdo_task2 [--modalities swi,t1,t2]

Writes ``OUT/datalist.json``, ``OUT/labels/sub-XXX_instances.nii.gz`` and ``OUT/labels/sub-XXX_lesions.json``; image
paths point at the original files, which are never modified. Where several raters' masks exist, objects come from
the reference rater (``--rater``, default the lowest number) and each record's ``raters`` lists, per rater, the
class if that rater's mask overlaps the object and ``nothing`` otherwise.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from ..metrics.objects import connected_components, objects_from_instances
from .datalist import DatalistError, save_datalist
from .io import write_json, write_nifti

__all__ = ["VALDO_TASKS", "import_valdo", "instances_from_mask"]

VALDO_TASKS = {
    1: {
        "space": "T1",
        "mods": {"t1": "T1", "t2": "T2", "flair": "FLAIR"},
        "label": r"desc-Rater(\d+)_PVSSeg",
        "class": "epvs",
    },
    2: {"space": "T2S", "mods": {"swi": "T2S", "t1": "T1", "t2": "T2"}, "label": r"()CMB", "class": "cmb"},
    3: {
        "space": "T1",
        "mods": {"t1": "T1", "t2": "T2", "flair": "FLAIR"},
        "label": r"desc-Rater(\d+)_Lacunes",
        "class": "lacune",
    },
}


def instances_from_mask(mask: np.ndarray, connectivity: int = 26, min_voxels: int = 1) -> np.ndarray:
    """Connected components of a binary mask as an instance map (ids 1..N in scan order).

    Args:
        mask: 3D array, non-zero = object.
        connectivity: 6, 18 or 26.
        min_voxels: components smaller than this are dropped.
    """
    lab = connected_components(mask, connectivity)
    n = int(lab.max())
    if n == 0:
        return lab.astype(np.int32)
    keep = np.flatnonzero(np.bincount(lab.ravel()) >= min_voxels)
    keep = keep[keep > 0]
    remap = np.zeros(n + 1, np.int32)
    remap[keep] = np.arange(1, len(keep) + 1)
    return remap[lab]


def _records(inst: np.ndarray, affine: np.ndarray, cls: str, rater_masks: list[np.ndarray]) -> list[dict]:
    """One record per id 1..N of ``inst``; a rater calls a lesion ``cls`` when their mask touches it. One pass
    over the volume per rater, whatever the number of lesions."""
    from monai.data.utils import affine_to_spacing  # deferred, so that `--help` is quick

    spacing = affine_to_spacing(affine)
    objs = objects_from_instances(inst, spacing)
    n = len(objs)
    if n == 0:
        return []
    if int(inst.max()) != n:
        raise ValueError("instance ids must be 1..N (instances_from_mask writes them so)")
    touched = []
    for m in rater_masks:
        hit = np.zeros(int(inst.max()) + 1, bool)
        hit[inst[np.asarray(m, bool)]] = True
        touched.append(hit)
    out = []
    for i, (c, s) in enumerate(zip(objs.centres, objs.sizes), start=1):
        out.append(
            {
                "id": int(i),
                "class": cls,
                "centre_voxel": np.round(c, 3).tolist(),
                "centre_mm": np.round(affine[:3, :3] @ c + affine[:3, 3], 3).tolist(),
                "n_voxels": int(s),
                "volume_mm3": round(float(s * np.prod(spacing)), 3),
                "raters": [cls if bool(hit[i]) else "nothing" for hit in touched] or [cls],
            }
        )
    return out


def _find(folder: Path, name: str) -> Path | None:
    hits = sorted(folder.glob(f"{name}.nii.gz")) + sorted(folder.glob(f"{name}.nii"))
    return hits[0] if hits else None


def import_valdo(
    task: int,
    root: str | Path,
    out_dir: str | Path,
    modalities: list[str] | None = None,
    rater: int | None = None,
    connectivity: int = 26,
    split: str = "training",
) -> Path:
    """Build a datalist from a VALDO task folder; see the module docstring. Returns the datalist path.

    Raises:
        FileNotFoundError: ``root`` is missing, has no ``sub-*`` folder, or a subject lacks a modality.
        DatalistError: unknown task or modality.
    """
    if task not in VALDO_TASKS:
        raise DatalistError(f"unknown VALDO task {task}; expected 1, 2 or 3")
    spec = VALDO_TASKS[task]
    modalities = modalities or list(spec["mods"])
    unknown = [m for m in modalities if m not in spec["mods"]]
    if unknown:
        raise DatalistError(f"VALDO task {task} has no modality {unknown}; available: {list(spec['mods'])}")
    root, out_dir = Path(root), Path(out_dir)
    subjects = sorted(p for p in root.glob("sub-*") if p.is_dir()) if root.is_dir() else []
    if not subjects:
        raise FileNotFoundError(f"{root} has no sub-* subject folders (is it a VALDO task folder?)")
    entries = []
    for folder in subjects:
        sid = folder.name
        prefix = f"{sid}_space-{spec['space']}_"
        images = []
        for m in modalities:
            path = _find(folder, f"{prefix}desc-masked_{spec['mods'][m]}")
            if path is None:
                raise FileNotFoundError(f"{sid}: no {prefix}desc-masked_{spec['mods'][m]}.nii[.gz] in {folder}")
            images.append(str(path.resolve()))
        entry = {"subject": sid, "image": images}
        masks = _rater_masks(folder, prefix, spec["label"])
        if masks:
            entry.update(_write_instances(sid, masks, rater, connectivity, spec["class"], out_dir))
        entries.append(entry)
    data = {
        "name": f"VALDO2021_task{task}",
        "description": f"imported from {root.resolve()} by bundle.data.valdo",
        "modalities": modalities,
        "classes": [spec["class"]],
        split: entries,
    }
    return save_datalist(data, out_dir / "datalist.json")


def _rater_masks(folder: Path, prefix: str, pattern: str) -> dict[int, Path]:
    found = {}
    for p in sorted(folder.glob(f"{prefix}*.nii*")):
        m = re.fullmatch(re.escape(prefix) + pattern + r"\.nii(\.gz)?", p.name)
        if m:
            found[int(m.group(1) or 0)] = p
    return found


def _write_instances(sid, masks: dict[int, Path], rater, connectivity, cls, out_dir: Path) -> dict:
    import nibabel as nib

    ref = rater if rater is not None else min(masks)
    if ref not in masks:
        raise FileNotFoundError(f"{sid}: no mask of rater {ref} (found raters {sorted(masks)})")
    img = nib.load(str(masks[ref]))
    inst = instances_from_mask(np.asarray(img.dataobj), connectivity)
    others = [np.asarray(nib.load(str(masks[r])).dataobj) > 0 for r in sorted(masks)] if len(masks) > 1 else []
    for r, m in zip(sorted(masks), others):
        if m.shape != inst.shape:
            raise DatalistError(f"{sid}: rater {r}'s mask {masks[r]} has shape {m.shape}, the reference rater's "
                                f"{masks[ref]} {inst.shape}")  # fmt: skip
    records = _records(inst, img.affine, cls, others)
    label = write_nifti(inst, img.affine, out_dir / "labels" / f"{sid}_instances.nii.gz", np.int32)
    lesions = write_json(records, out_dir / "labels" / f"{sid}_lesions.json")
    return {"label": str(label.resolve()), "lesions": str(lesions.resolve()), "count": len(records)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bundle.data.valdo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", type=int, choices=sorted(VALDO_TASKS), required=True)
    parser.add_argument("--root", required=True, help="VALDO task folder holding sub-XXX/ folders")
    parser.add_argument("--out", required=True, help="output folder for datalist.json and labels/")
    parser.add_argument("--modalities", default=None, help="comma-separated, e.g. swi,t1,t2 (task 2)")
    parser.add_argument("--rater", type=int, default=None, help="reference rater for tasks 1 and 3")
    parser.add_argument("--connectivity", type=int, default=26, choices=(6, 18, 26))
    parser.add_argument("--split", default="training", choices=("training", "validation", "testing"))
    args = parser.parse_args(argv)
    mods = args.modalities.split(",") if args.modalities else None
    path = import_valdo(args.task, args.root, args.out, mods, args.rater, args.connectivity, args.split)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
