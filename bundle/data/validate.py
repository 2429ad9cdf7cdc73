# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Check a whole datalist before training or inference, reporting every bad subject at once.

    python -m bundle.data.validate DATALIST [--split training] [--modalities t1,t2,flair] [--classes epvs,lacune]

Each subject goes through the same checks as training (:class:`bundle.data.LoadSubjectd`). Exit status 0 when all
subjects are valid, 1 otherwise; one line per problem, naming the subject and the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .datalist import SPLITS, DatalistError, expected_channels, prepare_entry, read_datalist
from .vocabulary import CLASSES

__all__ = ["validate_datalist", "main"]


def validate_datalist(
    path: str | Path,
    splits: tuple[str, ...] = SPLITS,
    modalities: list[str] | None = None,
    classes: tuple[str, ...] = CLASSES,
    progress: bool = False,
) -> tuple[int, list[str]]:
    """Load every entry of ``splits``; return (number of valid subjects, problem messages).

    Raises:
        FileNotFoundError, DatalistError: the datalist itself is missing or unreadable.
    """
    path = Path(path)
    data = read_datalist(path)
    problems: list[str] = []
    try:
        n_channels = expected_channels(data, path, modalities)
    except DatalistError as err:
        problems.append(str(err))
        n_channels = len(modalities) if modalities else None
    from .subject import LoadSubjectd  # MONAI: deferred, so that `--help` is quick

    loader = LoadSubjectd(classes=classes)
    entries = [e for s in splits for e in data.get(s, [])]
    if progress:
        from tqdm import tqdm

        entries = tqdm(entries, desc="validating", unit="subject")
    ok = 0
    problems += _duplicates(data, splits, path)
    for raw in entries:
        try:
            loader(prepare_entry(raw, path.parent, n_channels, datalist=path))
            ok += 1
        except (FileNotFoundError, DatalistError) as err:
            problems.append(str(err))
    return ok, problems


def _duplicates(data: dict, splits: Sequence[str], path: Path) -> list[str]:
    """One message per subject id listed more than once in ``splits`` (within a split or across them)."""
    where: dict[str, list[str]] = {}
    for s in splits:
        entries = data.get(s, [])
        for e in entries if isinstance(entries, list) else []:
            if isinstance(e, dict) and isinstance(e.get("subject"), str):
                where.setdefault(e["subject"], []).append(s)
    return [f"{subj}: the subject id appears more than once in {path} ({', '.join(sp)})"
            for subj, sp in where.items() if len(sp) > 1]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bundle.data.validate", description=__doc__.split("\n\n")[0])
    parser.add_argument("datalist")
    parser.add_argument("--split", choices=(*SPLITS, "all"), default="all")
    parser.add_argument("--modalities", default=None, help="comma-separated expected channel order")
    parser.add_argument("--classes", default=",".join(CLASSES), help="comma-separated allowed class names")
    args = parser.parse_args(argv)
    splits = SPLITS if args.split == "all" else (args.split,)
    mods = args.modalities.split(",") if args.modalities else None
    try:
        ok, problems = validate_datalist(args.datalist, splits, mods, tuple(args.classes.split(",")), progress=True)
    except (FileNotFoundError, DatalistError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for p in problems:
        print(f"problem: {p}")
    print(f"{ok} subject(s) valid, {len(problems)} problem(s)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
