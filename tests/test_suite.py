# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The suite's own machinery (tests/conftest.py, docs/testing.md): a shared fixture is made once for all pytest-xdist
workers and again after a failure, the long files are handed out first, and each worker gets its share of the
cores."""

from __future__ import annotations

import os
import threading
import time
from types import SimpleNamespace

import conftest
import pytest


def _factory(base):
    return SimpleNamespace(getbasetemp=lambda: base)


def test_a_shared_value_is_made_once_for_every_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    made, values = [], []

    def make(folder):
        made.append(folder)
        time.sleep(0.3)  # the other worker asks meanwhile
        (folder / "data.txt").write_text("x")
        return [str(folder), {"n": 1}]

    workers = [threading.Thread(target=lambda w=w: values.append(conftest.shared(_factory(tmp_path / w), "c", make)))
               for w in ("popen-gw0", "popen-gw1")]  # fmt: skip
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert made == [tmp_path / "c"] and values == [[str(tmp_path / "c"), {"n": 1}]] * 2
    assert (tmp_path / "c" / "data.txt").read_text() == "x"


def test_a_shared_value_whose_making_failed_is_made_again(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # one process: the session's own folder

    def fail(folder):
        (folder / "half.txt").write_text("")
        raise RuntimeError("simulator failed")

    with pytest.raises(RuntimeError, match="simulator failed"):
        conftest.shared(_factory(tmp_path), "c", fail)
    assert conftest.shared(_factory(tmp_path), "c", lambda folder: sorted(os.listdir(folder))) == []
    assert conftest.shared(_factory(tmp_path), "c", lambda folder: "not made again") == []


def test_the_long_files_run_first_in_their_order_and_the_others_as_collected():
    names = ["tests/a/test_x.py::t1", f"{conftest.FIRST[2]}::t", "tests/b/test_y.py::t", f"{conftest.FIRST[0]}::t1",
             "tests/a/test_x.py::t2", f"{conftest.FIRST[0]}::t2"]  # fmt: skip
    items = [SimpleNamespace(nodeid=n) for n in names]
    conftest.pytest_collection_modifyitems(items)
    assert [i.nodeid for i in items] == [f"{conftest.FIRST[0]}::t1", f"{conftest.FIRST[0]}::t2",
                                         f"{conftest.FIRST[2]}::t", "tests/a/test_x.py::t1", "tests/b/test_y.py::t",
                                         "tests/a/test_x.py::t2"]  # fmt: skip


def test_every_first_file_exists():
    assert [f for f in conftest.FIRST if not (conftest.REPO / f).is_file()] == []


def test_a_worker_uses_its_share_of_the_cores():
    import torch

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers == 1:
        pytest.skip("one process: the libraries' own thread counts")
    share = str(max(1, conftest.cores() // workers))
    assert all(name in os.environ for name in conftest.THREADS)  # the user's setting, else the share
    assert conftest.SHARED_THREADS == {n: share for n in conftest.THREADS if n in conftest.SHARED_THREADS}
    assert torch.get_num_threads() == int(os.environ["OMP_NUM_THREADS"])
