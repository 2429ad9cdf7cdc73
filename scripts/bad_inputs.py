# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Run the main job on deliberately bad inputs and print, as a Markdown table, the exit status and the exact line
each one gives the user (``docs/outputs.md``, "What a bad input gives").

    python -m scripts.bad_inputs --work /tmp/bad_inputs
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _run(datalist: Path | str, out: Path, *extra: str) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.yaml", "--datalist",
           str(datalist), "--output_dir", str(out), "--progress", "false", "--report", "false", *extra]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    return res.returncode, lines[-1] if lines else ""


def _demo_scan(work: Path) -> tuple[np.ndarray, np.ndarray]:
    from bundle.data.synth import demo_input

    data = json.loads(Path(demo_input(work / "demo")).read_text())
    img = nib.load(str(work / "demo" / data["testing"][0]["image"][0]))
    return np.asarray(img.dataobj, np.float32), img.affine


def subject_cases(work: Path, vol: np.ndarray, affine: np.ndarray) -> dict[str, str]:
    """One run over a folder holding a good scan and one bad file per case; the reasons of failed.csv."""
    folder = work / "subjects"
    folder.mkdir(parents=True, exist_ok=True)
    save = lambda name, arr: nib.save(nib.Nifti1Image(arr.astype(np.float32), affine), str(folder / name))  # noqa: E731
    save("good.nii.gz", vol)
    save("truncated.nii.gz", vol)
    whole = (folder / "truncated.nii.gz").read_bytes()
    (folder / "truncated.nii.gz").write_bytes(whole[: len(whole) // 2])
    save("zeros.nii.gz", np.zeros_like(vol))
    save("nomask.nii.gz", vol)
    save("nomask_brainmask.nii.gz", np.zeros_like(vol))
    nan = vol.copy()
    nan[0, 0, 0] = np.nan
    save("nan.nii.gz", nan)
    save("fourd.nii.gz", np.stack([vol, vol], -1))
    (folder / "notnifti.nii.gz").write_bytes(b"this is not a NIfTI file")
    code, last = _run(folder, work / "out_subjects")
    with open(work / "out_subjects" / "failed.csv", newline="") as f:
        reasons = {r["subject"]: r["reason"] for r in csv.DictReader(f)}
    reasons["(exit status, last line)"] = f"{code}: {last}"
    return reasons


def run_cases(work: Path, vol: np.ndarray, affine: np.ndarray) -> dict[str, tuple[int, str]]:
    """Inputs that stop the whole run before any subject: each one's exit status and last line."""
    out = {}
    out["datalist that does not exist"] = _run(work / "missing.json", work / "o1")
    (work / "empty").mkdir(exist_ok=True)
    out["folder without NIfTI files"] = _run(work / "empty", work / "o2")
    pair = work / "pair"
    pair.mkdir(exist_ok=True)
    nib.save(nib.Nifti1Image(vol, affine), str(pair / "sub.nii.gz"))
    nib.save(nib.Nifti1Image(vol, affine), str(pair / "sub.nii"))
    out["sub.nii beside sub.nii.gz"] = _run(pair, work / "o3")
    scan = str(work / "subjects" / "good.nii.gz")
    for name, testing in [("subject id ../../ESCAPED", [{"subject": "../../ESCAPED", "image": [scan]}]),
                          ("the same subject id twice", [{"subject": "s", "image": [scan]}] * 2),
                          ("testing split given as a dict", {"subject": "s", "image": [scan]})]:  # fmt: skip
        path = work / f"{name.split()[1]}.json"
        path.write_text(json.dumps({"modalities": ["swi"], "testing": testing}))
        out[name] = _run(path, work / "o4")
    shutil.rmtree(work / "o5", ignore_errors=True)
    good = work / "one"
    good.mkdir(exist_ok=True)
    shutil.copy(scan, good / "good.nii.gz")
    _run(good, work / "o5")
    out["a second run with another input into the same --output_dir"] = _run(work / "subjects", work / "o5")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True)
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    vol, affine = _demo_scan(work)
    print("| bad input | what the user sees |\n|---|---|")
    for subject, reason in subject_cases(work, vol, affine).items():
        print(f"| `{subject}` | `{reason}` |")
    for name, (code, line) in run_cases(work, vol, affine).items():
        print(f"| {name} | exit {code}: `{line}` |")


if __name__ == "__main__":
    main()
