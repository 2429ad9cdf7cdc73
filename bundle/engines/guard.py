# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""One training per output folder, and resume only into the same training.

:func:`claim_training` runs first in the training configs of the methods that resume from finished networks
(two-stage, RCNN):

- a lock file ``OUTPUT/train.lock`` (process id, host, start) refuses a second training into the same folder
  while the first runs (a lock left by a process that no longer exists on this host is taken over);
- ``OUTPUT/checkpoints/fingerprint.json`` records the training datalist (each subject's files: path, size, first
  64 KiB) and the settings the finished networks were trained with; a rerun whose datalist or settings differ
  stops with one line instead of reusing them, unless ``retrain``: then the finished networks and the mined
  mimics are removed and everything trains again.
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import shutil
import socket
from pathlib import Path
from typing import Sequence

from ..data.io import fingerprint, write_json
from ..utils import as_bool

__all__ = ["claim_training"]

logger = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock(folder: Path) -> Path:
    path = folder / "train.lock"
    folder.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                other = json.loads(path.read_text())
            except (OSError, ValueError):
                other = {}
            same_host = other.get("host") == me["host"]
            if other.get("pid") == me["pid"] and same_host:
                return path  # this process holds it already
            if not same_host or _alive(int(other.get("pid", -1))):
                raise SystemExit(
                    f"error: another training (pid {other.get('pid')} on {other.get('host')}, started "
                    f"{other.get('started')}) is writing to {folder}; wait for it or use another --output_dir "
                    f"(remove {path} if that training no longer runs)"
                ) from None
            logger.warning("removing the lock of a training that no longer runs: %s", other)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        atexit.register(_unlock, path, me["pid"])
        return path
    raise SystemExit(f"error: could not take the lock {path}")


def _unlock(path: Path, pid: int) -> None:
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass


def claim_training(output_dir, entries: Sequence[dict], settings: dict, retrain: bool = False) -> str:
    """Lock ``output_dir`` for this training and check its finished networks against ``entries`` and
    ``settings`` (see the module's docstring); returns the fingerprint.

    Raises:
        SystemExit: another training holds the lock, or the finished networks come from another datalist or
            settings and ``retrain`` is not set (one line each).
    """
    folder = Path(output_dir)
    _lock(folder)
    checkpoints = folder / "checkpoints"
    record = {"fingerprint": fingerprint(entries, settings), "subjects": [e["subject"] for e in entries]}
    path = checkpoints / "fingerprint.json"
    finished = sorted(checkpoints.glob("*.pt")) if checkpoints.is_dir() else []
    earlier = json.loads(path.read_text()) if path.is_file() else None
    if finished and (earlier or {}).get("fingerprint") != record["fingerprint"]:
        if not as_bool(retrain, "retrain"):
            why = "another datalist or other settings" if earlier else "no record of their datalist and settings"
            raise SystemExit(
                f"error: {checkpoints} holds {len(finished)} finished network(s) with {why}; use another "
                "--output_dir, or --retrain true to train them again"
            )
        for p in finished:
            p.unlink()
        shutil.rmtree(folder / "mimics", ignore_errors=True)
        logger.warning("retrain: removed %d finished network(s) and the mined mimics of %s", len(finished), folder)
    write_json(record, path)
    return record["fingerprint"]
