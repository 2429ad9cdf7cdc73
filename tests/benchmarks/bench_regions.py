# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Region assignment of simulated objects with known regions (docs/regions.md#atlas-regions).

Each subject's scanner frame is first moved by a random rigid motion (up to 20 degrees and 40 mm), as real
scanners put heads anywhere. The bundle's template is registered to the subject's image inside its brain mask
(:func:`bundle.data.atlas.template_transform`, affine and affine + B-spline) and every object's centre is looked up
(:func:`bundle.data.atlas.regions_at`). Two truths:

- ``atlas`` (the acceptance figure): the atlas's region at the object's true template position (the simulator
  knows the template coordinate of every voxel), so the figure measures the registration and the look-up;
- ``placed``: the region the simulator drew the object in (microbleeds: lobar, deep, infratentorial; EPVS: their
  rating region; lacunes: deep), which also measures how the atlas's borders agree with the simulator's; microbleeds
  placed beside a vein are left out (the simulator moves them to the vein and keeps the region it drew).

Microbleeds come from the physics SWI simulator (SWI registered); EPVS and lacunes from the structural simulator,
the registered contrast cycling over T1, T2 and FLAIR.

The ``train`` presets are the development split (the atlas's juxtacortical depth and the default registration were
chosen on them); every other preset is held out. Writes ``regions.json`` (per preset, class and mode: correct /
total, seconds per registration) and prints the table::

    python tests/benchmarks/bench_regions.py --out /work/bench_regions --n 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from bundle.data import atlas as A
from bundle.data.synth.regrid import rigid
from bundle.data.synth.structural.subject import simulate
from bundle.data.synth.swi_physics import generate_swi_subject
from bundle.data.synth.swi_physics.physics import draw_acquisition
from bundle.data.synth.swi_physics.subject import _scene

STRUCTURAL = ("train", "thick_slices", "other_contrast", "high_load", "severe_atrophy", "low_snr", "oblique")
SWI = ("train", "validation", "thick_slices", "fine_inplane", "dense_veins", "long_te")
EXPECT = {"cmb": {"lobar": "lobar", "deep": "deep", "infratentorial": "infratentorial"},
          "lacune": {"basal_ganglia": "deep", "thalamus": "deep", "centrum_semiovale": "deep"},
          "epvs": {r: r for r in A.EPVS_REGIONS}}  # fmt: skip
MODES = {"affine": False, "deformable": True}
RUN = ["affine"]  # the modes measured (--modes)


def motion(seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 77])
    return rigid(rng.uniform(-20, 20, 3), rng.uniform(-40, 40, 3), [0.0, 0.0, 0.0])


def truth_mni(mni_map: np.ndarray, affine: np.ndarray, world: np.ndarray) -> np.ndarray:
    """The simulator's template coordinates (3, I, J, K on ``affine``'s grid) at world points (N, 3)."""
    vox = np.rint((world - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T).astype(int)
    vox = np.clip(vox, 0, np.array(mni_map.shape[1:]) - 1)
    return mni_map[:, vox[:, 0], vox[:, 1], vox[:, 2]].T


def score(objects: list[dict], image, affine, mask, move) -> dict:
    """Per mode: per class [correct, total] against the atlas at the object's true template position (``atlas``)
    and against the region the simulator placed it in (``placed``), the confusions and the seconds."""
    out = {}
    identity = {"affine": np.eye(4).tolist()}
    for mode in RUN:
        start = time.perf_counter()
        tmap = A.template_transform(image, move @ affine, mask, deformable=MODES[mode])
        per: dict = {"seconds": round(time.perf_counter() - start, 2), "atlas": {}, "placed": {}, "confusion": {}}
        for o in objects:
            if o["class"] not in EXPECT:
                continue
            key = "epvs_region" if o["class"] == "epvs" else "group"
            p = move[:3, :3] @ np.asarray(o["centre_mm"], float) + move[:3, 3]
            got = A.regions_at(p[None], tmap)[0][key]
            want = A.regions_at(np.asarray(o["mni"], float)[None], identity)[0][key]
            c = per["atlas"].setdefault(o["class"], [0, 0])
            c[0], c[1] = c[0] + int(got == want), c[1] + 1
            k = f"{o['class']}:{want}->{got}"
            per["confusion"][k] = per["confusion"].get(k, 0) + 1
            placed = EXPECT[o["class"]].get(o["region"])
            if placed is not None and not o.get("near_vein"):  # a microbleed beside a vein is not where it was drawn
                c = per["placed"].setdefault(o["class"], [0, 0])
                c[0], c[1] = c[0] + int(got == placed), c[1] + 1
        out[mode] = per
    return out


def structural_rows(n: int, seed: int) -> list[dict]:
    rows, k = [], 0
    for preset in STRUCTURAL:
        for i in range(n):
            s = simulate(i, seed + STRUCTURAL.index(preset), preset)
            anat, mod = s["anat"], ("t1", "t2", "flair")[k % 3]
            k += 1
            objects = [{**o, "mni": truth_mni(anat.mni, anat.affine, np.asarray([o["centre_mm"]], float))[0]}
                       for o in s["records"]]  # fmt: skip
            res = score(objects, s["images"][mod], anat.affine, anat.brain, motion(seed + k))
            rows.append({"simulator": "structural", "preset": preset, "subject": i, "image": mod, **res})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def swi_rows(n: int, seed: int, out: Path) -> list[dict]:
    rows, k = [], 0
    for preset in SWI:
        for i in range(n):
            folder, cohort_seed = out / "swi" / preset, seed + SWI.index(preset)
            e = generate_swi_subject(i, folder, cohort_seed, preset)
            rng = np.random.default_rng([cohort_seed, i, 7])  # the subject's scene again, for its template coordinates
            scene = _scene(draw_acquisition(preset, rng), rng)
            img = nib.load(folder / e["image"][0])
            mask = np.asarray(nib.load(folder / e["mask"]).dataobj)
            objects = json.loads((folder / e["lesions"]).read_text())
            for o in objects:
                head = scene["frames"].world_to_head(np.asarray(o["centre_mm"], float)[None])
                o["mni"] = truth_mni(scene["anat"].mni, scene["anat"].affine, head)[0]
            k += 1
            res = score(objects, img.get_fdata(dtype=np.float32), img.affine, mask, motion(seed + 500 + k))
            rows.append({"simulator": "swi_physics", "preset": preset, "subject": i, "image": "swi", **res})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict], truth: str = "atlas") -> list[str]:
    lines = [f"truth: {truth}", "| simulator | setting | mode | cmb | epvs | lacune | s per registration |",
             "|---|---|---|---|---|---|---|"]
    groups = [(s, p) for s, p in dict.fromkeys((r["simulator"], r["preset"]) for r in rows)]
    for split in ("development", "held out"):
        for sim in ("swi_physics", "structural"):
            chosen = [g for g in groups if g[0] == sim and (g[1] == "train") == (split == "development")]
            for mode in RUN:
                mine = [r for r in rows if (r["simulator"], r["preset"]) in chosen]
                lines.append(_line(sim, split, mode, mine, truth))
            for s, p in chosen if split == "held out" else []:
                lines.append(_line(s, p, RUN[0], [r for r in rows if (r["simulator"], r["preset"]) == (s, p)], truth))
    return lines


def _line(sim: str, name: str, mode: str, rows: list[dict], truth: str = "atlas") -> str:
    cells = []
    for c in ("cmb", "epvs", "lacune"):
        ok = sum(r[mode][truth].get(c, [0, 0])[0] for r in rows)
        tot = sum(r[mode][truth].get(c, [0, 0])[1] for r in rows)
        cells.append(f"{100 * ok / tot:.1f} % ({ok}/{tot})" if tot else "")
    sec = np.mean([r[mode]["seconds"] for r in rows]) if rows else float("nan")
    return f"| {sim} | {name} | {mode} | {' | '.join(cells)} | {sec:.1f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=2, help="subjects per setting")
    ap.add_argument("--seed", type=int, default=1200)
    ap.add_argument("--only", choices=("structural", "swi"), default=None)
    ap.add_argument("--modes", nargs="+", choices=tuple(MODES), default=["affine"])
    args = ap.parse_args()
    RUN[:] = args.modes
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    if args.only != "swi":
        rows += structural_rows(args.n, args.seed)
    if args.only != "structural":
        rows += swi_rows(args.n, args.seed, out)
    (out / "regions.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(table(rows) + table(rows, "placed")))


if __name__ == "__main__":
    main()
