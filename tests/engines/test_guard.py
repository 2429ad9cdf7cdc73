# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""One training per output folder: a live lock refuses a second training, a dead one is taken over; finished
networks of another datalist or other settings are refused, or removed with retrain."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from bundle.engines.guard import claim_training


@pytest.fixture
def run(tmp_path):
    scan = tmp_path / "a.nii.gz"
    scan.write_bytes(b"scan" * 64)
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    return out, [{"subject": "a", "image": [str(scan)]}], scan


def test_finished_networks_of_another_training_are_refused_or_retrained(run):
    out, entries, scan = run
    claim_training(out, entries, {"iterations": 10})
    (out / "checkpoints" / "unet_bs20.pt").write_bytes(b"net")
    (out / "mimics").mkdir()
    (out / "mimics" / "a_mimics.csv").write_text("subject\n")
    claim_training(out, entries, {"iterations": 10})  # the same training resumes
    assert (out / "checkpoints" / "unet_bs20.pt").exists()
    with pytest.raises(SystemExit, match=r"holds 1 finished network\(s\) with another datalist or other settings"):
        claim_training(out, entries, {"iterations": 20})
    scan.write_bytes(b"other scan" * 64)
    with pytest.raises(SystemExit, match=r"--retrain true"):
        claim_training(out, entries, {"iterations": 10})
    assert (out / "checkpoints" / "unet_bs20.pt").exists()  # nothing removed without retrain
    claim_training(out, entries, {"iterations": 10}, retrain="true")
    assert not (out / "checkpoints" / "unet_bs20.pt").exists() and not (out / "mimics").exists()
    record = json.loads((out / "checkpoints" / "fingerprint.json").read_text())
    assert record["subjects"] == ["a"]
    (out / "checkpoints" / "fingerprint.json").unlink()
    (out / "checkpoints" / "old.pt").write_bytes(b"net")
    with pytest.raises(SystemExit, match=r"no record of their datalist and settings"):
        claim_training(out, entries, {"iterations": 10})


def test_a_live_lock_refuses_and_a_dead_one_is_taken_over(run):
    out, entries, _ = run
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock = {"pid": sleeper.pid, "host": socket.gethostname(), "started": "earlier"}
        (out / "train.lock").write_text(json.dumps(lock))
        with pytest.raises(SystemExit, match=rf"another training \(pid {sleeper.pid} on .*\) is writing to"):
            claim_training(out, entries, {})
    finally:
        sleeper.kill()
        sleeper.wait()
    claim_training(out, entries, {})  # its process is gone: the lock is stale
    assert json.loads((out / "train.lock").read_text())["pid"] == os.getpid()
