"""Developer tooling (not shipped): the structural U-Net's training cohort, simulated in parallel on a many-core
machine (the GPU machine a session may be lent), as one training datalist.

    python -m scripts.gpu_structural_cohort --out DIR --workers 16 [--extra 40]

Writes ``DIR/train.json``: the 40 training and 6 validation scans of seed 800 (the cohort of
``tests/benchmarks/bench_epvs_generalisation.py``, subject for subject: the same simulator calls, only run in
parallel) plus ``--extra`` more training scans of the ``train`` preset with seed 820 (other subjects; never
validation or test scans).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bundle.data.synth.structural.subject import generate_structural_subject


def _one(job: tuple[int, str, int, str]) -> tuple[int, dict]:
    index, folder, seed, preset_name = job
    return index, generate_structural_subject(index, folder, seed, preset_name)


def _entries(folder: Path, prefix: str, entries: list[dict]) -> list[dict]:
    out = []
    for e in entries:
        e = dict(e)
        for k in ("image", "label", "lesions", "mask", "roi", "mimics", "regions"):
            if k in e:
                e[k] = [str(folder / p) for p in e[k]] if isinstance(e[k], list) else str(folder / e[k])
        out.append({**e, "subject": f"{prefix}-{e['subject']}"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--n_train", type=int, default=40)
    ap.add_argument("--n_val", type=int, default=6)
    ap.add_argument("--extra", type=int, default=0)
    args = ap.parse_args()
    start = time.perf_counter()
    base, extra = args.out / "train", args.out / "extra"
    jobs = [(i, str(base), 800, "train") for i in range(args.n_train)]
    jobs += [(args.n_train + i, str(base), 800, "validation") for i in range(args.n_val)]
    jobs += [(i, str(extra), 820, "train") for i in range(args.extra)]
    with ProcessPoolExecutor(args.workers) as pool:
        done = list(pool.map(_one, jobs, chunksize=1))
    training = _entries(base, "tr", [e for (i, e), j in zip(done, jobs) if j[1] == str(base) and i < args.n_train])
    validation = _entries(base, "tr", [e for (i, e), j in zip(done, jobs) if j[1] == str(base) and i >= args.n_train])
    training += _entries(extra, "ex", [e for (_, e), j in zip(done, jobs) if j[1] == str(extra)])
    path = args.out / "train.json"
    path.write_text(json.dumps({"modalities": ["t1", "t2", "flair"], "classes": ["epvs", "lacune"],
                                "training": training, "validation": validation, "testing": []}))  # fmt: skip
    seconds = time.perf_counter() - start
    print(f"{len(training)} training and {len(validation)} validation scans in {seconds:.0f} s: {path}")


if __name__ == "__main__":
    main()
