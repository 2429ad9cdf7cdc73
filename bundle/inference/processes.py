# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""``--processes N``: the main job splits its input into N shards and runs them at once, each as its own
``python -m monai.bundle run`` with ``--shard i/N`` on its share of the CPU's threads; then the job goes on as a run
without ``--shard``, which skips every subject the shards completed, runs any they left (a shard that crashed) and
merges the tables (docs/outputs.md#every-marker-of-a-cohort). On 2 cores this keeps both busy, where one process
leaves about 15 % idle (docs/benchmarks.md)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..utils import is_null

logger = logging.getLogger(__name__)

__all__ = ["auto_processes", "check_processes", "run_shards", "shard_commands"]

#: options the launcher sets for each shard itself (with and without ``=value``)
_OWN = ("--processes", "--shard", "--overwrite", "--progress")


def _main_is_bundle() -> bool:
    return getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", "") == "monai.bundle.__main__"


def _command_line() -> list[str]:
    """This process's ``python -m monai.bundle`` arguments; SystemExit when it was started another way."""
    if not _main_is_bundle():
        raise SystemExit("error: --processes starts copies of the command line `python -m monai.bundle run ...`; "
                         "from Python, run each share with --shard i/n instead")  # fmt: skip
    return list(sys.argv[1:])


def shard_commands(args: list[str], n: int, threads: int) -> list[tuple[list[str], dict]]:
    """The ``n`` shards' commands and environment variables for the command-line ``args`` of a ``monai.bundle`` run:
    the same arguments without ``--processes``, ``--shard``, ``--overwrite`` and ``--progress``, then ``--shard
    i/n --processes 1 --overwrite false --progress false``; ``threads`` torch (OpenMP, MKL, OpenBLAS) and SimpleITK
    threads each."""
    kept, skip = [], False
    for a in args:
        if skip and not a.startswith("--"):
            skip = False  # the value of an option of the launcher's
            continue
        skip = a in _OWN  # its value follows, unless it is a bare flag (fire reads it as true)
        if not skip and not a.startswith(tuple(f"{o}=" for o in _OWN)):
            kept.append(a)
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
    env = {k: str(threads) for k in names}
    tail = ["--processes", "1", "--overwrite", "false", "--progress", "false"]
    return [([sys.executable, "-m", "monai.bundle", *kept, "--shard", f"{i}/{n}", *tail], env) for i in range(n)]


#: a job's peak memory on a 1 mm subject with four modalities and both detectors (1,262-1,340 MiB measured), with
#: room: ``auto`` starts no more processes than the available memory holds at this much each
JOB_MEMORY = 1.5 * 2**30


def auto_processes(meminfo: str = "/proc/meminfo") -> int:
    """``--processes auto``: one per CPU core this process may use, no more than the available memory holds
    (:data:`JOB_MEMORY` each; ``MemAvailable`` of ``meminfo`` where there is one), and 1 where CUDA is
    available (one process keeps a GPU busy)."""
    import torch

    if torch.cuda.is_available():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        lines = Path(meminfo).read_text().splitlines()
        free = next(int(line.split()[1]) * 1024 for line in lines if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return max(1, cores)
    return max(1, min(cores, int(free // JOB_MEMORY)))


def check_processes(processes, shard_spec=None) -> int:
    """``processes`` as a whole number (``auto``: :func:`auto_processes`, or 1 with ``--shard`` or under torchrun);
    checked before the run writes anything (the main config's ``initialize``).

    Raises:
        SystemExit: it is not ``auto`` or a whole number >= 1; it is > 1 with a ``shard_spec`` (``--shard``), under
            torchrun, or in a job not started as ``python -m monai.bundle`` (one line each).
    """
    import ignite.distributed as idist

    if str(processes).strip().lower() == "auto":
        alone = is_null(shard_spec) and idist.get_world_size() == 1 and _main_is_bundle()
        return auto_processes() if alone else 1
    n = int(processes) if str(processes).strip().isdigit() else 0
    if n < 1:
        raise SystemExit(f"error: --processes {processes!r} must be auto or a whole number >= 1")
    if n > 1 and not is_null(shard_spec):
        raise SystemExit("error: --processes and --shard: give one (--processes starts the shards itself)")
    if n > 1 and idist.get_world_size() > 1:
        raise SystemExit("error: --processes under torchrun: torchrun already starts the processes")
    if n > 1:
        _command_line()
    return n


def _stop(signum, frame):  # SIGTERM (a scheduler, `kill`) while the shards run: end them too (the finally below)
    raise SystemExit(128 + signum)


def run_shards(processes, shard_spec, output_dir, subjects: int) -> list[int]:
    """With ``processes`` > 1 (and no ``shard_spec``): run the job's ``min(processes, subjects)`` shards at once,
    each with ``threads // processes`` of this process's torch threads, their output in
    ``output_dir/logs/shard_<i>of<n>.log``, and wait for them; returns their exit statuses (0: done, 3: a subject
    failed, in its record; anything else is logged with the end of the shard's log, and the job runs that shard's
    remaining subjects itself). ``[]`` when there is nothing to split.

    Raises:
        SystemExit: as :func:`check_processes`.
    """
    import torch

    from .run_folder import _remove_temporary

    n = min(check_processes(processes, shard_spec), subjects)
    if n <= 1:
        return []
    threads = max(1, torch.get_num_threads() // n)
    commands = shard_commands(_command_line(), n, threads)
    logs = Path(output_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs, term = [], _handle_sigterm()
    try:
        for i, (cmd, env) in enumerate(commands):
            with open(logs / f"shard_{i}of{n}.log", "w") as log:
                procs.append(subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT))
        logger.info("%d processes, %d thread(s) each; their logs: %s", n, threads, logs)
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:  # this process stopped (Ctrl-C, SIGTERM, an error): so do its shards
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if term is not None:
            signal.signal(signal.SIGTERM, term)
        _remove_temporary(Path(output_dir))  # what a shard killed mid-write left
    for i, code in enumerate(codes):
        if code not in (0, 3):
            tail = (logs / f"shard_{i}of{n}.log").read_text(errors="replace").strip().splitlines()[-3:]
            logger.warning("shard %d/%d stopped with status %s (%s); this process runs what it left",
                           i, n, code, " | ".join(tail))  # fmt: skip
    return codes


def _handle_sigterm():
    """SIGTERM raises SystemExit while the shards run (Python's default ends the process without its ``finally``);
    returns the handler to put back, None off the main thread."""
    try:
        return signal.signal(signal.SIGTERM, _stop)
    except ValueError:  # not the main thread: signals are not ours to handle
        return None
