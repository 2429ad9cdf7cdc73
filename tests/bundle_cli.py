# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""``python -m monai.bundle ARGS`` for the tests, without paying MONAI's import (10-18 s on the CI machine) per call.

Each call is a fresh process, as on the command line: it is forked from a multiprocessing fork server that imported
MONAI, torch and the bundle once and never ran an operator (so no thread pool is copied into the fork). The child
takes the working folder, ``sys.argv`` and the environment it is given, sends its stdout and stderr to files, and
exits with the status the command line would give: ``sys.exit``'s code, or 1 after ``sys.excepthook`` printed an
uncaught error. A command run in another folder than this repository (e.g. an unpacked bundle) is a real
``python -m monai.bundle``, since the server's ``bundle`` is this repository's. ``ESO_TEST_SUBPROCESS=1`` makes every
call a real ``python -m monai.bundle``."""

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


def _child(args, cwd, env, out, err):  # runs in the forked process
    import atexit
    import runpy
    import warnings

    atexit._clear()  # the fork server's exit functions are not this command's
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
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
    except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught error
        sys.excepthook(*sys.exc_info())
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Running:
    """A started command: ``wait()`` gives a ``subprocess.CompletedProcess`` with text stdout and stderr; ``kill()``
    sends SIGKILL; ``poll()`` is None while it runs."""

    def __init__(self, args, cwd, env):
        self.args = list(args)
        self._dir = tempfile.mkdtemp(prefix="bundle_cli_")
        self._out, self._err = os.path.join(self._dir, "out"), os.path.join(self._dir, "err")
        for path in (self._out, self._err):
            Path(path).touch()
        env = {k: str(v) for k, v in (os.environ if env is None else env).items()}
        if os.environ.get("ESO_TEST_SUBPROCESS") == "1" or Path(cwd).resolve() != REPO:  # another copy's code
            out, err = open(self._out, "w"), open(self._err, "w")
            self._proc = subprocess.Popen([sys.executable, "-m", "monai.bundle", *self.args], cwd=cwd, env=env,
                                          stdout=out, stderr=err)  # fmt: skip
            out.close(), err.close()
        else:
            self._proc = _context().Process(target=_child, args=(self.args, str(cwd), env, self._out, self._err))
            self._proc.start()

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
        for p in (self._out, self._err):
            os.unlink(p)
        os.rmdir(self._dir)
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
