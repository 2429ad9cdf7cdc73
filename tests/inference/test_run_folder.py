# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""One run per output folder: run.json records the run; a rerun of the same run proceeds and clears leftover
temporary files; another run (other input, settings or weights, or outputs without run.json) is refused unless
overwrite, which removes only the files the job writes."""

from __future__ import annotations

import hashlib
import json

import pytest

from bundle.inference import claim_output, close_run


@pytest.fixture
def setup(tmp_path):
    scan = tmp_path / "in" / "a.nii.gz"
    scan.parent.mkdir()
    scan.write_bytes(b"scan a" * 100)
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")
    return tmp_path / "out", [{"subject": "a", "image": [str(scan)]}], weights, scan


def test_same_run_proceeds_and_clears_temporary_files(setup):
    out, entries, weights, _ = setup
    first = claim_output(out, entries, weights, {"threshold": 0.5})
    record = json.loads((out / "run.json").read_text())
    assert record["weights_sha256"] == hashlib.sha256(b"weights").hexdigest() and record["status"] == "running"
    assert record["fingerprint"] == first["fingerprint"] and record["subjects"] == 1
    (out / "maps").mkdir()
    (out / "maps" / ".a_prob.k2j_8x0q.nii.gz").write_bytes(b"")  # left by a killed atomic write
    (out / "detections.csv").write_text("header\n")
    (out / ".notes.txt").write_text("the user's own hidden file")
    again = claim_output(out, entries, weights, {"threshold": 0.5})
    assert again["fingerprint"] == first["fingerprint"]
    assert not (out / "maps" / ".a_prob.k2j_8x0q.nii.gz").exists()
    assert (out / "detections.csv").exists() and (out / ".notes.txt").exists()
    (out / "counts.csv").write_text("subject,cmb,total\na,1,1\n")
    (out / "failed.csv").write_text("subject,reason\n")
    done = close_run(out)
    assert done["status"] == "done" and done["written"] == ["a"] and done["failed"] == [] and "ended" in done
    with pytest.raises(SystemExit, match=r"^error: the weights file .*nothing.pt does not exist \(--checkpoint\)$"):
        claim_output(out, entries, weights.parent / "nothing.pt", {"threshold": 0.5})


@pytest.mark.parametrize("change", ["settings", "input", "weights", "no_manifest"])
def test_another_run_is_refused_unless_overwrite(setup, change):
    out, entries, weights, scan = setup
    claim_output(out, entries, weights, {"threshold": 0.5})
    (out / "maps").mkdir()
    (out / "maps" / "a_prob.nii.gz").write_bytes(b"map")
    (out / "detections.csv").write_text("header\n")
    (out / "mine.txt").write_text("not the job's")
    settings = {"threshold": 0.5}
    if change == "settings":
        settings = {"threshold": 0.4}
    elif change == "input":
        scan.write_bytes(b"scan b" * 100)
    elif change == "weights":
        weights.write_bytes(b"other weights")
    else:
        (out / "run.json").unlink()
    with pytest.raises(SystemExit, match=r"error: .*out holds the outputs of another run .*--overwrite true"):
        claim_output(out, entries, weights, settings)
    assert (out / "detections.csv").exists() and (out / "maps" / "a_prob.nii.gz").exists()  # nothing removed
    claim_output(out, entries, weights, settings, overwrite="true")
    assert not (out / "detections.csv").exists() and not (out / "maps").exists()
    assert (out / "mine.txt").read_text() == "not the job's" and (out / "run.json").is_file()
