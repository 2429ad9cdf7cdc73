# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""``--processes N``: the main job splits its input into N shards and runs them at once, each as its own
``python -m monai.bundle run`` with ``--shard i/N`` on its share of the CPU's threads; then the job goes on as a run
without ``--shard``, which skips every subject the shards completed, runs any they left (a shard that crashed) and
merges the tables (docs/outputs.md#every-marker-of-a-cohort). On 2 cores this keeps both busy, where one process
leaves about 15 % idle (docs/benchmarks.md)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from ..utils import is_null

logger = logging.getLogger(__name__)

__all__ = ["run_shards", "shard_commands"]

#: options the launcher sets for each shard itself (with and without ``=value``)
_OWN = ("--processes", "--shard", "--overwrite", "--progress")


def _command_line() -> list[str]:
    """This process's ``python -m monai.bundle`` arguments; SystemExit when it was started another way."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if getattr(spec, "name", "") != "monai.bundle.__main__":
        raise SystemExit("error: --processes starts copies of the command line `python -m monai.bundle run ...`; "
                         "from Python, run each share with --shard i/n instead")  # fmt: skip
    return list(sys.argv[1:])


def shard_commands(args: list[str], n: int, threads: int) -> list[tuple[list[str], dict]]:
    """The ``n`` shards' commands and environment variables for the command-line ``args`` of a ``monai.bundle`` run:
    the same arguments without ``--processes``, ``--shard``, ``--overwrite`` and ``--progress``, then ``--shard
    i/n --processes 1 --overwrite false --progress false``; ``threads`` torch (OpenMP, MKL) and SimpleITK threads
    each."""
    kept, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in _OWN:
            skip = True  # and its value
        elif not a.startswith(tuple(f"{o}=" for o in _OWN)):
            kept.append(a)
    env = {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")}
    tail = ["--processes", "1", "--overwrite", "false", "--progress", "false"]
    return [([sys.executable, "-m", "monai.bundle", *kept, "--shard", f"{i}/{n}", *tail], env) for i in range(n)]


def run_shards(processes, shard_spec, output_dir, subjects: int) -> list[int]:
    """With ``processes`` > 1 (and no ``shard_spec``): run the job's ``min(processes, subjects)`` shards at once,
    each with ``threads // processes`` of this process's torch threads, their output in
    ``output_dir/logs/shard_<i>of<n>.log``, and wait for them; returns their exit statuses (0: done, 3: a subject
    failed, in its record; anything else is logged with the end of the shard's log, and the job runs that shard's
    remaining subjects itself). ``[]`` when there is nothing to split.

    Raises:
        SystemExit: ``processes`` is not a positive integer, it comes with ``--shard``, the job is distributed
            (torchrun), or it was not started as ``python -m monai.bundle`` (one line each).
    """
    import ignite.distributed as idist
    import torch

    n = int(processes) if str(processes).strip().isdigit() else 0
    if n < 1:
        raise SystemExit(f"error: --processes {processes!r} must be a whole number >= 1")
    n = min(n, subjects)
    if n <= 1:
        return []
    if not is_null(shard_spec):
        raise SystemExit("error: --processes and --shard: give one (--processes starts the shards itself)")
    if idist.get_world_size() > 1:
        raise SystemExit("error: --processes under torchrun: torchrun already starts the processes")
    threads = max(1, torch.get_num_threads() // n)
    commands = shard_commands(_command_line(), n, threads)
    logs = Path(output_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        for i, (cmd, env) in enumerate(commands):
            with open(logs / f"shard_{i}of{n}.log", "w") as log:
                procs.append(subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT))
        logger.info("%d processes, %d thread(s) each; their logs: %s", n, threads, logs)
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:  # this process stopped (Ctrl-C, an error): so do its shards
                p.terminate()
                p.wait()
    for i, code in enumerate(codes):
        if code not in (0, 3):
            tail = (logs / f"shard_{i}of{n}.log").read_text(errors="replace").strip().splitlines()[-3:]
            logger.warning("shard %d/%d stopped with status %s (%s); this process runs what it left",
                           i, n, code, " | ".join(tail))  # fmt: skip
    return codes
