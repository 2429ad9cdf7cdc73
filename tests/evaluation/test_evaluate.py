# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The evaluation command on a simulated cohort: tables and predicted maps, metrics.json and froc.png."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from bundle.data import DatalistError, load_datalist
from bundle.evaluation import main as evaluate_main
from bundle.inference import detection_rows, write_detections
from bundle.metrics import objects_from_instances, objects_from_map


@pytest.fixture(scope="module")
def entries(coarse_cohort):
    return load_datalist(coarse_cohort, "training")


def _table_from_labels(entries, path, drop_first=False, extra_fp=False):
    rows = []
    for e in entries:
        img = nib.load(e["label"])
        objs = objects_from_instances(np.asarray(img.dataobj).astype(np.int64), img.header.get_zooms())
        subject_rows = detection_rows(e["subject"], objs, img.affine)
        rows += subject_rows[1:] if drop_first else subject_rows
        if extra_fp:
            rows.append({**subject_rows[0], "lesion_id": 999, "i": 1.0, "j": 1.0, "k": 1.0, "score": 0.3})
    return write_detections(rows, path)


def _evaluate_table(datalist, table, out) -> int:
    return evaluate_main(["--datalist", str(datalist), "--split", "training", "--detections", str(table),
                          "--output_dir", str(out)])  # fmt: skip


def test_perfect_table_and_imperfect_table(coarse_cohort, entries, tmp_path, capsys):
    n_ref = sum(e["count"] for e in entries)
    table = _table_from_labels(entries, tmp_path / "perfect.csv")
    assert _evaluate_table(coarse_cohort, table, tmp_path / "a") == 0
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["pooled"]["tp"] == n_ref and m["pooled"]["fp"] == 0 and m["pooled"]["sensitivity"] == 1.0
    assert m["settings"]["rule"] == "distance_mm" and len(m["per_scan"]) == 2
    assert all(s["sensitivity"] == 1.0 and s["precision"] == 1.0 and s["f1"] == 1.0 for s in m["per_scan"])
    assert (tmp_path / "a" / "froc.png").read_bytes()[:4] == b"\x89PNG"
    assert "sensitivity 1.000" in capsys.readouterr().out
    table = _table_from_labels(entries, tmp_path / "worse.csv", drop_first=True, extra_fp=True)
    assert _evaluate_table(coarse_cohort, table, tmp_path / "b") == 0
    p = json.loads((tmp_path / "b" / "metrics.json").read_text())["pooled"]
    assert p["fn"] == 2 and p["fp"] == 2 and p["fp_per_scan"] == 1.0
    assert p["sensitivity"] == pytest.approx((n_ref - 2) / n_ref)


def test_predicted_maps(coarse_cohort, entries, tmp_path):
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    for e in entries:
        img = nib.load(e["label"])
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine), str(pred_dir / f"{e['subject']}_pred.nii.gz"))
    args = ["--datalist", str(coarse_cohort), "--split", "training", "--predictions", str(pred_dir)]
    assert evaluate_main([*args, "--instances", "--output_dir", str(tmp_path / "o")]) == 0
    p = json.loads((tmp_path / "o" / "metrics.json").read_text())["pooled"]
    assert p["sensitivity"] == 1.0 and p["fp"] == 0 and p["icc_2_1"] == pytest.approx(1.0)
    # as binary maps: objects are the 26-connected components (thin objects may split, touching ones merge)
    assert evaluate_main([*args, "--output_dir", str(tmp_path / "o2")]) == 0
    p2 = json.loads((tmp_path / "o2" / "metrics.json").read_text())["pooled"]
    components = sum(len(objects_from_map(np.asarray(nib.load(e["label"]).dataobj) > 0)) for e in entries)
    assert p2["tp"] + p2["fp"] == components and p2["tp"] <= p["tp"]


def test_errors(coarse_cohort, entries, tmp_path, capsys):
    table = _table_from_labels(entries, tmp_path / "t.csv")
    base = ["--datalist", str(coarse_cohort), "--split", "training", "--output_dir", str(tmp_path / "e")]
    assert evaluate_main([*base, "--detections", str(table), "--rule", "overlap"]) == 1
    assert "a detections table has no object masks" in capsys.readouterr().err
    assert evaluate_main([*base, "--predictions", str(tmp_path / "none")]) == 1
    assert "sub-0000: no predicted map" in capsys.readouterr().err
    (tmp_path / "x.csv").write_text("subject,score,i,j,k\nsub-9999,0.5,1,1,1\n")
    assert evaluate_main([*base, "--detections", str(tmp_path / "x.csv")]) == 1
    assert "has subjects ['sub-9999'] that are not in the training list" in capsys.readouterr().err
    assert issubclass(DatalistError, ValueError)


def test_operating_threshold_and_subject_restriction(coarse_cohort, entries, tmp_path):
    """Rows below --score_threshold are not detections but still feed the FROC curve; subjects= picks a fold."""
    from bundle.evaluation import evaluate

    n_ref = sum(e["count"] for e in entries)
    table = _table_from_labels(entries, tmp_path / "t.csv", extra_fp=True)  # extra FP per scan, score 0.3
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:  # the first true object of each scan gets a low score: below the operating point
        if r["lesion_id"] == "1":
            r["score"] = "0.2"
    write_detections(rows, table)
    full = evaluate(coarse_cohort, str(tmp_path / "all"), "training", str(table))
    op = evaluate(coarse_cohort, str(tmp_path / "op"), "training", str(table), score_threshold=0.5)
    assert full["pooled"]["tp"] == n_ref and full["pooled"]["fp"] == 2
    assert op["pooled"]["tp"] == n_ref - 2 and op["pooled"]["fp"] == 0 and op["settings"]["score_threshold"] == 0.5
    assert op["pooled"]["froc"] == full["pooled"]["froc"] and op["pooled"]["cpm"] == full["pooled"]["cpm"]
    assert max(op["pooled"]["froc"]["sensitivity"]) == 1.0  # the curve still reaches the low-scored objects
    one = entries[1]["subject"]
    part = evaluate(coarse_cohort, str(tmp_path / "one"), "training", str(table), subjects=[one])
    assert part["settings"]["subjects"] == [one] and part["pooled"]["scans"] == 1
    assert part["pooled"]["tp"] + part["pooled"]["fn"] == entries[1]["count"]
    with pytest.raises(ValueError, match="not in the training list"):
        evaluate(coarse_cohort, str(tmp_path / "x"), "training", str(table), subjects=["sub-9999"])


def _binary_cohort(tmp_path, n_lesions=(5, 3)):
    """Two scans with VALDO-style 0/1 masks (no lesion file): ``n`` separate 2 x 2 x 2 cubes each."""
    entries = []
    for s, n in enumerate(n_lesions):
        mask = np.zeros((40, 40, 20), np.uint8)
        for k in range(n):
            mask[4 + 7 * k : 6 + 7 * k, 10:12, 8:10] = 1
        affine = np.diag([0.5, 0.5, 2.0, 1.0])
        path = tmp_path / f"sub-{s}_label.nii.gz"
        nib.save(nib.Nifti1Image(mask, affine), str(path))
        entries.append({"subject": f"sub-{s}", "image": [str(path)], "label": str(path)})
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"modalities": ["swi"], "classes": ["cmb"], "testing": entries}))
    return datalist, entries


def test_binary_label_masks_are_split_into_components(tmp_path, capsys):
    """A 0/1 label mask is one lesion per connected component (it used to be one lesion per scan), by default and
    with --label_format binary; --label_format instances reads it as one lesion; metrics.json says which."""
    from bundle.metrics import connected_components

    datalist, entries = _binary_cohort(tmp_path)
    rows = []
    for e in entries:
        img = nib.load(e["label"])
        comps = connected_components(np.asarray(img.dataobj))
        rows += detection_rows(e["subject"], objects_from_instances(comps, img.header.get_zooms()), img.affine)
    table = write_detections(rows, tmp_path / "det.csv")
    base = ["--datalist", str(datalist), "--detections", str(table)]
    for fmt in ("auto", "binary"):
        assert evaluate_main([*base, "--output_dir", str(tmp_path / fmt), "--label_format", fmt]) == 0
        m = json.loads((tmp_path / fmt / "metrics.json").read_text())
        assert m["pooled"]["tp"] == 8 and m["pooled"]["fn"] == 0 and m["pooled"]["fp"] == 0
        assert [s["label_read_as"] for s in m["per_scan"]] == ["binary", "binary"]
        assert m["settings"]["label_format"] == fmt and m["settings"]["connectivity"] == 26
    assert evaluate_main([*base, "--output_dir", str(tmp_path / "inst"), "--label_format", "instances"]) == 0
    m = json.loads((tmp_path / "inst" / "metrics.json").read_text())
    assert [s["n_ref"] for s in m["per_scan"]] == [1, 1] and m["per_scan"][0]["label_read_as"] == "instances"
    # a predicted 0/1 map given as an instance map is refused, naming the subject, the file and the option
    pred = tmp_path / "pred"
    pred.mkdir()
    for e in entries:
        (pred / f"{e['subject']}.nii.gz").write_bytes(open(e["label"], "rb").read())
    args = ["--datalist", str(datalist), "--predictions", str(pred), "--output_dir", str(tmp_path / "p")]
    assert evaluate_main([*args, "--instances"]) == 1
    err = capsys.readouterr().err
    assert "sub-0: prediction" in err and "sub-0.nii.gz" in err and "without --instances" in err
    assert evaluate_main(args) == 0
    assert json.loads((tmp_path / "p" / "metrics.json").read_text())["pooled"]["tp"] == 8
    for e in entries:  # a probability map given as an instance map is refused too
        img = nib.load(e["label"])
        prob = nib.Nifti1Image(np.asarray(img.dataobj) * np.float32(0.7), img.affine)
        nib.save(prob, str(pred / f"{e['subject']}.nii.gz"))
    assert evaluate_main([*args, "--instances"]) == 1 and "non-integer values" in capsys.readouterr().err


def test_label_instances_reads_ids_components_and_connectivity():
    from bundle.metrics import label_instances

    lab = np.zeros((8, 8, 8), np.int16)
    lab[1, 1, 1] = lab[2, 2, 2] = 1  # touching at a corner only
    lab[6, 6, 6] = 1
    inst, how = label_instances(lab)
    assert how == "binary" and inst.max() == 2  # 26-connected: the corner pair is one lesion
    inst, how = label_instances(lab, connectivity=6)
    assert how == "binary" and inst.max() == 3
    assert label_instances(lab, known_ids=True)[1] == "instances"  # a lesion file lists id 1: one lesion
    assert label_instances(lab, "instances")[0].max() == 1
    lab[6, 6, 6] = 2  # several ids: an instance map, read as is
    inst, how = label_instances(lab)
    assert how == "instances" and np.array_equal(inst, lab)
    single = np.zeros((8, 8, 8), np.uint8)
    single[3:5, 3:5, 3:5] = 1
    assert label_instances(single)[1] == "instances"  # one component reads the same either way
    assert label_instances(single, "binary")[0].max() == 1
    with pytest.raises(ValueError, match="label_format"):
        label_instances(lab, "masks")
    soft = np.zeros((10, 10, 10), np.float32)  # VALDO's rater-disagreement masks: 0, 0.5 and 1
    soft[1, 1, 1] = soft[5, 5, 5] = 1.0
    soft[8, 8, 8] = 0.5
    inst, how = label_instances(soft)
    assert how == "binary" and inst.max() == 3 and inst[8, 8, 8] > 0  # (the 0.5 lesion used to vanish)
    with pytest.raises(ValueError, match="integer ids"):
        label_instances(soft, "instances")
    corner = np.zeros((4, 4, 4), np.uint8)
    corner[1, 1, 1] = corner[1, 2, 2] = 1  # one object joined at an edge: one lesion whatever --connectivity
    inst, how = label_instances(corner, connectivity=6)
    assert how == "instances" and inst.max() == 1
