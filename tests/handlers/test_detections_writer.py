# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""The writers of ``bundle.handlers.writers`` with the readers of each kind of output: GP-Unet's instance map scored
by a map (rows, counts, maps on the map's own grid), the two-stage detector's table (rows, the probability and
instance maps, counts of every subject), counts per class."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from bundle.handlers import CountsWriter, DetectionsTableWriter, InstanceMapWriter, MapWriter, Writers
from bundle.inference import ComponentInstances, OutputMap, TableDetections
from bundle.methods.gpunet import CountPredictionsWriter, InstanceDetections


def _attach(writers, engine):
    for w in writers:
        w.attach(engine)


def test_instances_format_writes_rows_counts_and_maps(tmp_path):
    affine = np.array([[2.0, 0, 0, -10], [0, 2.0, 0, 5], [0, 0, 3.0, 1], [0, 0, 0, 1]])
    inst = torch.zeros(1, 8, 8, 6, dtype=torch.int32)
    inst[0, 1:3, 1, 1] = 1
    inst[0, 5, 5, 4] = 2
    heat = torch.rand(1, 8, 8, 6)
    heat[0, 2, 1, 1] = 5.0
    out = {"pred": MetaTensor(inst, affine=torch.as_tensor(affine)), "net_heatmap": MetaTensor(heat, affine=affine),
           "net_count": torch.tensor([2.3]), "pred_n_objects": 2, "pred_threshold": 0.7}  # fmt: skip
    batch = {"image": MetaTensor(torch.zeros(1, 4, 4, 4)), "subject": "s1"}  # the cropped grid: not used
    detections = InstanceDetections(label="epvs")
    table = DetectionsTableWriter(tmp_path, detections)
    writer = [
        table,
        CountsWriter(table),
        InstanceMapWriter(tmp_path, OutputMap("pred", grid="own")),
        MapWriter(tmp_path, OutputMap("net_heatmap", grid="own"), name="heatmap"),
        CountPredictionsWriter(tmp_path, detections),
    ]

    def step(engine, _):
        engine.state.batch = [batch]  # decollated, as after MONAI's evaluator
        return [out]

    engine = Engine(step)
    _attach(writer, engine)
    engine.run([0], max_epochs=1)
    rows = list(csv.DictReader((tmp_path / "detections.csv").open()))
    assert [r["lesion_id"] for r in rows] == ["1", "2"] and {r["label"] for r in rows} == {"epvs"}
    assert float(rows[0]["score"]) == pytest.approx(5.0)  # the map's maximum over the object, not thresholded
    assert float(rows[1]["score"]) == pytest.approx(float(heat[0, 5, 5, 4]))
    assert [float(rows[0][c]) for c in "ijk"] == [1.5, 1.0, 1.0]
    assert [float(rows[0][c]) for c in "xyz"] == [-7.0, 7.0, 4.0]  # the map's affine
    counts = list(csv.DictReader((tmp_path / "count_predictions.csv").open()))
    assert counts == [
        {"subject": "s1", "predicted_count": "2.3", "count_used": "2", "detected": "2", "threshold": "0.7"}
    ]
    for name in ("s1_objects.nii.gz", "s1_heatmap.nii.gz"):
        img = nib.load(tmp_path / "maps" / name)
        assert img.shape == (8, 8, 6) and np.allclose(img.affine, affine)
    assert np.array_equal(np.asarray(nib.load(tmp_path / "maps" / "s1_objects.nii.gz").dataobj), inst[0].numpy())


def _run(writer, batches, outputs):
    def step(engine, n):
        engine.state.batch = [batches[n]]
        return [outputs[n]]

    engine = Engine(step)
    _attach(writer if isinstance(writer, list) else [writer], engine)
    engine.run(list(range(len(batches))), max_epochs=1)


def test_table_format_writes_prob_and_instance_maps_and_counts_for_every_subject(tmp_path):
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    prob = torch.zeros(1, 12, 12, 8)
    prob[0, 2:4, 2, 2] = 0.6  # candidate 1: a two-voxel component, peak (2, 2, 2)
    prob[0, 8, 8, 5] = 0.9  # candidate 2: one voxel
    prob[0, 6, 1, 1] = 0.3  # candidate 3: rejected by stage 2 (score below 0.5), so not in the instance map
    table = torch.tensor(
        [[2, 2, 2, 0.8, 0.6, 2], [8, 8, 5, 0.95, 0.9, 1], [6, 1, 1, 0.1, 0.3, 1], [np.nan] * 6], dtype=torch.float32
    )
    image = MetaTensor(torch.zeros(1, 12, 12, 8), affine=torch.as_tensor(affine))
    batches = [{"image": image, "subject": "a"}, {"image": image, "subject": "b"}]
    outputs = [{"pred": table, "net_prob": prob}, {"pred": torch.zeros(0, 6), "net_prob": torch.zeros(1, 12, 12, 8)}]
    detections = TableDetections(label="cmb", threshold=0.5)
    table = DetectionsTableWriter(tmp_path, detections)
    prob_map = OutputMap("net_prob", grid="input")
    writer = [
        table,
        CountsWriter(table),
        MapWriter(tmp_path, prob_map),
        InstanceMapWriter(tmp_path, ComponentInstances(detections, prob_map, threshold=0.2)),
    ]
    _run(writer, batches, outputs)
    rows = list(csv.DictReader((tmp_path / "detections.csv").open()))
    assert [(r["subject"], r["lesion_id"]) for r in rows] == [("a", "1"), ("a", "2")]
    assert [float(r["score"]) for r in rows] == pytest.approx([0.8, 0.95])
    inst = np.asarray(nib.load(tmp_path / "maps" / "a_objects.nii.gz").dataobj)
    assert inst.dtype == np.int16 and inst.shape == (12, 12, 8)
    assert set(zip(*np.nonzero(inst == 1))) == {(2, 2, 2), (3, 2, 2)} and list(zip(*np.nonzero(inst == 2))) == [
        (8, 8, 5)
    ]
    assert inst.max() == 2  # the rejected candidate is not drawn
    p = nib.load(tmp_path / "maps" / "a_prob.nii.gz")
    assert np.allclose(p.affine, affine) and np.allclose(np.asarray(p.dataobj), prob[0].numpy())
    assert np.asarray(nib.load(tmp_path / "maps" / "b_objects.nii.gz").dataobj).max() == 0
    counts = list(csv.reader((tmp_path / "counts.csv").open()))
    assert counts == [["subject", "cmb", "total"], ["a", "2", "2"], ["b", "0", "0"]]


def test_counts_per_class_and_unknown_class(tmp_path):
    from bundle.handlers import write_counts

    rows = [{"subject": "s", "label": "epvs"}, {"subject": "s", "label": "lacune"}, {"subject": "t", "label": "epvs"}]
    write_counts(rows, ["s", "t", "u"], tmp_path / "c.csv", ["lacune", "epvs"])
    got = list(csv.reader((tmp_path / "c.csv").open()))
    assert got == [
        ["subject", "lacune", "epvs", "total"],
        ["s", "1", "1", "2"],
        ["t", "0", "1", "1"],
        ["u", "0", "0", "0"],
    ]
    with pytest.raises(ValueError, match="class 'cmb' in subject 's'"):
        write_counts([{"subject": "s", "label": "cmb"}], ["s"], tmp_path / "d.csv", ["epvs"])
    assert not (tmp_path / "d.csv").exists()


def test_counts_of_class_agnostic_detections(tmp_path):
    from bundle.handlers import write_counts

    write_counts([{"subject": "s", "label": ""}], ["s", "t"], tmp_path / "c.csv", [""])
    assert list(csv.reader((tmp_path / "c.csv").open())) == [
        ["subject", "objects", "total"],
        ["s", "1", "1"],
        ["t", "0", "0"],
    ]
    table = DetectionsTableWriter(tmp_path, TableDetections())  # no label: its counts column is "objects"
    table.rows = [{"subject": "s", "label": ""}, {"subject": "s", "label": "epvs"}]
    assert CountsWriter(table).columns() == ("objects", "epvs")


def test_a_reader_shared_by_writers_computes_once_per_subject_and_names_missing_outputs(tmp_path):
    class Counting(TableDetections):
        calls: list = []

        def compute(self, subject, image, output):
            self.calls.append(subject)
            return super().compute(subject, image, output)

    image = MetaTensor(torch.zeros(1, 6, 6, 6), affine=torch.eye(4))
    table_t = torch.tensor([[2, 2, 2, 0.9, 0.8, 1]], dtype=torch.float32)
    prob = torch.zeros(1, 6, 6, 6)
    prob[0, 2, 2, 2] = 0.8
    detections = Counting(threshold=0.5, label="cmb")
    table = DetectionsTableWriter(tmp_path, detections)
    instances = ComponentInstances(detections, OutputMap("net_prob"), threshold=0.2)
    writers = Writers([table, CountsWriter(table), InstanceMapWriter(tmp_path, instances)])
    batches = [{"image": image, "subject": s} for s in ("a", "b")]
    _run(writers, batches, [{"pred": table_t, "net_prob": prob}, {"pred": table_t, "net_prob": prob}])
    assert detections.calls == ["a", "b"]  # the table and the instance map shared one computation per subject
    for s in ("a", "b"):
        inst = np.asarray(nib.load(tmp_path / "maps" / f"{s}_objects.nii.gz").dataobj)
        assert list(zip(*np.nonzero(inst))) == [(2, 2, 2)] and inst[2, 2, 2] == 1
    missing = MapWriter(tmp_path / "other", OutputMap("net_prob"))
    with pytest.raises(KeyError, match="subject 'c': the network output has no 'net_prob'"):
        _run(missing, [{"image": image, "subject": "c"}], [{"pred": table_t}])
    too_many = np.full((6, 6, 6), 40000)
    with pytest.raises(ValueError, match="subject 'd': instance ids 40000..40000 do not fit int16"):
        InstanceMapWriter(tmp_path, lambda *a: (too_many, np.eye(4))).write_subject("d", image, {})


def test_the_template_map_file_is_the_subjects_map_or_none(tmp_path):
    """maps/<subject>_template.json holds the map TemplateMapd put in the image's metadata and is listed in the
    subject's record (a rerun checks it); a subject without a map leaves none, not even an earlier run's."""
    import json

    from bundle.handlers import TemplateMapWriter

    tmap = {"affine": np.eye(4).tolist(), "bspline": None, "image": "t1.nii.gz"}
    image = MetaTensor(torch.zeros(1, 2, 2, 2))
    image.meta["template_map"] = json.dumps(tmap)
    writer = TemplateMapWriter(tmp_path)
    assert writer.record("s1", {"image": image}, {}) == {"subject": "s1", "files": ["maps/s1_template.json"]}
    assert json.loads((tmp_path / "maps" / "s1_template.json").read_text()) == tmap
    (tmp_path / "maps" / "s2_template.json").write_text("{}")  # an earlier run's
    assert writer.record("s2", {"image": MetaTensor(torch.zeros(1, 2, 2, 2))}, {}) == {"subject": "s2"}
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["s1_template.json"]
