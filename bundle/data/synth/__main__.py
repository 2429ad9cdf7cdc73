# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Command line: ``python -m bundle.data.synth --task {cmb,epvs,epvs_lacune,swi,structural} --n N --out DIR --seed S
[--montage]`` (``swi``: the physics SWI simulator, ``structural``: the T1/T2/FLAIR simulator; ``--preset`` one of
their settings; docs/data.md)."""

from __future__ import annotations

import argparse
import sys

from .montage import montage
from .summary import format_summary, summarise
from .tasks import TASKS

__all__ = ["main"]


def _spacing(text: str) -> tuple[float, float, float]:
    parts = [float(p) for p in text.split(",")]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"spacing must be one or three positive numbers in mm, got {text!r}")
    return tuple(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bundle.data.synth", description=__doc__)
    parser.add_argument("--task", choices=sorted(TASKS) + ["structural", "swi"], required=True)
    parser.add_argument("--preset", default="train", help="tasks swi, structural: the setting (docs/data.md)")
    parser.add_argument("--n", type=int, required=True, help="number of subjects")
    parser.add_argument("--out", required=True, help="output folder (datalist.json and sub-XXXX/ folders)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spacing", type=_spacing, default=(1.0, 1.0, 1.0), help="mm, e.g. 1 or 0.5,0.5,2")
    parser.add_argument("--modalities", default=None, help="comma-separated subset/order of t1,t2,flair,swi")
    parser.add_argument("--montage", action="store_true", help="also write DIR/montage.png")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace a cohort made with other settings in --out")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    mods = tuple(args.modalities.split(",")) if args.modalities else None
    if args.task in ("swi", "structural"):
        from .cohort import split_names

        names = split_names(args.n)
        splits = {s: (args.preset, names.count(s)) for s in ("training", "validation", "testing") if names.count(s)}
        try:
            if args.task == "swi":
                from .swi_physics import generate_swi_cohort

                datalist = generate_swi_cohort(args.out, splits, args.seed, progress=not args.quiet)
            else:
                from .structural import MODALITIES, generate_structural_cohort

                datalist = generate_structural_cohort(args.out, splits, args.seed, mods or MODALITIES,
                                                      progress=not args.quiet)
        except (FileExistsError, ValueError) as err:
            parser.error(str(err))
        print(format_summary(summarise(datalist)))
        if args.montage:
            print(f"montage: {montage(datalist, datalist.parent / 'montage.png')}")
        return 0
    from .cohort import generate_cohort

    try:
        datalist = generate_cohort(
            args.task,
            args.n,
            args.out,
            args.seed,
            args.spacing,
            mods,
            progress=not args.quiet,
            overwrite=args.overwrite,
        )
    except (FileExistsError, ValueError) as err:
        parser.error(str(err))
    print(format_summary(summarise(datalist)))
    if args.montage:
        print(f"montage: {montage(datalist, datalist.parent / 'montage.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
