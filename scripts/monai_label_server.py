# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Serve the bundle with MONAI Label 0.8.5 from its own virtual environment, and check it end to end.

    python -m scripts.monai_label_server [--venv .venv-monailabel] [--work monai_label_work] [--port 8765]
        [--studies DIR] [--serve]

Steps (``docs/monai_label.md``):

1. The virtual environment: MONAI Label 0.8.5 needs numpy<2 and torch 2.14.1 / torchvision 0.29.1, which differ
   from this project's pins, so it gets its own (``--venv``), created with this Python and reused while its
   requirements (``REQUIREMENTS``) are unchanged.
2. The app: MONAI Label's own ``monaibundle`` sample app (installed with the package) copied to ``WORK/app``;
   the bundle itself is the release zip (:func:`scripts.package.package`) unpacked into ``WORK/app/model/``, as a
   user who downloaded it would have it.
3. The studies: ``--studies DIR`` (NIfTI volumes), or a simulated SWI subject of the demo (seed 13, no brain
   mask) with its microbleeds' positions kept aside for the check.
4. The server: ``monailabel start_server`` on 127.0.0.1, the bundle as model ``brain_mri_eso_detection``
   (a detection model to MONAI Label: its folder name contains "detection"), SAM and training off.
5. The check: one volume is uploaded to ``POST /infer/brain_mri_eso_detection?output=image``; the answer is a
   3D Slicer markups JSON of ROI boxes (LPS millimetres). The script prints each box, its distance to the
   nearest simulated microbleed, and fails (exit 1) when the answer is not a markups file, a box has no finite
   centre, or (demo study) no box lies within 5 mm of a microbleed. With ``--serve`` the server keeps running
   (Ctrl-C stops it) after the check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["REQUIREMENTS", "ensure_venv", "infer", "main", "prepare_app", "start_server"]

NAME = "brain_mri_eso_detection"
REQUIREMENTS = (
    "monailabel==0.8.5",
    "numpy<2",
    "torch==2.14.1",
    "torchvision==0.29.1",
    "pydicom<3",
    "pynetdicom<3",
    "dicomweb-client==0.59.1",
    "monai[fire]==1.6.*",
    "nibabel>=5",
    "SimpleITK>=2.3",
    "scipy>=1.10",
    "matplotlib>=3.7",
    "PyYAML>=6",
)
REPO = Path(__file__).resolve().parents[1]


def _log(msg: str) -> None:
    print(f"[monai_label_server] {msg}", flush=True)


def ensure_venv(venv: Path) -> Path:
    """Create (or reuse) the virtual environment with ``REQUIREMENTS``; return its ``bin`` folder."""
    bin_dir = venv / "bin"
    stamp = venv / ".eso_requirements"
    want = hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == want and (bin_dir / "monailabel").exists():
        _log(f"reusing the virtual environment {venv}")
        return bin_dir
    _log(f"creating the virtual environment {venv} (MONAI Label 0.8.5, torch 2.14.1; several minutes)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    stamp.write_text(want + "\n")
    return bin_dir


def prepare_app(bin_dir: Path, work: Path) -> Path:
    """Copy MONAI Label's ``monaibundle`` sample app to ``work/app`` and unpack this bundle's zip into its
    ``model/`` folder; return the app folder."""
    from scripts.package import package

    sample = bin_dir.parent / "monailabel" / "sample-apps" / "monaibundle"
    if not sample.is_dir():
        raise FileNotFoundError(f"MONAI Label's monaibundle sample app is not at {sample}")
    app = work / "app"
    if app.exists():
        shutil.rmtree(app)
    shutil.copytree(sample, app)
    zip_path = package(work / "dist", REPO)
    (app / "model").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(app / "model")
    _log(f"app {app}, bundle {zip_path.name} unpacked into {app / 'model' / NAME}")
    return app


def demo_study(work: Path) -> tuple[Path, Path, np.ndarray]:
    """One simulated SWI volume (the demo's sub-0001, without its brain mask) in ``work/studies``; returns the
    studies folder, the volume and its microbleeds' centres (RAS mm)."""
    from bundle.data.synth import demo_input

    sub = Path(demo_input(work / "demo", n=2, seed=13)).parent / "sub-0001"  # demo_input gives its input.json
    studies = work / "studies"
    studies.mkdir(parents=True, exist_ok=True)
    image = studies / "sub-0001_swi.nii.gz"
    shutil.copyfile(sub / "sub-0001_swi.nii.gz", image)
    lesions = json.loads((sub / "sub-0001_lesions.json").read_text())
    return studies, image, np.array([x["centre_mm"] for x in lesions if x["class"] == "cmb"], float).reshape(-1, 3)


def start_server(bin_dir: Path, app: Path, studies: Path, port: int, log: Path) -> subprocess.Popen:
    """Start ``monailabel start_server`` and wait until ``/info/`` answers (at most 10 minutes)."""
    cmd = [str(bin_dir / "monailabel"), "start_server", "--app", str(app), "--studies", str(studies),
           "--host", "127.0.0.1", "--port", str(port), "--conf", "models", NAME, "--conf", "zoo_source", "ngc",
           "--conf", "sam2", "false", "--conf", "skip_trainers", "true"]  # fmt: skip
    _log(" ".join(cmd))
    out = log.open("w")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(app.parent))
    t0 = time.time()
    while time.time() - t0 < 600:
        if proc.poll() is not None:
            raise RuntimeError(f"the MONAI Label server stopped (exit {proc.returncode}); see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/info/", timeout=5) as r:
                info = json.loads(r.read())
            _log(f"server up after {time.time() - t0:.0f} s; models: {sorted(info.get('models', {}))}")
            return proc
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(3)
    proc.terminate()
    raise TimeoutError(f"the MONAI Label server did not answer within 600 s; see {log}")


def infer(port: int, image: Path, model: str = NAME, timeout: float = 900) -> dict:
    """Upload ``image`` to ``POST /infer/<model>?output=image``; return the markups JSON it answers."""
    boundary = uuid.uuid4().hex
    params = json.dumps({"device": "cpu"})
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="params"\r\n\r\n{params}\r\n'.encode(),
        (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{image.name}"\r\n'
         "Content-Type: application/octet-stream\r\n\r\n").encode() + image.read_bytes() + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]  # fmt: skip
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/infer/{model}?output=image",
        data=b"".join(parts),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(
            f"POST /infer/{model} failed: HTTP {e.code} {e.read()[:300]!r} (the server log says why)"
        ) from e
    try:
        return json.loads(body)
    except ValueError as e:
        raise ValueError(f"the infer endpoint did not answer a JSON markups file: {body[:200]!r}") from e


def check(markups: dict, truth: np.ndarray | None) -> list[str]:
    """Print the boxes; return the problems found (empty: the answer is right)."""
    problems = []
    items = markups.get("markups")
    if not isinstance(items, list):
        return [f"no 'markups' list in the answer: keys {sorted(markups)}"]
    _log(f"{len(items)} box(es) in the answer (coordinate system {items[0]['coordinateSystem'] if items else '-'})")
    near = 0
    for n, m in enumerate(items, 1):
        centre, size = np.asarray(m.get("center", []), float), np.asarray(m.get("size", []), float)
        if centre.shape != (3,) or not np.all(np.isfinite(centre)):
            problems.append(f"box {n}: centre {m.get('center')} is not three finite numbers")
            continue
        line = f"  box {n}: label {m.get('label', {}).get('value')}, centre LPS {np.round(centre, 1).tolist()} mm, "
        line += f"side {np.round(size, 1).tolist()} mm"
        if truth is not None and len(truth):
            d = float(np.linalg.norm(truth * [-1, -1, 1] - centre, axis=1).min())  # truth is RAS
            near += d <= 5.0
            line += f", nearest simulated microbleed {d:.1f} mm"
        print(line, flush=True)
    if truth is not None:
        _log(f"{near} of {len(items)} boxes within 5 mm of one of the {len(truth)} simulated microbleeds")
        if near == 0:
            problems.append("no box lies within 5 mm of a simulated microbleed")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--venv", default=".venv-monailabel", help="MONAI Label's virtual environment (made if missing)")
    p.add_argument("--work", default="monai_label_work", help="app, studies and logs go here")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--studies", default=None, help="a folder of NIfTI volumes (default: one simulated SWI scan)")
    p.add_argument("--serve", action="store_true", help="keep the server running after the check")
    a = p.parse_args(argv)
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    bin_dir = ensure_venv(Path(a.venv).resolve())
    app = prepare_app(bin_dir, work)
    if a.studies:
        studies = Path(a.studies).resolve()
        images = sorted(studies.glob("*.nii*"))
        if not images:
            raise FileNotFoundError(f"--studies {studies}: no NIfTI volume (*.nii, *.nii.gz) in it")
        image, truth = images[0], None
    else:
        studies, image, truth = demo_study(work)
    proc = start_server(bin_dir, app, studies, a.port, work / "server.log")
    try:
        t1 = time.time()
        try:
            markups = infer(a.port, image)
        except RuntimeError as e:
            raise RuntimeError(f"{e}; server log: {work / 'server.log'}") from e
        _log(f"POST /infer/{NAME}?output=image with {image.name}: answered in {time.time() - t1:.1f} s")
        (work / "answer.json").write_text(json.dumps(markups, indent=1))
        problems = check(markups, truth)
        for msg in problems:
            _log(f"PROBLEM: {msg}")
        _log(f"{'FAILED' if problems else 'OK'}: total {time.time() - t0:.0f} s; answer in {work / 'answer.json'}")
        if a.serve and not problems:
            _log(f"serving on http://127.0.0.1:{a.port} (Ctrl-C stops it)")
            proc.wait()
        return 1 if problems else 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
