# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""``python -m monai.bundle ARGS`` for the tests, without paying MONAI's import (10-18 s on the CI machine) per call.

Each call is a fresh process, as on the command line: it is forked from a multiprocessing fork server that imported
MONAI, torch and the bundle once and never ran an operator (so no thread pool is copied into the fork). The child
takes the working folder, ``sys.argv``, the environment and the start method it is given, reseeds numpy's and
MONAI's global generators, sends its stdout and stderr to files, and exits with the status the command line would
give: ``sys.exit``'s code, or 1 after ``sys.excepthook`` printed an uncaught error. A command that a fork could not
run as the command line would is a real ``python -m monai.bundle``: one in another folder than this repository
(e.g. an unpacked bundle; the server's ``bundle`` is this repository's), one whose environment changes a
start-up-only setting (:data:`STARTUP_ONLY`), or any when the fork server fails. ``ESO_TEST_SUBPROCESS=1`` makes
every call a real ``python -m monai.bundle``."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the code the fork server imports
PRELOAD = ["monai.bundle", "monai.bundle.scripts", "bundle.inference", "bundle.data", "bundle.metrics",
           "bundle.handlers", "bundle.transforms", "SimpleITK", "fire"]  # fmt: skip
_CONTEXT = None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


#: environment variables that only take effect when an interpreter starts: a command given one that differs from
#: this process's runs as a real subprocess (the fork applies OMP_NUM_THREADS itself, and PYTHONWARNINGS=ignore)
STARTUP_ONLY = ("PYTHONHASHSEED", "PYTHONIOENCODING", "PYTHONPATH", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "LD_PRELOAD")  # fmt: skip


def _child(args, cwd, env, out, err, start_method):  # runs in the forked process
    import atexit
    import runpy
    import threading
    import warnings

    import numpy as np
    from monai.transforms import Randomizable

    multiprocessing.set_start_method(start_method, force=True)  # what a real interpreter would use, not forkserver
    np.random.seed()  # a fresh interpreter seeds these from the OS: so does each fork, not once in the server
    Randomizable.R = np.random.RandomState()
    os.chdir(cwd)
    sys.path.insert(0, cwd)  # `python -m` puts the working folder first (the server's `bundle` is already REPO's)
    os.environ.clear()
    os.environ.update(env)
    if "OMP_NUM_THREADS" in env:
        import torch

        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(f, fd)
        os.close(f)
    if env.get("PYTHONWARNINGS") == "ignore":
        warnings.simplefilter("ignore")
    sys.argv = ["monai.bundle", *args]
    code = 0
    try:
        runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else (print(e.code, file=sys.stderr), 1)[1])
    except KeyboardInterrupt:
        code = -2
    except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught error
        sys.excepthook(*sys.exc_info())
        code = 1
    threading._shutdown()  # as the interpreter does at exit: join non-daemon threads, then the exit functions
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    if code == -2:  # as Python ends on Ctrl-C: killed by SIGINT
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code & 0xFF)


def _forkable(cwd, env) -> bool:
    """Whether a fork of the server runs the command as ``python -m monai.bundle`` in ``cwd`` would: the code is
    this repository's, and no start-up-only setting differs."""
    import importlib.util

    if os.environ.get("ESO_TEST_SUBPROCESS") == "1" or Path(cwd).resolve() != REPO:
        return False
    spec = importlib.util.find_spec("bundle")
    if spec is None or not spec.origin or REPO not in Path(spec.origin).resolve().parents:
        return False  # the server would import another checkout's `bundle` (e.g. an editable install elsewhere)
    same = all(env.get(k) == os.environ.get(k) for k in STARTUP_ONLY)
    return same and env.get("PYTHONWARNINGS") in (None, "ignore", os.environ.get("PYTHONWARNINGS"))


class Running:
    """A started command: ``wait()`` gives a ``subprocess.CompletedProcess`` with text stdout and stderr; ``kill()``
    sends SIGKILL; ``poll()`` is None while it runs."""

    def __init__(self, args, cwd, env):
        self.args = list(args)
        self._dir = tempfile.mkdtemp(prefix="bundle_cli_")
        self._out, self._err = os.path.join(self._dir, "out"), os.path.join(self._dir, "err")
        env = {k: str(v) for k, v in (os.environ if env is None else env).items()}
        try:
            for path in (self._out, self._err):
                Path(path).touch()
            self._proc = None
            if _forkable(cwd, env):
                proc = _context().Process(target=_child, args=(self.args, str(cwd), env, self._out, self._err,
                                                               multiprocessing.get_start_method()))  # fmt: skip
                try:
                    proc.start()
                    self._proc = proc
                except (OSError, EOFError):  # the server failed (e.g. a preload error): a real subprocess instead
                    pass
            if self._proc is None:
                with open(self._out, "w") as out, open(self._err, "w") as err:
                    self._proc = subprocess.Popen([sys.executable, "-m", "monai.bundle", *self.args], cwd=cwd,
                                                  env=env, stdout=out, stderr=err)  # fmt: skip
        except BaseException:
            self._cleanup()
            raise

    def _cleanup(self):
        for p in (self._out, self._err):
            if os.path.exists(p):
                os.unlink(p)
        os.rmdir(self._dir)

    def poll(self):
        if isinstance(self._proc, subprocess.Popen):
            return self._proc.poll()
        return self._proc.exitcode

    def kill(self):
        self._proc.kill()

    def wait(self) -> subprocess.CompletedProcess:
        if isinstance(self._proc, subprocess.Popen):
            code = self._proc.wait()
        else:
            self._proc.join()
            code = self._proc.exitcode  # -9 after kill(), as Popen reports it
        out, err = Path(self._out).read_text(), Path(self._err).read_text()
        self._cleanup()
        return subprocess.CompletedProcess([sys.executable, "-m", "monai.bundle", *self.args], code, out, err)


def bundle_run(cmd, cwd, env=None) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)`` for ``cmd = [sys.executable, "-m",
    "monai.bundle", ...]``, in a process forked from the preloaded server."""
    return Running(_args(cmd), cwd, env).wait()


def bundle_popen(cmd, cwd, env=None) -> Running:
    """The same, started: ``poll()``, ``kill()``, ``wait()``."""
    return Running(_args(cmd), cwd, env)


def _args(cmd) -> list[str]:
    if list(cmd[:3]) != [sys.executable, "-m", "monai.bundle"]:
        raise ValueError(f"not a `python -m monai.bundle` command: {cmd[:3]}")
    return [str(a) for a in cmd[3:]]
