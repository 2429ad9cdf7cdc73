# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Build test fixtures from the official VALDO 2021 evaluation code (WhereIsValdo/valdo-eval-2021).

The official repository has no licence, so nothing of it is copied here: its ``PairwiseMeasures`` class is
imported at run time from the folder given with ``--official`` and driven with small numpy arrays, the way its
driver ``compare_segmentations.py`` would (threshold 0.5, the given connectivity, thresh_assign, pixdim = the
prediction's zooms as numpy float32, as nibabel's ``get_zooms()`` returns them). The results are written as plain
facts (inputs + official outputs) to one JSON file.

Usage:
    python compare_valdo_official.py --official /path/to/valdo-eval-2021 --out fixtures.json
    python compare_valdo_official.py --official /path/to/valdo-eval-2021 --out fixtures.json --check
        (recompute the official outputs and compare them with an existing fixtures.json; exit 1 on difference)
    python compare_valdo_official.py --out fixtures.json --check package.module:function
        (placeholder: call ``function(pair)`` for every stored pair and list the differences with the official
        figures; see ``check_with_function``)

Conventions of the JSON file (see also README.md next to this script):
  * voxel indices are [i, j, k] array indices; ``ref`` lists the foreground voxels (value 1.0), ``pred`` lists
    [i, j, k, value] for every non-zero prediction voxel (values below 0.5 are kept: they are dropped by the rule);
  * arrays are built as float32 (like a float32 NIfTI); all prediction values are exactly representable;
  * ``connectivity`` is scipy's ``generate_binary_structure`` connectivity (1 = 6-, 2 = 18-, 3 = 26-neighbourhood);
  * ``official`` holds only what the official class returned; ``aux`` holds helper facts computed by this script
    independently (component centres, distance / overlap matrices, bug flags) and is not official output.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import io
import json
import math
import os
import platform
import sys

import numpy as np
from scipy import ndimage

THRESHOLD = 0.5  # probability threshold of the official driver (CLI default -t 0.5)
TASKS = ("epvs", "microbleeds", "lacunes")
# measure keys the official driver requests per task (the order matters: F1 adds a column to the match table)
DRIVER_MEASURES = {
    "epvs": ("absolute_count_difference", "f1_score", "mean_diceover", "absolute_volume_difference"),
    "microbleeds": ("absolute_count_difference", "f1_score", "mean_diceover", "absolute_volume_difference"),
    "lacunes": ("f1_score", "mean_diceover", "absolute_volume_difference"),
}
ISO = (1.0, 1.0, 1.0)
ANISO = (0.5, 0.5, 2.0)
NEIGHBOURS = {1: 6, 2: 18, 3: 26}


# ----------------------------------------------------------------------------------------------------------------
# small builders
# ----------------------------------------------------------------------------------------------------------------
def box(i, j, k, di=1, dj=1, dk=1):
    """Voxels of an axis-aligned box with corner (i, j, k) and size (di, dj, dk)."""
    return [(a, b, c) for a in range(i, i + di) for b in range(j, j + dj) for c in range(k, k + dk)]


def line(start, axis, length):
    out = []
    for t in range(length):
        p = list(start)
        p[axis] += t
        out.append(tuple(p))
    return out


def _pair(pid, task, desc, shape, ref, pred, thresh_assign, ref_zooms=ISO, pred_zooms=None, connectivity=3,
          tags=()):
    """A fixture input. ``ref``: iterable of voxels; ``pred``: iterable of (i, j, k) (value 1) or (i, j, k, v)."""
    pred_zooms = ref_zooms if pred_zooms is None else pred_zooms
    ref_set = sorted({tuple(int(x) for x in p) for p in ref})
    pred_map = {}
    for p in pred:
        v = float(p[3]) if len(p) == 4 else 1.0
        key = tuple(int(x) for x in p[:3])
        pred_map[key] = max(v, pred_map.get(key, 0.0))
    for p in list(ref_set) + list(pred_map):
        assert all(0 <= p[a] < shape[a] for a in range(3)), (pid, p, shape)
    for v in pred_map.values():
        assert 0.0 <= v <= 1.0 and float(np.float32(v)) == v or v == 0.49, (pid, v)
    return {
        "id": pid,
        "task": task,
        "description": desc,
        "shape": [int(s) for s in shape],
        "ref_zooms": [float(z) for z in ref_zooms],
        "pred_zooms": [float(z) for z in pred_zooms],
        "connectivity": int(connectivity),
        "neighbourhood": NEIGHBOURS[int(connectivity)],
        "thresh_assign": float(thresh_assign),
        "threshold": THRESHOLD,
        "tags": list(tags),
        "ref": [list(p) for p in ref_set],
        "pred": [list(k) + [v] for k, v in sorted(pred_map.items()) if v != 0.0],
    }


def arrays(pair):
    """float32 reference and prediction arrays of a fixture pair."""
    shape = tuple(pair["shape"])
    ref = np.zeros(shape, dtype=np.float32)
    pred = np.zeros(shape, dtype=np.float32)
    for i, j, k in pair["ref"]:
        ref[i, j, k] = 1.0
    for i, j, k, v in pair["pred"]:
        pred[i, j, k] = v
    return ref, pred


# ----------------------------------------------------------------------------------------------------------------
# hand-made cases
# ----------------------------------------------------------------------------------------------------------------
def _hand_microbleeds():
    S = (10, 6, 8)
    t = "microbleeds"
    P = []

    def add(name, desc, ref, pred, T, **kw):
        P.append(_pair("mb_h%02d_%s" % (len(P) + 1, name), t, desc, kw.pop("shape", S), ref, pred, T, **kw))

    # exact threshold and boundaries (notes section 10, case 1; strict d < T)
    add("d_eq_T", "notes 10.1: d == T (2 mm, axis k) -> strict '<' makes it FP", [(2, 2, 2)], [(2, 2, 4)], 2.0,
        tags=["notes10.1", "exact_threshold"])
    add("d_just_below_T", "d = 2 mm, T = 2.01 -> TP (no overlap, dice 0)", [(2, 2, 2)], [(2, 2, 4)], 2.01,
        tags=["exact_threshold"])
    add("d_eq_sqrt2", "diagonal d = sqrt(2) with T = float(sqrt(2))", [(2, 2, 2)], [(3, 3, 2)], math.sqrt(2.0),
        tags=["exact_threshold"])
    add("d_eq_T_aniso_k", "d == T = 2 mm along k with zooms (0.5,0.5,2)", [(2, 2, 2)], [(2, 2, 3)], 2.0,
        ref_zooms=ANISO, tags=["exact_threshold", "anisotropic"])
    add("d_eq_T_aniso_i", "d == T = 1 mm along i (2 voxels x 0.5) with zooms (0.5,0.5,2)", [(2, 2, 2)], [(4, 2, 2)],
        1.0, ref_zooms=ANISO, tags=["exact_threshold", "anisotropic"])
    add("d_eq_T_0p5", "d == T = 0.5 mm (1 voxel x 0.5), smallest threshold", [(4, 4, 4)], [(5, 4, 4)], 0.5,
        ref_zooms=ANISO, tags=["exact_threshold", "anisotropic"])
    add("d0_T0p5", "identical single voxel, T = 0.5 -> TP, dice 1", [(4, 4, 4)], [(4, 4, 4)], 0.5,
        ref_zooms=ANISO)
    # ties
    add("tie2", "notes 10.2: two predictions equidistant (2 mm) from one ref -> both TP", [(4, 2, 4)],
        [(4, 2, 2), (4, 2, 6)], 3.0, tags=["notes10.2", "tie"])
    add("tie3", "three predictions at 2 mm from one ref -> three TP", [(4, 3, 4)],
        [(4, 3, 2), (4, 3, 6), (2, 3, 4)], 3.0, tags=["tie"])
    add("tie2_plus_fn", "tie on ref 1 plus a far ref 2 left unmatched", [(4, 2, 4), (8, 4, 1)],
        [(4, 2, 2), (4, 2, 6)], 3.0, tags=["tie"])
    add("tie_aniso_axes", "tie across axes: 4 voxels x 0.5 mm (j) vs 1 voxel x 2 mm (k)", [(4, 4, 4)],
        [(4, 0, 4), (4, 4, 3)], 3.0, ref_zooms=ANISO, tags=["tie", "anisotropic"])
    add("tie_plus_loser", "two tied TP at 1 mm plus a third prediction at 2 mm (FP)", [(4, 3, 4)],
        [(4, 3, 3), (4, 3, 5), (6, 3, 4)], 3.0, tags=["tie", "contested"])
    # contested references / no reassignment / label order
    add("no_reassign", "notes 10.3: loser (d=2 to ref 1) not reassigned to free ref 2 (d=3)",
        [(2, 2, 2), (7, 2, 2)], [(2, 2, 2), (4, 2, 2)], 3.5, tags=["notes10.3", "no_reassignment", "contested"])
    add("equidist_lowest_label", "notes 10.4: prediction equidistant from two refs goes to the lower label and loses",
        [(2, 2, 2), (6, 2, 2)], [(2, 2, 2), (4, 2, 2)], 3.0, tags=["notes10.4", "lowest_label", "contested"])
    add("equidist_single", "single prediction equidistant (2 mm) from refs 1 and 2 -> ref 1", [(2, 2, 2), (6, 2, 2)],
        [(4, 2, 2)], 3.0, tags=["lowest_label"])
    add("nearest_not_lowest", "prediction nearer to ref 2 (1 mm) than ref 1 (3 mm) -> ref 2", [(2, 2, 2), (6, 2, 2)],
        [(5, 2, 2)], 4.0)
    add("contested_1_2", "two predictions at 1 and 2 mm from one ref -> 1 TP + 1 FP", [(4, 3, 4)],
        [(4, 3, 3), (4, 3, 6)], 3.0, tags=["contested"])
    add("notes_E12", "notes E12: refs (2,2,2),(2,2,6); preds (2,2,2),(8,5,7); T=2", [(2, 2, 2), (2, 2, 6)],
        [(2, 2, 2), (8, 5, 7)], 2.0, tags=["notesE12"])
    add("chain_lowest_label", "row of 4 refs and 4 preds each 1 mm from two refs -> lower label each time",
        [(1, 1, 1), (3, 1, 1), (5, 1, 1), (7, 1, 1)], [(2, 1, 1), (4, 1, 1), (6, 1, 1), (8, 1, 1)], 1.5,
        tags=["lowest_label", "crowded"])
    add("cluster_one_ref", "five predictions around one ref at 1, 1, 2, 2, 3 mm, T=5", [(5, 3, 4)],
        [(5, 3, 3), (5, 3, 5), (3, 3, 4), (7, 3, 4), (5, 0, 4)], 5.0, tags=["crowded", "tie", "contested"])
    # empty cases
    add("both_empty", "notes 10.5: both empty", [], [], 2.0, tags=["notes10.5", "both_empty"])
    add("ref_empty_1", "notes 10.6: ref empty, one prediction", [], [(2, 2, 2)], 2.0,
        tags=["notes10.6", "ref_empty"])
    add("ref_empty_3", "ref empty, three predictions (one soft 0.75)", [],
        [(2, 2, 2), (6, 4, 2), (8, 1, 6, 0.75)], 2.0, tags=["ref_empty"])
    add("pred_empty_1", "notes 10.7: prediction empty, one ref", [(2, 2, 2)], [], 2.0,
        tags=["notes10.7", "pred_empty"])
    add("pred_empty_3", "prediction empty, three refs", [(2, 2, 2), (6, 4, 2), (8, 1, 6)], [], 2.0,
        tags=["pred_empty"])
    add("pred_sub_threshold", "prediction has only 0.49 voxels -> empty after threshold; one ref",
        [(2, 2, 2)], [(2, 2, 2, 0.49), (5, 3, 3, 0.49)], 2.0, tags=["pred_empty", "threshold_0.5"])
    add("both_empty_sub_threshold", "ref empty, prediction only 0.49 -> both empty after threshold", [],
        [(2, 2, 2, 0.49)], 2.0, tags=["both_empty", "threshold_0.5"])
    # anisotropy and prediction-vs-reference zooms
    add("aniso_115", "notes 10.8: pixdim (1,1,5), 1 voxel in k = 5 mm > T=3 -> FP", [(2, 2, 2)], [(2, 2, 3)], 3.0,
        ref_zooms=(1.0, 1.0, 5.0), tags=["notes10.8", "anisotropic"])
    add("aniso_1105", "notes 10.8: pixdim (1,1,0.5), d = 0.5 < T=1 -> TP, dice 0", [(2, 2, 2)], [(2, 2, 3)], 1.0,
        ref_zooms=(1.0, 1.0, 0.5), tags=["notes10.8", "anisotropic"])
    add("zooms_ref_aniso_pred_iso", "ref zooms (0.5,0.5,2), pred zooms (1,1,1): 1 voxel in k; official uses pred "
        "zooms (d=1 < 1.5 -> TP; ref zooms would give 2 mm)", [(4, 4, 2)], [(4, 4, 3)], 1.5, ref_zooms=ANISO,
        pred_zooms=ISO, tags=["anisotropic", "zooms_differ"])
    add("zooms_ref_iso_pred_aniso", "ref zooms (1,1,1), pred zooms (0.5,0.5,2): 1 voxel in k; official d=2 mm -> FP",
        [(4, 4, 2)], [(4, 4, 3)], 1.5, ref_zooms=ISO, pred_zooms=ANISO, tags=["anisotropic", "zooms_differ"])
    add("zooms_differ_volume", "ref zooms (1,1,1), pred zooms (0.5,0.5,2): same 2x2x1 blob; volume uses pred zooms",
        box(3, 2, 3, 2, 2, 1), box(3, 2, 3, 2, 2, 1), 1.0, ref_zooms=ISO, pred_zooms=ANISO,
        tags=["anisotropic", "zooms_differ"])
    add("zooms_differ_inplane", "ref zooms (0.5,0.5,2), pred zooms (1,1,1): 2 voxels in i; d = 2 (pred) vs 1 (ref)",
        [(2, 3, 3)], [(4, 3, 3)], 1.5, ref_zooms=ANISO, pred_zooms=ISO, tags=["anisotropic", "zooms_differ"])
    # connectivity
    add("corner_c26", "notes 10.9: ref corner contact (2,2,2)+(3,3,3), 26-conn -> one ref, TP at 0.866",
        [(2, 2, 2), (3, 3, 3)], [(2, 2, 2)], 1.0, connectivity=3, tags=["notes10.9", "connectivity"])
    add("corner_c6", "notes 10.9: same as corner_c26 with 6-connectivity -> two refs",
        [(2, 2, 2), (3, 3, 3)], [(2, 2, 2)], 1.0, connectivity=1, tags=["notes10.9", "connectivity"])
    add("corner_c18", "same corner contact with 18-connectivity -> two refs", [(2, 2, 2), (3, 3, 3)], [(2, 2, 2)],
        1.0, connectivity=2, tags=["connectivity"])
    add("edge_c18", "ref edge contact (2,2,2)+(3,3,2), 18-conn -> one ref at 0.707", [(2, 2, 2), (3, 3, 2)],
        [(2, 2, 2)], 1.0, connectivity=2, tags=["connectivity"])
    add("edge_c6", "ref edge contact (2,2,2)+(3,3,2), 6-conn -> two refs", [(2, 2, 2), (3, 3, 2)],
        [(2, 2, 2)], 1.0, connectivity=1, tags=["connectivity"])
    add("pred_corner_c26", "prediction corner contact (2,2,2)+(3,3,3), 26-conn -> one pred at 0.866 (TP)",
        [(2, 2, 2)], [(2, 2, 2), (3, 3, 3)], 1.0, connectivity=3, tags=["connectivity"])
    add("pred_corner_c6", "prediction corner contact, 6-conn -> two preds, 1 TP + 1 FP", [(2, 2, 2)],
        [(2, 2, 2), (3, 3, 3)], 1.0, connectivity=1, tags=["connectivity"])
    # threshold 0.5 and soft volume
    add("thr_0p5_0p49", "notes 10.10: pred 0.5 at the ref, 0.49 elsewhere -> one component, vol diff 0.5",
        [(2, 2, 2)], [(2, 2, 2, 0.5), (7, 2, 2, 0.49)], 2.0, tags=["notes10.10", "threshold_0.5"])
    add("thr_0p49_splits", "0.49 voxel splits a line into two components 1 mm each side of the ref -> tie",
        [(2, 2, 3)], [(2, 2, 2, 0.75), (2, 2, 3, 0.49), (2, 2, 4, 0.75)], 1.5, tags=["threshold_0.5", "tie"])
    add("thr_0p5_joins", "same line with 0.5 in the middle -> one component on the ref",
        [(2, 2, 3)], [(2, 2, 2, 0.75), (2, 2, 3, 0.5), (2, 2, 4, 0.75)], 1.5, tags=["threshold_0.5"])
    add("soft_volume", "2x2x1 blob, soft values 0.5/0.625/0.75/1 -> soft volume", box(3, 2, 3, 2, 2, 1),
        [(3, 2, 3, 0.5), (3, 3, 3, 0.625), (4, 2, 3, 0.75), (4, 3, 3, 1.0)], 1.0, tags=["soft"])
    # dice quirks and multi-voxel blobs
    add("tp_no_overlap", "notes E13: distance TP with no overlap -> dice 0", [(2, 2, 2)], [(2, 2, 3)], 1.5,
        tags=["notesE13"])
    add("l_shape", "L-shaped ref (CoM off-voxel) vs shifted 2x1x1 prediction", [(2, 2, 2), (3, 2, 2), (2, 3, 2)],
        [(3, 3, 2), (3, 3, 3)], 1.5)
    add("split_pred", "ref 3x1x1, prediction split in two parts on it -> 1 TP + 1 FP, dice over both",
        box(3, 2, 2, 3, 1, 1), [(2, 2, 2), (5, 2, 2), (6, 2, 2)], 3.0, tags=["contested"])
    add("partial_overlap", "2x2x2 ref, 2x2x2 prediction shifted by 1 voxel", box(3, 2, 3, 2, 2, 2),
        box(4, 2, 3, 2, 2, 2), 2.0)
    add("crowded_grid", "6 refs on a grid, 7 predictions with offsets, T=3.5",
        [(1, 1, 1), (4, 1, 1), (7, 1, 1), (1, 4, 5), (4, 4, 5), (7, 4, 5)],
        [(2, 1, 1), (3, 1, 2), (7, 2, 1), (9, 1, 1), (1, 4, 6), (5, 4, 5), (7, 5, 7)], 3.5,
        tags=["crowded", "contested"])
    add("crowded_big_T", "T = 5 mm over a crowded scene: every prediction reaches several refs",
        [(1, 1, 1), (4, 1, 1), (7, 1, 1), (4, 4, 4)], [(2, 2, 2), (5, 2, 2), (8, 2, 2), (4, 4, 6), (6, 4, 4)], 5.0,
        tags=["crowded", "contested"])
    return P


def _hand_lacunes():
    S = (12, 10, 8)
    t = "lacunes"
    P = []

    def add(name, desc, ref, pred, T, **kw):
        P.append(_pair("lac_h%02d_%s" % (len(P) + 1, name), t, desc, kw.pop("shape", S), ref, pred, T, **kw))

    R = box(2, 2, 2, 2, 2, 2)  # CoM (2.5, 2.5, 2.5)
    add("d_eq_T", "2x2x2 lacune, prediction shifted 2 voxels in k, T = 2 -> FP", R, box(2, 2, 4, 2, 2, 2), 2.0,
        tags=["exact_threshold"])
    add("d_below_T_no_overlap", "same shift, T = 2.5 -> TP with dice 0", R, box(2, 2, 4, 2, 2, 2), 2.5,
        tags=["notesE13"])
    add("tie", "3x3x2 lacune, two 1x1x2 predictions symmetric at 2 mm", box(4, 4, 2, 3, 3, 2),
        [(3, 5, 2), (3, 5, 3), (7, 5, 2), (7, 5, 3)], 3.0, tags=["tie"])
    add("no_reassign", "notes 10.3 for lacunes: loser not reassigned to a free ref", box(1, 2, 2, 2, 2, 2) +
        box(8, 2, 2, 2, 2, 2), box(1, 2, 2, 2, 2, 2) + box(4, 2, 2, 2, 2, 2), 5.0,
        tags=["notes10.3", "no_reassignment", "contested"])
    add("equidist_lowest_label", "prediction equidistant from two lacunes goes to ref 1",
        box(1, 2, 2, 2, 2, 2) + box(7, 2, 2, 2, 2, 2), box(4, 2, 2, 2, 2, 2), 4.0, tags=["lowest_label"])
    add("both_empty", "both empty", [], [], 3.0, tags=["both_empty"])
    add("ref_empty", "ref empty, two predictions", [], box(2, 2, 2, 2, 2, 2) + box(7, 6, 4, 2, 2, 1), 3.0,
        tags=["ref_empty"])
    add("pred_empty", "prediction empty, two lacunes", R + box(7, 6, 4, 2, 2, 1), [], 3.0, tags=["pred_empty"])
    add("zooms_ref_aniso_pred_iso", "ref zooms (0.5,0.5,2), pred zooms (1,1,1): shift 1 voxel in k, T=1.5 -> TP",
        R, box(2, 2, 3, 2, 2, 2), 1.5, ref_zooms=ANISO, pred_zooms=ISO, tags=["anisotropic", "zooms_differ"])
    add("zooms_ref_iso_pred_aniso", "ref zooms (1,1,1), pred zooms (0.5,0.5,2): shift 1 voxel in k, T=1.5 -> FP",
        R, box(2, 2, 3, 2, 2, 2), 1.5, ref_zooms=ISO, pred_zooms=ANISO, tags=["anisotropic", "zooms_differ"])
    add("aniso_exact_T", "zooms (0.5,0.5,2): shift 2 voxels in i = 1 mm, T = 1 -> FP", R, box(4, 2, 2, 2, 2, 2), 1.0,
        ref_zooms=ANISO, tags=["anisotropic", "exact_threshold"])
    add("corner_c26", "two 2x2x2 lacunes touching at a corner, 26-conn -> one ref", R + box(4, 4, 4, 2, 2, 2),
        R, 2.0, connectivity=3, tags=["connectivity"])
    add("corner_c6", "same corner contact, 6-conn -> two refs", R + box(4, 4, 4, 2, 2, 2), R, 2.0, connectivity=1,
        tags=["connectivity"])
    add("thr_0p5_0p49", "2x2x2 prediction with values 1/0.5/0.49 -> 0.49 voxels dropped, soft volume",
        R, [(2, 2, 2, 1.0), (2, 2, 3, 0.5), (2, 3, 2, 0.49), (2, 3, 3, 0.5), (3, 2, 2, 1.0), (3, 2, 3, 0.49),
            (3, 3, 2, 0.75), (3, 3, 3, 1.0)], 2.0, tags=["threshold_0.5", "soft"])
    add("thr_0p49_plane", "a 0.49 plane splits a 2x2x4 prediction into two 2x2x1 parts around the lacune -> tie",
        box(2, 2, 2, 2, 2, 2), [(a, b, c, 0.49 if c in (2, 3) else 1.0) for (a, b, c) in box(2, 2, 1, 2, 2, 4)], 2.0,
        tags=["threshold_0.5", "tie"])
    add("crowded", "4 lacunes, 6 predictions (splits and misses), T = 3",
        box(1, 1, 1, 2, 2, 2) + box(6, 1, 1, 3, 2, 2) + box(1, 6, 4, 2, 3, 2) + box(8, 6, 5, 2, 2, 2),
        box(1, 1, 2, 2, 2, 1) + [(6, 1, 1), (6, 2, 1)] + [(8, 1, 2), (8, 2, 2)] + box(2, 7, 4, 2, 2, 2) +
        box(10, 8, 5, 1, 1, 2) + [(6, 8, 0)], 3.0, tags=["crowded", "contested"])
    add("partial_overlap_aniso", "3x3x2 lacune vs 3x3x2 prediction shifted 1 voxel in i, zooms (0.5,0.5,2)",
        box(4, 4, 3, 3, 3, 2), box(5, 4, 3, 3, 3, 2), 1.0, ref_zooms=ANISO)
    return P


def _hand_epvs():
    S = (10, 8, 8)
    t = "epvs"
    P = []

    def add(name, desc, ref, pred, T, **kw):
        P.append(_pair("epvs_h%02d_%s" % (len(P) + 1, name), t, desc, kw.pop("shape", S), ref, pred, T, **kw))

    add("no_overlap_keyerror", "notes P1: one ref, one prediction, no overlap (official KeyError 'iou')",
        [(2, 2, 2)], [(6, 2, 2)], 0.1, tags=["notesP1", "keyerror_expected"])
    add("no_overlap_two_preds", "two non-overlapping predictions, ref not empty (complex-group KeyError path)",
        [(2, 2, 2)], [(6, 2, 2), (6, 5, 5)], 0.1, tags=["keyerror_expected"])
    add("low_iou_hides_fn", "notes P2: IoU exactly 0.1 on a 10-voxel ref -> FP but the ref is not counted FN",
        [(2, 2, 2)] + box(6, 1, 4, 2, 5, 1), [(2, 2, 2), (6, 1, 4)], 0.1,
        tags=["notesP2", "exact_threshold", "low_iou_hides_fn"])
    add("iou_eq_T", "IoU 1/2 == T 0.5 -> FP (strict >), ref not counted FN", [(2, 2, 2), (2, 2, 3)], [(2, 2, 2)],
        0.5, tags=["exact_threshold", "low_iou_hides_fn"])
    add("iou_above_T", "IoU 1/2 > T 0.45 -> TP", [(2, 2, 2), (2, 2, 3)], [(2, 2, 2)], 0.45, tags=["exact_threshold"])
    add("iou_eq_0p4", "IoU 2/5 == T 0.4 -> FP", line((4, 2, 2), 2, 4), line((4, 2, 1), 2, 3), 0.4,
        tags=["exact_threshold", "low_iou_hides_fn"])
    add("iou_tie", "two predictions with the same IoU 0.2 on one 4-voxel ref -> both TP", line((4, 2, 2), 2, 4),
        line((4, 2, 1), 2, 2) + line((4, 2, 5), 2, 2), 0.1, tags=["tie"])
    add("iou_contested", "IoU 0.4 and 0.2 on one ref -> 1 TP + 1 FP", line((4, 2, 2), 2, 4),
        line((4, 2, 1), 2, 3) + line((4, 2, 5), 2, 2), 0.1, tags=["contested"])
    add("equal_overlap_two_refs", "notes P5: one prediction overlaps two refs by 2 voxels each -> ref 1",
        [(4, 2, 2), (4, 2, 3), (4, 2, 5), (4, 2, 6)], line((4, 2, 2), 2, 5), 0.1, tags=["notesP5", "lowest_label"])
    add("unequal_overlap_two_refs", "one prediction overlaps ref 1 by 1 and ref 2 by 3 voxels -> ref 2",
        [(4, 2, 1), (4, 2, 2)] + line((4, 2, 4), 2, 3), line((4, 2, 2), 2, 5), 0.1)
    add("both_empty", "both empty", [], [], 0.2, tags=["both_empty"])
    add("ref_empty", "ref empty, two predictions", [], line((2, 2, 2), 2, 3) + [(7, 5, 5)], 0.2, tags=["ref_empty"])
    add("pred_empty", "prediction empty, two refs", line((2, 2, 2), 2, 3) + [(7, 5, 5)], [], 0.2,
        tags=["pred_empty"])
    add("thr_0p5_0p49", "ref 2 voxels, prediction 0.5 + 0.49 -> 1 voxel kept, IoU 0.5 > 0.3, vol diff 1.5",
        [(2, 2, 2), (2, 2, 3)], [(2, 2, 2, 0.5), (2, 2, 3, 0.49)], 0.3, tags=["threshold_0.5", "soft"])
    add("corner_c26", "ref corner contact (2,2,2)+(3,3,3), 26-conn -> one ref, IoU 0.5 > 0.3",
        [(2, 2, 2), (3, 3, 3)], [(2, 2, 2)], 0.3, connectivity=3, tags=["connectivity"])
    add("corner_c6", "same, 6-conn -> two refs, one missed", [(2, 2, 2), (3, 3, 3)], [(2, 2, 2)], 0.3, connectivity=1,
        tags=["connectivity"])
    add("zooms_differ", "ref zooms (1,1,1), pred zooms (0.5,0.5,2): IoU unchanged, volume uses pred zooms",
        line((3, 3, 2), 2, 4), line((3, 3, 3), 2, 4), 0.3, ref_zooms=ISO, pred_zooms=ANISO,
        tags=["anisotropic", "zooms_differ"])
    add("overlap_plus_far_fp", "one TP plus one prediction with no overlap (row without IoU, no KeyError)",
        line((2, 2, 2), 2, 3), line((2, 2, 2), 2, 3) + [(7, 6, 6)], 0.2)
    add("bridge_two_refs", "one prediction bridges two tubes (3 + 2 voxels) -> larger overlap wins, other ref FN",
        line((3, 1, 3), 1, 3) + line((3, 5, 3), 1, 2), line((3, 1, 3), 1, 7), 0.1)
    add("thr_0p49_split_tie", "0.49 voxel splits a prediction into two 2-voxel parts over one 5-voxel tube -> tie",
        line((5, 2, 1), 2, 5), [(5, 2, 1), (5, 2, 2), (5, 2, 3, 0.49), (5, 2, 4), (5, 2, 5)], 0.1,
        tags=["threshold_0.5", "tie"])
    add("crowded", "6 tubes, 8 predictions (shifts, merges, misses), T = 0.2",
        line((1, 1, 1), 2, 4) + line((1, 4, 1), 0, 3) + line((5, 1, 5), 1, 3) + line((8, 6, 0), 2, 5) +
        [(6, 6, 6), (6, 6, 7)] + line((3, 6, 4), 0, 2),
        line((1, 1, 2), 2, 4) + line((2, 4, 1), 0, 3) + [(5, 1, 5)] + [(5, 3, 5)] + line((8, 6, 1), 2, 2) +
        line((8, 6, 4), 2, 1) + [(6, 6, 7)] + [(0, 7, 7)], 0.2, tags=["crowded", "contested"])
    add("aniso_partial", "zooms (0.5,0.5,2) both, 3-voxel tube vs shifted 3-voxel prediction, IoU 0.5 > 0.25",
        line((4, 2, 2), 2, 3), line((4, 2, 3), 2, 3), 0.25, ref_zooms=ANISO, tags=["anisotropic"])
    return P


# ----------------------------------------------------------------------------------------------------------------
# random cases
# ----------------------------------------------------------------------------------------------------------------
def _soft_values(rng, n):
    """Prediction values: binary or multiples of 1/64 (exact in float32), some below 0.5."""
    if rng.random() < 0.5:
        return [1.0] * n
    return [float(rng.integers(24, 65)) / 64.0 for _ in range(n)]


def _shift_in(vox, shift, shape):
    out = []
    for p in vox:
        q = tuple(int(np.clip(p[a] + shift[a], 0, shape[a] - 1)) for a in range(3))
        out.append(q)
    return out


def _blob_distance(rng, shape, big):
    sizes = [(1, 1, 1), (2, 1, 1), (1, 2, 1), (2, 2, 1), (1, 1, 2), (2, 2, 2)]
    if big:
        sizes = [(2, 2, 1), (2, 2, 2), (3, 2, 2), (3, 3, 2), (2, 3, 1), (3, 3, 1)]
    d = sizes[rng.integers(len(sizes))]
    c = [int(rng.integers(0, shape[a] - d[a] + 1)) for a in range(3)]
    return box(c[0], c[1], c[2], *d)


def _blob_tube(rng, shape):
    axis = int(rng.integers(3))
    length = int(rng.integers(2, 6))
    length = min(length, shape[axis])
    start = [int(rng.integers(0, shape[a])) for a in range(3)]
    start[axis] = int(rng.integers(0, shape[axis] - length + 1))
    vox = line(tuple(start), axis, length)
    if rng.random() < 0.25:  # 2-voxel-thick tube
        other = (axis + 1) % 3
        if start[other] + 1 < shape[other]:
            vox = vox + _shift_in(vox, [1 if a == other else 0 for a in range(3)], shape)
    return vox


def _random_pair(rng, task, idx):
    shape = (16, 16, 8)
    if task == "epvs":
        zooms = ISO if rng.random() < 0.5 else ANISO
    else:
        zooms = ISO if rng.random() < 0.5 else ANISO
    pred_zooms = zooms
    tags = ["random"]
    if rng.random() < 0.15:
        pred_zooms = ANISO if zooms == ISO else ISO
        tags.append("zooms_differ")
    connectivity = 1 if rng.random() < 0.25 else 3
    if task == "epvs":
        T = round(0.1 + 0.05 * int(rng.integers(0, 9)), 2)
        n_ref = int(rng.integers(0, 9))
    else:
        T = 0.5 + 0.25 * int(rng.integers(0, 19))
        n_ref = int(rng.integers(0, 9 if task == "microbleeds" else 6))
    ref, pred = [], []
    n_pred_blobs = 0
    for _ in range(n_ref):
        blob = _blob_tube(rng, shape) if task == "epvs" else _blob_distance(rng, shape, task == "lacunes")
        ref.extend(blob)
        u = rng.random()
        copies = 0 if u < 0.2 else (2 if u > 0.85 else 1)
        for _c in range(copies):
            if n_pred_blobs >= 8:
                break
            if task == "epvs":
                shift = [int(rng.integers(-1, 2)) if rng.random() < 0.4 else 0 for _a in range(3)]
            else:
                shift = [int(rng.integers(-2, 3)) if rng.random() < 0.5 else 0 for _a in range(3)]
            vox = _shift_in(blob, shift, shape)
            if copies == 2 and len(vox) > 1 and rng.random() < 0.5:
                vox = vox[: max(1, len(vox) // 2)]
            vals = _soft_values(rng, len(vox))
            pred.extend([v + (w,) for v, w in zip(vox, vals)])
            n_pred_blobs += 1
    for _ in range(int(rng.integers(0, 4))):  # unrelated false positives
        if n_pred_blobs >= 8:
            break
        blob = _blob_tube(rng, shape) if task == "epvs" else _blob_distance(rng, shape, task == "lacunes")
        vals = _soft_values(rng, len(blob))
        pred.extend([v + (w,) for v, w in zip(blob, vals)])
        n_pred_blobs += 1
    prefix = {"epvs": "epvs", "microbleeds": "mb", "lacunes": "lac"}[task]
    desc = "random: %d ref blobs, %d prediction blobs, zooms ref %s pred %s, conn %d, T %g" % (
        n_ref, n_pred_blobs, tuple(zooms), tuple(pred_zooms), NEIGHBOURS[connectivity], T)
    return _pair("%s_r%03d" % (prefix, idx), task, desc, shape, ref, pred, T, ref_zooms=zooms,
                 pred_zooms=pred_zooms, connectivity=connectivity, tags=tags)


N_RANDOM = {"microbleeds": 26, "lacunes": 14, "epvs": 18}
SEEDS = {"microbleeds": 20210, "lacunes": 20211, "epvs": 20212}


def make_pairs():
    """All fixture inputs (deterministic)."""
    pairs = _hand_microbleeds() + _hand_lacunes() + _hand_epvs()
    for task in ("microbleeds", "lacunes", "epvs"):
        rng = np.random.default_rng(SEEDS[task])
        for i in range(N_RANDOM[task]):
            pairs.append(_random_pair(rng, task, i + 1))
    ids = [p["id"] for p in pairs]
    assert len(ids) == len(set(ids))
    return pairs


# ----------------------------------------------------------------------------------------------------------------
# official outputs
# ----------------------------------------------------------------------------------------------------------------
_OFFICIAL_CACHE = {}


def _official_class(official_path):
    path = os.path.abspath(official_path)
    if path not in _OFFICIAL_CACHE:
        if path not in sys.path:
            sys.path.insert(0, path)
        mod = importlib.import_module("evaluation_comparison.pairwise_measures")
        assert os.path.abspath(mod.__file__).startswith(path), mod.__file__
        _OFFICIAL_CACHE[path] = mod.PairwiseMeasures
    return _OFFICIAL_CACHE[path]


def _num(x):
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def official_outputs(pair, official_path):
    """Run the official PairwiseMeasures on one pair. Returns a dict; {'exception': name, ...} if it raised."""
    PM = _official_class(official_path)
    ref, pred = arrays(pair)
    task = pair["task"]
    measures = DRIVER_MEASURES[task]
    pixdim = tuple(np.float32(z) for z in pair["pred_zooms"])  # as nibabel's get_zooms() of the prediction
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            pe = PM(ref_img=ref, seg_img=pred, analysis=task, measures=measures,
                    connectivity=pair["connectivity"], pixdim=pixdim, empty=True,
                    threshold=pair["threshold"], thresh_assign=pair["thresh_assign"])
            values = {key: pe.m_dict[key][0]() for key in measures}  # driver order
            numb_fn_demographic = pe.numb_fn()
    except Exception as exc:  # noqa: BLE001 - we record whatever the official code raises
        return {"exception": type(exc).__name__, "message": str(exc)}
    df = pe.df_classif
    score_col = "iou" if task == "epvs" else "distance"
    rows = []
    for _, r in df.iterrows():
        row = {"seg": int(r["seg"]), "ref": int(r["ref"])}
        row[score_col] = _num(r[score_col]) if score_col in df.columns else None
        row["category"] = str(r["category"])
        rows.append(row)
    n_ref = int(np.max(pe.ref_cc))
    n_pred = int(np.max(pe.seg_cc))
    tp = sum(1 for r in rows if r["category"] == "TP")
    fp = sum(1 for r in rows if r["category"] == "FP")
    in_table = {r["ref"] for r in rows}
    fn_official = sum(1 for lab in range(1, n_ref + 1) if lab not in in_table)
    tp_refs = [r["ref"] for r in rows if r["category"] == "TP"]
    ties = len(tp_refs) != len(set(tp_refs))
    warnings = sorted({ln.strip() for ln in buf.getvalue().splitlines() if "WARNING" in ln})
    return {
        "table": rows,
        "n_ref": n_ref,
        "n_pred": n_pred,
        "TP": tp,
        "FP": fp,
        "FN_official": fn_official,
        "F1": _num(values["f1_score"]),
        "abs_count_diff": _num(values["absolute_count_difference"]) if "absolute_count_difference" in values
        else None,
        "mean_dice": _num(values["mean_diceover"]),
        "abs_vol_diff": _num(values["absolute_volume_difference"]),
        "ties": ties,
        "numb_fn_demographic": int(numb_fn_demographic),
        "warnings": warnings,
    }


# ----------------------------------------------------------------------------------------------------------------
# auxiliary facts computed independently (not official output)
# ----------------------------------------------------------------------------------------------------------------
def aux_facts(pair, off):
    ref, pred = arrays(pair)
    st = ndimage.generate_binary_structure(3, pair["connectivity"])
    rl, nr = ndimage.label(ref > 0, st)
    pl, npred = ndimage.label(pred >= pair["threshold"], st)
    z = np.asarray(pair["pred_zooms"], dtype=np.float64)
    com_r = [list(np.asarray(ndimage.center_of_mass(rl == i)) * z) for i in range(1, nr + 1)]
    com_p = [list(np.asarray(ndimage.center_of_mass(pl == i)) * z) for i in range(1, npred + 1)]
    aux = {"com_ref_mm": [[float(v) for v in c] for c in com_r],
           "com_pred_mm": [[float(v) for v in c] for c in com_p]}
    T = pair["thresh_assign"]
    flags = []
    if nr == 0 and npred == 0:
        flags.append("both_empty")
    elif nr == 0:
        flags.append("ref_empty")
    elif npred == 0:
        flags.append("pred_empty")
    if pair["task"] == "epvs":
        ov = np.zeros((npred, nr), dtype=int)
        for s in range(1, npred + 1):
            lab, cnt = np.unique(rl[pl == s], return_counts=True)
            for a, c in zip(lab, cnt):
                if a > 0:
                    ov[s - 1, a - 1] = c
        aux["overlap_counts"] = ov.tolist()
        sizes_p = [int((pl == s).sum()) for s in range(1, npred + 1)]
        sizes_r = [int((rl == r).sum()) for r in range(1, nr + 1)]
        aux["iou_matrix"] = [[ov[s, r] / (sizes_p[s] + sizes_r[r] - ov[s, r]) for r in range(nr)]
                             for s in range(npred)]
        if any(v == T for row in aux["iou_matrix"] for v in row):
            flags.append("iou_equals_T")
    else:
        if nr and npred:
            d = np.sqrt(((np.asarray(com_p)[:, None, :] - np.asarray(com_r)[None, :, :]) ** 2).sum(-1))
        else:
            d = np.zeros((npred, nr))
        aux["distance_matrix_mm"] = d.tolist()
        if np.any(d == T):
            flags.append("distance_equals_T")
        for s in range(npred):
            valid = d[s][d[s] < T]
            if valid.size and np.sum(d[s] == valid.min()) > 1:
                flags.append("equidistant_refs_lowest_label")
                break
    if off is not None and "exception" not in off:
        rows = off["table"]
        tp_refs = {r["ref"] for r in rows if r["category"] == "TP"}
        if off["ties"]:
            flags.append("tie_multiple_tp")
        if off["n_ref"] - off["TP"] < 0:
            flags.append("negative_nominal_fn")
        true_fn = off["n_ref"] - len(tp_refs)
        if off["FN_official"] != true_fn:
            flags.append("fn_hidden_by_fp_row")  # a ref named only by FP rows is not counted as FN
        if off["numb_fn_demographic"] != true_fn:
            flags.append("numb_fn_demographic_wrong")
        if off["F1"] is None:
            flags.append("f1_nan")
        if pair["task"] != "epvs" and "distance_matrix_mm" in aux:
            d = np.asarray(aux["distance_matrix_mm"])
            for r in rows:
                if r["category"] == "FP":
                    free = [j for j in range(off["n_ref"]) if (j + 1) not in tp_refs and d[r["seg"] - 1, j] < T]
                    if free:
                        flags.append("no_reassignment")
                        break
        # TP reference whose matched predictions have no voxel overlap with it (dice 0 while counted)
        for lab in sorted(tp_refs):
            if lab <= 0:
                continue
            segs = [r["seg"] for r in rows if r["ref"] == lab]
            if not np.any(np.isin(pl[rl == lab], segs)):
                flags.append("tp_without_overlap")
                break
    aux["flags"] = flags
    return aux


# ----------------------------------------------------------------------------------------------------------------
# check modes
# ----------------------------------------------------------------------------------------------------------------
COMPARED = ("n_ref", "n_pred", "TP", "FP", "FN_official", "F1", "abs_count_diff", "mean_dice", "abs_vol_diff",
            "ties", "table")


def _same(a, b, tol=1e-9):
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is None and b is None
        return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], tol) for k in a)
    return a == b


def check_reproduce(fixtures, official_path):
    """Recompute the official outputs and compare them with the stored ones. Returns the list of differences."""
    diffs = []
    for entry in fixtures["pairs"]:
        off = official_outputs(entry, official_path)
        for key in COMPARED:
            if not _same(off.get(key), entry["official"].get(key)):
                diffs.append("%s %s: stored %r, now %r" % (entry["id"], key, entry["official"].get(key), off.get(key)))
    for entry in fixtures["skipped"]:
        off = official_outputs(entry, official_path)
        if off.get("exception") != entry["exception"]:
            diffs.append("%s: stored exception %s, now %r" % (entry["id"], entry["exception"], off.get("exception")))
    return diffs


def check_with_function(fixtures, spec):
    """Placeholder for the project's comparison: ``spec`` = 'package.module:function'.

    The function gets one fixture pair (dict, inputs only) and returns a dict with any of the keys
    TP, FP, FN, F1, mean_dice, abs_vol_diff, abs_count_diff. Differences with the official figures are listed;
    whether a difference is expected (the project may deliberately fix an official bug) is left to the caller.
    """
    mod_name, func_name = spec.split(":")
    func = getattr(importlib.import_module(mod_name), func_name)
    keymap = {"TP": "TP", "FP": "FP", "FN": "FN_official", "F1": "F1", "mean_dice": "mean_dice",
              "abs_vol_diff": "abs_vol_diff", "abs_count_diff": "abs_count_diff"}
    diffs = []
    for entry in fixtures["pairs"]:
        inputs = {k: v for k, v in entry.items() if k not in ("official", "aux", "flags")}
        got = func(inputs) or {}
        for k, ok in keymap.items():
            if k in got and not _same(None if got[k] is None else float(got[k]), _num(entry["official"][ok]), 1e-6):
                flags = entry.get("flags", entry.get("aux", {}).get("flags"))
                diffs.append("%s %s: official %r, project %r %s" % (entry["id"], k, entry["official"][ok], got[k],
                                                                     flags))
    return diffs


# ----------------------------------------------------------------------------------------------------------------
def _versions(official_path):
    import scipy
    vers = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__}
    try:
        import pandas
        vers["pandas"] = pandas.__version__
    except ImportError:  # pragma: no cover
        vers["pandas"] = None
    pm = os.path.join(official_path, "evaluation_comparison", "pairwise_measures.py")
    with open(pm, "rb") as fh:
        vers["official_pairwise_measures_sha256"] = hashlib.sha256(fh.read()).hexdigest()
    return vers


def build(official_path):
    pairs, skipped = [], []
    for p in make_pairs():
        off = official_outputs(p, official_path)
        if "exception" in off:
            q = dict(p)
            q["exception"] = off["exception"]
            q["exception_message"] = off["message"]
            q["aux"] = aux_facts(p, None)
            skipped.append(q)
            continue
        q = dict(p)
        q["official"] = off
        q["aux"] = aux_facts(p, off)
        pairs.append(q)
    counts = {t: sum(1 for q in pairs if q["task"] == t) for t in TASKS}
    meta = {
        "source": "github WhereIsValdo/valdo-eval-2021 HEAD ee87c04, evaluation_comparison/pairwise_measures.py "
                  "(imported at run time, not copied)",
        "generator": "compare_valdo_official.py",
        "call": "PairwiseMeasures(ref_img=ref, seg_img=pred, analysis=task, measures=<driver list>, "
                "connectivity=c, pixdim=float32 pred_zooms, empty=True, threshold=0.5, thresh_assign=T); "
                "measures evaluated in driver order",
        "array_dtype": "float32",
        "versions": _versions(official_path),
        "counts": counts,
        "n_skipped": len(skipped),
        "fields": {
            "table": "official match table rows in returned order: seg label, ref label (-1 none [distance task or "
                     "empty ref], 0 none [epvs no overlap]), distance (mm, 1000 = none) or iou (null = no overlap), "
                     "category",
            "FN_official": "ref components whose label is absent from the table's ref column (used by its F1)",
            "numb_fn_demographic": "official numb_fn() = n_ref - len(unique(table.ref)) (demographic tasks only)",
            "abs_count_diff": "|n_ref - n_pred|; null for lacunes (not reported)",
            "ties": "two or more TP rows share one reference",
            "aux": "computed by this script, not official: CoMs (pred zooms), distance/overlap matrices, flags",
        },
    }
    return {"meta": meta, "pairs": pairs, "skipped": skipped}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", help="folder of an export of WhereIsValdo/valdo-eval-2021")
    ap.add_argument("--out", required=True, help="fixtures JSON file (written, or read with --check)")
    ap.add_argument("--check", nargs="?", const="", default=None, metavar="MODULE:FUNCTION",
                    help="without value: recompute with --official and compare with --out; "
                         "with MODULE:FUNCTION: compare that function's figures with the stored official ones")
    args = ap.parse_args(argv)
    if args.check is not None:
        with open(args.out) as fh:
            fixtures = json.load(fh)
        if args.check:
            diffs = check_with_function(fixtures, args.check)
        else:
            if not args.official:
                ap.error("--check without MODULE:FUNCTION needs --official")
            diffs = check_reproduce(fixtures, args.official)
            print("versions now:", _versions(args.official))
            print("versions stored:", fixtures["meta"]["versions"])
        for d in diffs:
            print(d)
        print("%d difference(s) over %d pairs + %d skipped" % (len(diffs), len(fixtures["pairs"]),
                                                              len(fixtures["skipped"])))
        return 1 if diffs else 0
    if not args.official:
        ap.error("--official is required")
    data = build(args.official)
    with open(args.out, "w") as fh:
        json.dump(data, fh, indent=1, allow_nan=False)
        fh.write("\n")
    print("pairs per task:", data["meta"]["counts"], "skipped:", [(q["id"], q["exception"]) for q in data["skipped"]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
