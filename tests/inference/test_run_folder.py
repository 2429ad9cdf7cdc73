# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""One run per output folder: run.json records the run; a rerun of the same run proceeds and clears leftover
temporary files; another run (other input, settings or weights, or outputs without run.json) is refused unless
overwrite, which removes only the files the job writes."""

from __future__ import annotations

import hashlib
import json

import pytest

from bundle.inference import SubjectRecords, claim_output, close_run, match_itk_threads, shard


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
    SubjectRecords(out).save({"subject": "a", "detections": [], "files": ["detections.csv"]})
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


def test_subject_records_give_each_subjects_status_and_the_merge_order(setup):
    out, entries, weights, scan = setup
    entries = [{**entries[0], "subject": s} for s in ("c", "a", "d", "b")]
    claim_output(out, entries, weights)
    records = SubjectRecords(out)
    (out / "maps").mkdir()
    (out / "maps" / "a_prob.nii.gz").write_bytes(b"map")
    records.save({"subject": "a", "detections": [{"score": float("nan")}], "files": ["maps/a_prob.nii.gz"]})
    records.save({"subject": "b", "failed": "b: image file b.nii.gz is all zeros"})
    records.save({"subject": "d", "detections": [], "files": ["maps/d_prob.nii.gz"]})  # its map was lost
    (out / "subjects" / "c.json").write_text('{"subject": "c", "detec')  # a torn file is no record
    assert [records.complete(s) for s in "abcd"] == [True, False, False, False]
    assert [r["subject"] for r in records.merged(seen=["b"])] == ["a", "d", "b"]  # run.json's order, not seen
    assert str(records.load("a")["detections"][0]["score"]) == "nan"
    done = close_run(out)
    assert (done["status"], done["written"], done["failed"], done["pending"]) == ("failed", ["a"], ["b"], ["c", "d"])
    records.save({"subject": "b", "detections": [], "files": []})
    assert close_run(out)["status"] == "incomplete"
    (out / "run.json").unlink()
    assert [r["subject"] for r in records.merged(seen=["d", "a", "x"])] == ["d", "a"]  # no run.json: as seen
    with pytest.raises(ValueError, match="subject records"):
        records.path("../x")


def test_shard_splits_subjects_and_refuses_a_bad_spec(setup):
    out, entries, weights, _ = setup
    entries = [{"subject": str(n)} for n in range(7)]
    parts = [shard(entries, f"{i}/3") for i in range(3)]
    assert [[e["subject"] for e in p] for p in parts] == [["0", "3", "6"], ["1", "4"], ["2", "5"]]
    assert shard(entries) == entries and shard(entries, "null") == entries
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(SystemExit, match=r"^error: --shard .* must be i/n with 0 <= i < n"):
            shard(entries, bad)
    with pytest.raises(SystemExit, match=r"^error: --shard 7/8 gets no subject: the input has 7, split 8 ways"):
        shard(entries, "7/8")
    with pytest.raises(SystemExit, match="not with --shard"):
        claim_output(out, entries[:0], weights, overwrite=True, shard_spec="0/2")
    # by the place in the whole input (the main job's two detectors on the subjects each can run): a subject goes
    # to the same shard in both, whatever the other detector's subjects
    order = [str(n) for n in range(7)]
    some = [entries[n] for n in (0, 2, 4, 5)]
    assert [[e["subject"] for e in shard(some, f"{i}/3", order)] for i in range(3)] == [["0"], ["4"], ["2", "5"]]
    assert [e["subject"] for e in shard(some, "1/3", order[:3])] == ["2"]  # one not in the order: all by their own
    assert shard([entries[1], entries[2]], "0/3", order) == []  # this detector has no subject in this shard
    assert shard(some, None, order) == some  # one process: everything
    with pytest.raises(SystemExit, match=r"^error: --shard 7/8 gets no subject: the input has 7, split 8 ways"):
        shard(some, "7/8", order)  # the whole input counts


def test_simpleitk_takes_torchs_threads_unless_its_own_variable_is_set(monkeypatch):
    """configs/multi_gpu_inference.yaml on a CPU: each process's bias correction and registration on as many threads
    as its torch (one under torchrun), not on every core."""
    import SimpleITK as sitk
    import torch

    before = (torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())
    try:
        monkeypatch.delenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", raising=False)
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(4)
        torch.set_num_threads(1)
        assert match_itk_threads() == 1 == sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        torch.set_num_threads(3)
        assert match_itk_threads() == 3
        monkeypatch.setenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")  # the user's setting stays
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
        torch.set_num_threads(1)
        assert match_itk_threads() == 2
    finally:
        torch.set_num_threads(before[0])
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before[1])


def test_processes_start_one_shard_each_on_its_share_of_the_threads(tmp_path, monkeypatch):
    """``--processes N``: the command line again without the launcher's own options (either spelling), then
    ``--shard i/N``, one process, no overwrite, no progress bar; each on ``threads // N`` torch and SimpleITK threads.
    Refused with --shard, under torchrun or outside the command line; nothing to split: nothing started."""
    import sys

    from bundle.inference import check_processes, run_shards, shard_commands

    args = ["run", "--config_file", "configs/inference.yaml", "--processes", "2", "--overwrite=true", "--datalist",
            "in.json", "--shard", "0/3", "--progress=true", "--output_dir", "o"]  # fmt: skip
    cmds = shard_commands(args, 2, 3)
    assert [c[:3] for c, _ in cmds] == [[sys.executable, "-m", "monai.bundle"]] * 2
    assert [c[3:] for c, _ in cmds] == [
        ["run", "--config_file", "configs/inference.yaml", "--datalist", "in.json", "--output_dir", "o", "--shard",
         f"{i}/2", "--processes", "1", "--overwrite", "false", "--progress", "false"] for i in range(2)]  # fmt: skip
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
    assert all(e == dict.fromkeys(names, "3") for _, e in cmds)
    bare = shard_commands(["run", "--overwrite", "--processes", "2", "--datalist", "d", "--progress"], 2, 1)
    assert bare[1][0][3:7] == ["run", "--datalist", "d", "--shard"]  # a flag without its value (fire: true)
    assert run_shards(1, None, tmp_path, 5) == [] and check_processes("1", "0/2") == 1
    monkeypatch.setattr("bundle.inference.processes._command_line", lambda: args)
    assert run_shards("4", None, tmp_path, 1) == [] and not (tmp_path / "logs").exists()  # one subject: no shards
    monkeypatch.undo()
    for bad in (0, "two", "-1"):
        with pytest.raises(SystemExit, match=r"^error: --processes .* must be auto or a whole number >= 1"):
            run_shards(bad, None, tmp_path, 5)
    with pytest.raises(SystemExit, match=r"^error: --processes and --shard: give one"):
        run_shards(2, "0/2", tmp_path, 5)
    with pytest.raises(SystemExit, match=r"^error: --processes starts copies of the command line"):
        run_shards(2, None, tmp_path, 5)  # pytest is not `python -m monai.bundle`
    monkeypatch.setattr("ignite.distributed.get_world_size", lambda: 2)
    with pytest.raises(SystemExit, match=r"^error: --processes under torchrun"):
        run_shards(2, None, tmp_path, 5)


def test_a_shard_that_crashes_is_logged_and_its_temporary_files_removed(tmp_path, monkeypatch, caplog):
    """Shards that end with 0, 3 (a subject failed: recorded) and 1 (crashed after starting a write): the job gets
    their statuses, warns once with the end of the crashed shard's log, keeps each shard's output in logs/, and
    removes the temporary file the crash left, so the merging run that follows starts clean."""
    import logging
    import sys

    from bundle.inference import run_shards

    (tmp_path / "maps").mkdir()
    left = tmp_path / "maps" / ".sub-1_prob.k2j_8x0q.nii.gz"  # an atomic write's temporary file, as a kill leaves
    scripts = ["print('shard zero done')", "import sys; print('one failed'); sys.exit(3)",
               f"import sys; open({str(left)!r}, 'w'); print('out of memory'); sys.exit(1)"]  # fmt: skip
    monkeypatch.setattr("bundle.inference.processes._command_line", lambda: ["run"])
    monkeypatch.setattr("bundle.inference.processes.shard_commands",
                        lambda args, n, threads: [([sys.executable, "-c", s], {}) for s in scripts[:n]])  # fmt: skip
    with caplog.at_level(logging.INFO, logger="bundle.inference.processes"):
        assert run_shards(3, None, tmp_path, 7) == [0, 3, 1]
    assert not left.exists()
    assert [(tmp_path / "logs" / f"shard_{i}of3.log").read_text().strip() for i in range(3)] == [
        "shard zero done", "one failed", "out of memory"]  # fmt: skip
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == ["shard 2/3 stopped with status 1 (out of memory); this process runs what it left"]


def test_processes_auto_takes_one_per_core_within_the_available_memory(monkeypatch, tmp_path):
    """``--processes auto``: the cores this process may use, at most the available memory over 1.5 GiB, 1 where
    CUDA is available; 1 with --shard, under torchrun or from Python (nothing to start there)."""
    import torch

    from bundle.inference import auto_processes, check_processes

    meminfo = tmp_path / "meminfo"
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for avail_gib, want in ((64, 8), (7.6, 5), (1.0, 1)):
        meminfo.write_text(f"MemTotal: 99999999 kB\nMemAvailable: {int(avail_gib * 2**20)} kB\n")
        assert auto_processes(meminfo) == want, avail_gib
    assert auto_processes(tmp_path / "none") == 8  # no meminfo: the cores
    assert check_processes("auto") == 1  # pytest is not `python -m monai.bundle`
    monkeypatch.setattr("bundle.inference.processes._main_is_bundle", lambda: True)
    monkeypatch.setattr("bundle.inference.processes.JOB_MEMORY", 1)  # this machine's memory is not the question
    assert check_processes("auto") == 8 and check_processes("auto", "0/2") == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert check_processes(" Auto ") == 1
