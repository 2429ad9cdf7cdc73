# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The QC report: slices that show every detection, montages that record what they drew, the index page."""

from __future__ import annotations

import csv
import re

import nibabel as nib
import numpy as np
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from PIL import Image

from bundle.handlers import CountsWriter, DetectionsTableWriter, QCReport, choose_slices, subject_montage
from bundle.inference import TableDetections


def _row(n, i, j, k, score, label="cmb", subject="s"):
    return {"subject": subject, "lesion_id": n, "label": label, "score": score, "i": i, "j": j, "k": k,
            "diameter_mm": 3.0}  # fmt: skip


def test_choose_slices_covers_every_detection_best_first():
    rows = [_row(1, 5, 5, 10, 0.9), _row(2, 8, 8, 11, 0.5), _row(3, 9, 9, 30, 0.7), _row(4, 1, 1, 13, 0.95)]
    panels = choose_slices(rows, half_thickness=2)
    # slice 13 (id 4, the best) also shows id 2 (k 11); id 1 (k 10) is 3 slices away and gets its own panel
    assert [(k, sorted(r["lesion_id"] for r in rs)) for k, rs in panels] == [(10, [1]), (13, [2, 4]), (30, [3])]
    panels = choose_slices(rows, half_thickness=3)
    assert [(k, sorted(r["lesion_id"] for r in rs)) for k, rs in panels] == [(13, [1, 2, 4]), (30, [3])]
    assert len(choose_slices(rows, half_thickness=0, max_panels=2)) == 2


def test_montage_circles_every_detection_and_records_it(tmp_path):
    vol = np.full((40, 40, 20), 100.0, np.float32)
    nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "img.nii.gz")
    rows = [_row(1, 10, 10, 5, 0.9), _row(2, 30, 30, 15, 0.8, "lacune")]
    out = subject_montage(tmp_path / "img.nii.gz", rows, tmp_path / "r" / "s.png", "s", classes=("cmb", "lacune"))
    assert out["drawn"] == [1, 2] and out["not_shown"] == [] and out["panels"] == [5, 15]
    png = Image.open(tmp_path / "r" / "s.png")
    assert png.text["Subject"] == "s" and png.text["Detections"] == "1,2"
    rgb = np.asarray(png.convert("RGB")).astype(int)
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)  # cmb circles
    blue = (rgb[..., 2] > 200) & (rgb[..., 0] < 90)  # lacune circles
    assert red.sum() > 30 and blue.sum() > 30
    # no detections: three plain slices, nothing drawn
    out = subject_montage(tmp_path / "img.nii.gz", [], tmp_path / "r" / "e.png", "e", classes=("cmb",))
    assert out["drawn"] == [] and len(out["panels"]) == 3
    rgb = np.asarray(Image.open(tmp_path / "r" / "e.png").convert("RGB")).astype(int)
    assert not ((rgb[..., 0] > 200) & (rgb[..., 1] < 90)).any()


def test_report_handler_links_every_subject_and_detection(tmp_path):
    affine = np.eye(4)
    vol = np.random.default_rng(0).normal(100, 5, (24, 24, 16)).astype(np.float32)
    batches = []
    for s in ("a", "b/c"):
        path = tmp_path / f"{s.replace('/', '_')}_swi.nii.gz"
        nib.save(nib.Nifti1Image(vol, affine), path)
        image = MetaTensor(torch.zeros(1, 24, 24, 16), affine=affine, meta={"filename_or_obj": str(path)})
        batches.append({"image": image, "subject": s})
    tables = [torch.tensor([[4, 4, 4, 0.9, 0.5, 1], [20, 20, 12, 0.7, 0.4, 1]]), torch.zeros(0, 6)]
    table = DetectionsTableWriter(tmp_path / "run", TableDetections(label="cmb", threshold=0.5))
    report = QCReport(tmp_path / "run")

    def step(engine, n):
        engine.state.batch = [batches[n]]
        return [{"pred": tables[n]}]

    engine = Engine(step)
    table.attach(engine)
    CountsWriter(table).attach(engine)
    report.attach(engine)
    engine.run([0, 1], max_epochs=1)
    rows = list(csv.DictReader((tmp_path / "run" / "detections.csv").open()))
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    links = re.findall(r'href="([^"]+\.png)"', page)
    assert links == ["a.png", "b_c.png"]  # every subject, a safe file name for "b/c"
    assert "<td>b/c</td><td>0</td><td>0</td>" in page and "<td>a</td><td>2</td><td>2</td>" in page
    for link, subject in zip(links, ("a", "b/c")):
        png = Image.open(tmp_path / "run" / "report" / link)
        want = sorted(int(r["lesion_id"]) for r in rows if r["subject"] == subject)
        drawn = [int(v) for v in png.text["Detections"].split(",") if v]
        assert png.text["Subject"] == subject and drawn == want
    assert len(rows) == 2


def test_montage_outlines_the_brain_mask_and_regions(tmp_path):
    """The brain mask's and the regions' borders are drawn in their colours on every panel; none without them."""
    vol = np.full((40, 40, 20), 100.0, np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "img.nii.gz")
    mask = np.zeros(vol.shape, np.uint8)
    mask[4:36, 4:36] = 1
    groups = np.zeros(vol.shape, np.uint8)
    groups[10:20, 10:30], groups[20:30, 10:30] = 1, 2
    outlines = {"brain mask": (mask, "green"), "atlas regions": (groups, "orange")}

    def coloured(png, colour):
        r, g, b = np.moveaxis(np.asarray(Image.open(png).convert("RGB")).astype(int), -1, 0)
        green, orange = (g > 60) & (r < 40) & (b < 40), (r > 150) & (g > 80) & (g < 180) & (b < 40)
        return int((green if colour == "green" else orange).sum())

    subject_montage(tmp_path / "img.nii.gz", [_row(1, 10, 10, 5, 0.9)], tmp_path / "o.png", "s", ("cmb",),
                    outlines=outlines)  # fmt: skip
    subject_montage(tmp_path / "img.nii.gz", [_row(1, 10, 10, 5, 0.9)], tmp_path / "p.png", "s", ("cmb",))
    assert coloured(tmp_path / "o.png", "green") > 50 and coloured(tmp_path / "o.png", "orange") > 50
    assert coloured(tmp_path / "p.png", "green") == 0 == coloured(tmp_path / "p.png", "orange")


def test_a_montage_drawn_after_its_record_is_not_drawn_again(tmp_path):
    """A run resumed or merged after shards: the montage of a subject whose record is older than its PNG is kept
    (and the index still lists its detections); a subject written again (a newer record) is drawn again."""
    import json
    import os

    run = tmp_path / "run"
    (run / "subjects").mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(100, 5, (24, 24, 16)).astype(np.float32), np.eye(4)),
             tmp_path / "img.nii.gz")  # fmt: skip
    many = [_row(n + 1, 6, 6, n % 16, 0.9) for n in range(16)]  # 16 slices: 4 lesions beyond max_panels 3
    (run / "detections.csv").write_text("subject,lesion_id,label,score,i,j,k,diameter_mm\n" + "".join(
        f"{s},{r['lesion_id']},cmb,0.9,{r['i']},{r['j']},{r['k']},3\n" for s in ("a", "b") for r in many))  # fmt: skip
    (run / "counts.csv").write_text("subject,cmb,total\na,16,16\nb,16,16\n")
    for s in ("a", "b"):
        (run / "subjects" / f"{s}.json").write_text(json.dumps({"subject": s, "image": str(tmp_path / "img.nii.gz")}))
    report = QCReport(run, classes=("cmb",), max_panels=3)
    report._report(None)
    pngs = {s: run / "report" / f"{s}.png" for s in ("a", "b")}
    first = {s: p.stat().st_mtime_ns for s, p in pngs.items()}
    page = (run / "report" / "index.html").read_text()
    os.utime(run / "subjects" / "b.json", ns=(first["b"] + 10**9, first["b"] + 10**9))  # b written again
    report._report(None)
    assert pngs["a"].stat().st_mtime_ns == first["a"] and pngs["b"].stat().st_mtime_ns > first["b"]
    assert (run / "report" / "index.html").read_text() == page  # the same rows, counts and notes
    assert page.count("detection(s) not shown") == 2
