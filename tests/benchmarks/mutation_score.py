"""Mutation score of the evaluation code: how many deliberately planted bugs the test suite catches.

Usage (developer tooling, not part of the suite; needs mutmut 3.8, which the bundle does not depend on)::

    python -m venv --system-site-packages /tmp/venv-mut && /tmp/venv-mut/bin/pip install mutmut==3.8.1
    python tests/benchmarks/mutation_score.py --mutmut /tmp/venv-mut/bin/mutmut --work /tmp/mut --out mut.json

The script copies the tracked files of this checkout to ``--work`` (the checkout itself is never touched), writes
the ``[mutmut]`` section below into the copy's ``setup.cfg`` and runs ``mutmut run`` there. mutmut changes one
operator, constant or call at a time in the named modules (``MUTATE``) and runs the tests that reach the changed
function (``TESTS``); a mutant is *killed* when a test fails or times out, *survived* when every test passes, and
*no tests* when no selected test reaches it. Score = (killed + timeout) / (every mutant but those skipped); the
*no tests* ones count against it. Per-module figures and the survivors' names (``mutmut show NAME`` in ``--work``
prints the change) go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The modules issue 17 names: the lesion-wise metrics, the detections table and the candidate logic.
MUTATE = ["bundle/metrics/*", "bundle/inference/detections.py", "bundle/methods/twostage/candidates.py"]
# Tests that exercise them directly (those that run them only through a subprocess cannot see a mutant).
TESTS = ["tests/metrics", "tests/inference/test_detections.py", "tests/inference/test_oblique_affines.py",
         "tests/methods/twostage/test_twostage_candidates.py", "tests/evaluation/test_evaluate.py",
         "tests/handlers/test_detections_writer.py"]
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          -24: "timeout", 37: "killed"}
KINDS = ("killed", "timeout", "survived", "no tests", "skipped", "suspicious", "not checked")


def copy_checkout(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def mutmut_section() -> str:
    def lines(key, values):
        return f"{key} =\n" + "".join(f"    {v}\n" for v in values)
    return ("\n[mutmut]\nsource_paths = bundle\n" + lines("only_mutate", MUTATE)
            + lines("also_copy", ["configs", "models", "tests"])
            + lines("pytest_add_cli_args_test_selection", TESTS) + lines("pytest_add_cli_args", ["-p", "no:cacheprovider", "-n", "0"])
            + "timeout_multiplier = 3.0\n")  # a mutant 3 times slower than the clean run is a timeout (caught)


def score(work: Path) -> dict:
    per_module, survivors = {}, []
    for meta in sorted((work / "mutants").rglob("*.py.meta")):
        module = str(meta.relative_to(work / "mutants"))[: -len(".meta")]
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        counts = Counter(dict.fromkeys(KINDS, 0))
        counts.update(STATUS.get(c, "not checked" if c is None else "suspicious") for c in codes.values())
        if not codes:
            continue
        counted = sum(counts.values()) - counts["skipped"]
        caught = counts["killed"] + counts["timeout"]
        per_module[module] = {**counts, "total": sum(counts.values()),
                              "score": round(caught / counted, 4) if counted else None}
        survivors += [k for k, c in codes.items() if STATUS.get(c) in ("survived", "no tests")]
    tot = Counter(dict.fromkeys(KINDS + ("total",), 0))
    for m in per_module.values():
        tot.update({k: v for k, v in m.items() if isinstance(v, int)})
    counted = tot["total"] - tot["skipped"]
    return {"modules": per_module, "pooled": {**tot, "score": round((tot["killed"] + tot["timeout"]) / counted, 4)
                                               if counted else None}, "survivors": survivors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mutmut", required=True, help="the mutmut executable (3.8)")
    ap.add_argument("--work", type=Path, required=True, help="an empty or absent folder for the copy")
    ap.add_argument("--out", type=Path, required=True, help="JSON with the score per module and the survivors")
    ap.add_argument("--max_children", type=int, default=2)
    a = ap.parse_args()
    if a.work.exists() and any(a.work.iterdir()):
        sys.exit(f"mutation_score: {a.work} is not empty; give an empty or absent folder")
    a.work.mkdir(parents=True, exist_ok=True)
    copy_checkout(a.work)
    with open(a.work / "setup.cfg", "a") as f:
        f.write(mutmut_section())
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.time()
    res = subprocess.run([a.mutmut, "run", "--max-children", str(a.max_children)], cwd=a.work, env=env)
    if res.returncode:
        sys.exit(f"mutation_score: mutmut run failed (exit {res.returncode}); see its output above")
    result = {**score(a.work), "seconds": round(time.time() - t0), "mutate": MUTATE, "tests": TESTS}
    tmp = a.out.with_name(a.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, a.out)
    p = result["pooled"]
    print(f"mutation score {p['score']}: {p['killed'] + p['timeout']} of {p['total'] - p['skipped']} caught, "
          f"{p['survived']} survived, {p['no tests']} reached by no test ({result['seconds']} s)")
    for m, s in result["modules"].items():
        print(f"  {m}: {s['score']} ({s['total']} mutants, {s['survived']} survived, {s['no tests']} no tests)")


if __name__ == "__main__":
    main()
