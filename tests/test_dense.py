"""Dense task kinds (boxes, mask): mAP and IoU math on hand-made cases, target maps that decode back to their boxes,
and one tiny canvas run (demo/canvas, real digits and recordings) trained, exported to int8 TFLite and answered by the
runtime."""
import json

import numpy as np
import pytest

from conftest import REPO, set_args
from edgemtl import kinds
from edgemtl.kinds.boxes import (
    average_precision,
    decode,
    encode_targets,
    iou_matrix,
    mean_average_precision,
    parse_boxes,
)
from edgemtl.kinds.mask import class_iou, confusion

CANVAS_RECIPE = REPO / "recipes" / "canvas.yaml"
CANVAS = REPO / "demo" / "canvas" / "canvas.csv"


def test_iou_of_hand_made_boxes():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]])
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1.0, 50 / 150, 0.0, 25 / 100])


def test_average_precision_counts_misses_duplicates_and_order():
    truth = [np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [20, 20, 30, 30]])]
    perfect = [np.array([[0, 0, 10, 10, 0.9]]), np.array([[0, 0, 10, 10, 0.8], [20, 20, 30, 30, 0.7]])]
    assert average_precision(truth, perfect, 0.5) == pytest.approx(1.0)
    # one box missed: recall reaches 2/3 at precision 1
    assert average_precision(truth, perfect[:1] + [perfect[1][:1]], 0.5) == pytest.approx(2 / 3)
    # a duplicate of a found box is a false positive; ranked above the last true box, it costs precision there
    dup = [perfect[0], np.array([[0, 0, 10, 10, 0.8], [1, 0, 10, 10, 0.75], [20, 20, 30, 30, 0.7]])]
    assert average_precision(truth, dup, 0.5) == pytest.approx(2 / 3 + 1 / 3 * 3 / 4)
    # a shifted box counts at IoU 0.5 but not at 0.75
    shifted = [np.array([[2, 0, 12, 10, 0.9]]), perfect[1]]  # IoU 8*10 / 12*10 = 0.667
    assert average_precision(truth, shifted, 0.5) == pytest.approx(1.0)
    assert average_precision(truth, shifted, 0.75) < 1.0
    assert average_precision([np.zeros((0, 4))], [np.array([[0, 0, 1, 1, 0.5]])], 0.5) is None


def test_map_averages_the_classes_that_have_truth():
    truth = [np.array([[0, 0, 10, 10, 0], [20, 20, 30, 30, 1]])]
    found = [np.array([[0, 0, 10, 10, 0, 0.9], [20, 20, 30, 30, 0, 0.8]])]  # the second box: right place, wrong class
    assert mean_average_precision(truth, found, 3, 0.5) == pytest.approx(0.5)  # class 0: 1.0, class 1: 0.0


def test_target_maps_decode_back_to_their_boxes():
    boxes = np.array([[3.2, 4.0, 9.7, 12.5, 2], [14.0, 1.0, 20.0, 6.0, 0], [0, 0, 0, 0, -1]])
    target = encode_targets(boxes, (24, 24), 3)
    assert target[..., :3].max() == 1.0 and (target[..., :3] == 1.0).sum() == 2
    found = decode(target, 3, top_k=10, min_score=0.5)
    assert len(found) == 2
    order = np.argsort(found[:, 4])
    np.testing.assert_allclose(found[order, :5], boxes[[1, 0], :5], atol=1e-5)


def test_boxes_labels_parse_and_refuse_bad_cells(tmp_path):
    path = tmp_path / "b.json"
    path.write_text("[[1, 2, 3, 4, 7]]")
    assert parse_boxes(str(path)) == [[1.0, 2.0, 3.0, 4.0, "7"]] == parse_boxes("[[1, 2, 3, 4, 7]]")
    from edgemtl.errors import EdgemtlError
    for bad in ("[[1, 2, 3]]", "[[5, 2, 3, 4, 1]]", "not json", str(tmp_path / "missing.json")):
        with pytest.raises(EdgemtlError):
            parse_boxes(bad, "row 3")


def test_mask_iou_on_a_hand_made_map():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, -1, -1]])
    pred = np.array([[0, 0, 1, 0], [0, 0, 1, 1], [2, 0, 1, 1]])
    iou = class_iou(confusion(truth, pred, 4))
    np.testing.assert_allclose(iou[:3], [4 / 6, 3 / 4, 1 / 2])
    assert np.isnan(iou[3])  # absent from truth and prediction: left out of the mean
    kind = kinds.task_kind("mask")
    onehot = np.eye(4)[pred][None]
    assert kind.score(truth[None], onehot)["miou"] == pytest.approx(np.mean([4 / 6, 3 / 4, 1 / 2]))


def test_canvas_data_is_exact_by_construction():
    import csv

    from PIL import Image

    with open(CANVAS, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows[:20]:
        mask = np.asarray(Image.open(CANVAS.parent / r["mask"]))
        boxes = json.loads(r["boxes"])
        assert len(boxes) == int(r["count"])
        for x0, y0, x1, y1, d in boxes:
            inside = mask[y0:y1, x0:x1]
            ys, xs = np.nonzero(inside == d + 1)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (0, 0, x1 - x0, y1 - y0)
        assert json.loads(r["spoken_box"])[0] in boxes and r["audio"].split("/")[1][0] == r["spoken"]


# one epoch on the first 64 rows (every split: the rows interleave), tiny encoders, evaluate, int8 TFLite only (its
# gate accepts any drop: the gate has its own tests), the report
TINY_CANVAS = ["training.epochs=1", "data.limit=64", "inputs.image.encoder.filters=[8,16,16,16]",
               "inputs.audio.encoder.filters=[8,16]", "trunk.units=[32]", "stages=[train,evaluate,export,report]",
               "export.formats=[tflite]", "export.precisions=[int8]", "export.default_tolerance=1.0",
               "export.tolerance={}", "export.calibration_samples=16", "export.float_fallback=false"]


@pytest.fixture(scope="session")
def canvas_run(tmp_path_factory):
    from edgemtl.cli import main

    out = tmp_path_factory.mktemp("runs") / "canvas"
    assert main(["run", str(CANVAS_RECIPE), "--out", str(out)] + set_args(TINY_CANVAS)) == 0
    return out


def test_tiny_canvas_run_answers_boxes_and_masks(canvas_run):
    import csv

    from edgemtl.runtime import load

    metrics = json.loads((canvas_run / "models" / "teacher" / "metrics.json").read_text())
    for task, metric in (("boxes", "map50"), ("spoken_box", "map"), ("mask", "miou"), ("spoken", "accuracy")):
        assert 0.0 <= metrics["val"][f"{task}_{metric}"] <= 1.0
        assert 0.0 <= metrics["splits"]["test"][task][metric] <= 1.0
    assert "boxes" in (canvas_run / "report.md").read_text()
    bundle = next((canvas_run / "exports").glob("teacher-tflite-int8"))
    model = load(bundle, allow_undeployable=True)
    with open(CANVAS, newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["split"] == "test")
    answer = model.predict(image=str(CANVAS.parent / row["image"]), audio=str(CANVAS.parent / row["audio"]))
    for b in answer["boxes"]["boxes"]:
        assert set(b) == {"label", "score", "box"} and b["label"] in [str(d) for d in range(10)]
        assert 0.3 <= b["score"] <= 1.0 and len(b["box"]) == 4
    # at threshold 0 the answer lists top_k boxes, inside the image and best first
    raw = model.run(model.prepare(image=str(CANVAS.parent / row["image"]), audio=str(CANVAS.parent / row["audio"])))
    entry = {**model.outputs["boxes"], "threshold": 0.0}
    boxes = kinds.task_kind("boxes").answer(entry, raw["boxes"][0])["boxes"]
    assert len(boxes) == entry["params"]["top_k"]
    assert [b["score"] for b in boxes] == sorted((b["score"] for b in boxes), reverse=True)
    assert all(-48 <= v <= 144 for b in boxes for v in b["box"])
    mask = np.asarray(answer["mask"]["mask"])
    assert mask.shape == (96, 96) and mask.min() >= 0 and mask.max() < len(answer["mask"]["labels"])
    assert sum(answer["mask"]["areas"].values()) == 96 * 96
    assert answer["spoken"]["label"] in [str(d) for d in range(10)]


# The tiny teacher above in every other precision, trained once (a copy of canvas_run, its int8 calibration cache
# included, so int8io and the C array reuse its int8 conversion): TFLite fp16 / dynamic / int8io, ONNX dynamic, the
# C array, and the micro target where TFLite Micro is installed. The gate accepts any drop here (a
# 1-epoch model's mAP is 0); docs/detection.md has the drops of a trained model.
OTHER_PRECISIONS = (("tflite", ("fp16", "dynamic", "int8io")), ("onnx", ("dynamic",)), ("c", ("int8",)),
                    ("micro", ("int8",)))
DENSE_METRICS = {"boxes": "map50", "spoken_box": "map50", "mask": "miou"}


@pytest.fixture(scope="session")
def canvas_precisions(canvas_run, tmp_path_factory):
    """(run folder, {artifact: export summary row}) of the tiny canvas teacher in OTHER_PRECISIONS."""
    import shutil

    from edgemtl.data.dataset import prepare
    from edgemtl.export.micro import tflm_dir
    from edgemtl.export.run import export_model
    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import RunDir

    run = tmp_path_factory.mktemp("canvas-precisions") / "canvas"
    shutil.copytree(canvas_run, run, ignore=shutil.ignore_patterns("exports"))
    rundir = RunDir(run)
    recipe = load_recipe(rundir.recipe)
    data = prepare(recipe)
    rows = {}
    for fmt, precisions in OTHER_PRECISIONS:
        if fmt == "micro" and tflm_dir() is None:
            continue
        for row in export_model(rundir, recipe, data, "teacher", [fmt], list(precisions),
                                recipe.export.calibration_samples):
            rows[row["artifact"]] = row
    return run, rows


def test_every_precision_carries_the_dense_heads_and_the_gate_scores_decoded_outputs(canvas_precisions):
    """Each precision converts with the boxes and mask heads and passes the gate, which scored mAP@0.5 / mIoU of
    the decoded outputs; for fp16 and int8io those scores are what the bundle's runtime outputs decode to."""
    from edgemtl.data.dataset import prepare
    from edgemtl.data.media import in_memory
    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import RunDir
    from edgemtl.runtime import load

    run, rows = canvas_precisions
    expected = {f"teacher-{f}-{p}" for f, ps in OTHER_PRECISIONS for p in ps}
    if not any(a.endswith("micro-int8") for a in rows):
        expected.discard("teacher-micro-int8")
    assert set(rows) == expected
    for artifact, row in rows.items():
        assert row["deployable"], (artifact, row["reason"])
        for task, metric in DENSE_METRICS.items():
            gate = row["tasks"][task]
            assert gate["metric"] == metric and gate["drop"] is not None and 0.0 <= gate["agreement"] <= 1.0
            assert gate["drop"] == pytest.approx(gate["keras"] - gate["artifact"], abs=1e-9)
    recipe = load_recipe(RunDir(run).recipe)
    test = prepare(recipe)["test"]
    x = in_memory(test.x)
    specs = {t.name: t for t in recipe.tasks}
    for artifact in ("teacher-tflite-fp16", "teacher-tflite-int8io"):
        outputs = load(run / "exports" / artifact).run(x)
        for task, metric in DENSE_METRICS.items():
            spec = specs[task]
            got = kinds.task_kind(spec.type).score(test.y[task], outputs[task], spec.threshold)
            assert got[metric] == pytest.approx(rows[artifact]["tasks"][task]["artifact"], abs=1e-6), artifact


@pytest.mark.parametrize("artifact", ["teacher-tflite-fp16", "teacher-tflite-int8io", "teacher-onnx-dynamic"])
def test_reduced_precision_bundles_answer_boxes_and_masks(canvas_precisions, artifact):
    import csv

    from edgemtl.runtime import load

    run, _ = canvas_precisions
    model = load(run / "exports" / artifact)
    with open(CANVAS, newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["split"] == "test")
    inputs = {"image": str(CANVAS.parent / row["image"]), "audio": str(CANVAS.parent / row["audio"])}
    answer = model.predict(**inputs)
    for task in ("boxes", "spoken_box"):
        for b in answer[task]["boxes"]:
            assert set(b) == {"label", "score", "box"} and b["label"] in [str(d) for d in range(10)]
            assert b["score"] >= model.outputs[task]["threshold"] and len(b["box"]) == 4
    raw = model.run(model.prepare(**inputs))  # at threshold 0: top_k boxes, best first
    entry = {**model.outputs["boxes"], "threshold": 0.0}
    boxes = kinds.task_kind("boxes").answer(entry, raw["boxes"][0])["boxes"]
    assert len(boxes) == entry["params"]["top_k"]
    assert [b["score"] for b in boxes] == sorted((b["score"] for b in boxes), reverse=True)
    mask = np.asarray(answer["mask"]["mask"])
    assert mask.shape == (96, 96) and mask.min() >= 0 and mask.max() < len(answer["mask"]["labels"])
    assert sum(answer["mask"]["areas"].values()) == 96 * 96


def test_integer_bundles_take_and_give_integers_with_dense_heads(canvas_precisions):
    """int8io: every output (the box maps and the pixel class maps too) int8, audio int8, pixels uint8; the C array
    wraps that int8io file; the micro bundle ran in TFLite Micro, the heads' upsampling (RESIZE_*) in its kernels."""
    from edgemtl.export.gate import TFLM_NOTE
    from edgemtl.export.micro import model_ops
    from edgemtl.runtime.manifest import BundleManifest

    run, rows = canvas_precisions
    io = BundleManifest.read(run / "exports" / "teacher-tflite-int8io").quantization.io
    assert {n: q.dtype for n, q in io.items()} == {"image": "uint8", "audio": "int8", **{
        t: "int8" for t in ("count", "boxes", "mask", "spoken", "spoken_box")}}
    c = BundleManifest.read(run / "exports" / "teacher-c-int8")
    assert c.quantization.wraps == "int8io"
    assert (run / "exports" / "teacher-c-int8" / "model.tflite").read_bytes() == \
        (run / "exports" / "teacher-tflite-int8io" / "model.tflite").read_bytes()
    if "teacher-micro-int8" not in rows:
        pytest.skip("tflite-micro is not installed (the [micro] extra)")
    bundle = run / "exports" / "teacher-micro-int8"
    micro = BundleManifest.read(bundle)
    assert json.loads((bundle / "parity.json").read_text())["runtime"]["note"] == TFLM_NOTE
    assert {n: q.dtype for n, q in micro.quantization.io.items()} == {"image": "int8", "audio": "int16", **{
        t: "int8" for t in ("count", "boxes", "mask", "spoken", "spoken_box")}}
    ops = {u.op for u in model_ops((bundle / "model.tflite").read_bytes())}
    assert {"RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "LOGISTIC", "SOFTMAX"} <= ops == set(micro.memory.ops)
    assert micro.memory.arena_bytes > 0 and micro.memory.flash_bytes == (bundle / "model.tflite").stat().st_size


def test_onnx_dynamic_quantizes_matmuls_and_leaves_the_convolutions_float(canvas_precisions):
    """ONNX dynamic quantizes MatMul/Gemm weights only (docs/export.md): the trunk and class heads, while the
    encoders' and the dense decoders' convolutions stay float, so the dense model barely shrinks."""
    import onnx

    run, _ = canvas_precisions
    graph = onnx.load(str(run / "exports" / "teacher-onnx-dynamic" / "model.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert "MatMulInteger" in ops and "ConvInteger" not in ops and "Conv" in ops
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    assert any("boxes_" in n for n in convs) and any("mask_" in n for n in convs)


DENSE_HEADS = ("boxes", "mask", "spoken_box")
AFTER_ENCODERS = ("fusion_", "trunk_", "count", "boxes", "mask", "spoken", "spoken_box")


def _canvas_session(canvas_run, tmp_path, overrides=()):
    """A copy of the tiny canvas run (its calibration cache included) and a ModelExport over it."""
    import shutil

    from edgemtl.data.dataset import prepare
    from edgemtl.export.run import ModelExport
    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import RunDir

    run = tmp_path / "canvas"
    shutil.copytree(canvas_run, run, ignore=shutil.ignore_patterns("exports"))
    rundir = RunDir(run)
    recipe = load_recipe(rundir.recipe, list(overrides))
    data = prepare(recipe)
    return rundir, recipe, data, ModelExport(rundir, recipe, data, "teacher", recipe.export.calibration_samples)


def test_fallback_keeps_dense_heads_in_float_with_the_encoders_int8_fewest_float_parameters_first(canvas_run,
                                                                                                   tmp_path):
    """The candidates cross the input side (front-end, an encoder, both) with the output side (the dense heads with
    their decoders and gates, or everything after the encoders), the whole model in float left out; ordered by the
    parameters they keep in float, so the first that passes is the most integer one."""
    from edgemtl.export.formats import FORMATS
    from edgemtl.export.gate import fallback_candidates, float_parameters

    _, recipe, _, session = _canvas_session(canvas_run, tmp_path, ["export.float_fallback=true"])
    with session:
        weights = session.weights
        plain = fallback_candidates(FORMATS["onnx"], "int8", recipe.inputs, True, recipe.tasks)
        ordered = fallback_candidates(FORMATS["onnx"], "int8", recipe.inputs, True, recipe.tasks, weights)
    for keep in [DENSE_HEADS, ("audio_logmel", *DENSE_HEADS), ("audio_", *DENSE_HEADS), ("audio_", *AFTER_ENCODERS),
                 ("audio_logmel",), ("audio_",), ("image_", "audio_"), AFTER_ENCODERS]:
        assert keep in plain, keep
    assert ("image_", "audio_", *AFTER_ENCODERS) not in plain  # that is the fp32 model
    assert len(plain) == len(set(plain)) == 13 and sorted(plain) == sorted(ordered)
    costs = [float_parameters(k, weights) for k in ordered]
    assert costs == sorted(costs) and costs[0] < costs[-1]
    assert float_parameters(DENSE_HEADS, weights) > 0 and float_parameters(("image_",), weights) > 0
    assert ordered.index(("audio_", *DENSE_HEADS)) < ordered.index(("audio_", *AFTER_ENCODERS))
    assert fallback_candidates(FORMATS["tflite"], "int8", recipe.inputs, True, recipe.tasks, weights) == ordered
    # the dense heads over tolerance in the first verdict (boxes; spoken is no dense head) get candidates of their own
    failing = fallback_candidates(FORMATS["onnx"], "int8", recipe.inputs, True, recipe.tasks, weights,
                                  ("boxes", "spoken"))
    assert len(failing) == 18 and set(ordered) < set(failing)
    assert {("boxes",), ("audio_logmel", "boxes"), ("audio_", "boxes"), ("image_", "audio_", "boxes")} < set(failing)
    assert failing.index(("audio_", "boxes")) < failing.index(("audio_", *DENSE_HEADS))
    every = fallback_candidates(FORMATS["onnx"], "int8", recipe.inputs, True, recipe.tasks, weights, DENSE_HEADS)
    assert every == ordered  # all of them failing: the dense-heads choice already is that
    assert fallback_candidates(FORMATS["tflite"], "dynamic", recipe.inputs, True, recipe.tasks, weights) == []


def test_a_candidate_over_tolerance_is_never_accepted(canvas_run, tmp_path, monkeypatch):
    """ONNX static int8 of the tiny model, every file judged by the real gate against a tolerance no file can meet:
    the candidates tried (the first two) are all rejected and the artifact stays not deployable."""
    import dataclasses

    from edgemtl.artifacts import ArtifactId
    from edgemtl.export import gate
    from edgemtl.export.formats import FORMATS

    _, _, _, session = _canvas_session(canvas_run, tmp_path, ["export.float_fallback=true"])
    real = gate.fallback_candidates
    monkeypatch.setattr(gate, "fallback_candidates", lambda *a: real(*a)[:2])  # two conversions: CI cost
    with session:
        session.gate = dataclasses.replace(session.gate, tolerance={**session.gate.tolerance, "mask": -1.0})
        found = session.verdict(ArtifactId("teacher", "onnx", "int8"))
        first = session.reports[session.converter.memo[("onnx", "int8", ())]]
        assert "mask" in gate.over_tolerance(first, session.gate.tolerance)
        tried = real(FORMATS["onnx"], "int8", session.recipe.inputs, True, session.gate.tasks, session.weights,
                     gate.over_tolerance(first, session.gate.tolerance))[:2]
    assert not found.report.deployable and found.keep == ()
    assert found.report.fallback_tried == tuple(tried) and len(tried) == 2
    assert "mask" in found.report.reason and "tolerance" in found.report.reason
    assert all(not r.deployable for r in session.reports.values()) and len(session.reports) == 3


def test_int8io_takes_int16_pcm_audio_when_the_front_end_stays_float(canvas_run, tmp_path):
    """int8io with the audio front-end in float: the audio input is int16 PCM (cast to float in the graph), every
    other input and output integer, and the parts kept in float reach the manifest; the bundle answers a WAV file."""
    import csv

    from edgemtl.export.micro import model_ops
    from edgemtl.export.run import export_model
    from edgemtl.runtime import load
    from edgemtl.runtime.manifest import BundleManifest

    rundir, recipe, data, session = _canvas_session(canvas_run, tmp_path)
    session.converter.close()
    rows = export_model(rundir, recipe, data, "teacher", ["tflite"], ["int8io"], recipe.export.calibration_samples,
                        worked={"tflite": ("audio_logmel",)})
    assert rows[0]["deployable"], rows[0]["reason"]
    assert rows[0]["kept_in_float"] == ["audio_logmel"]
    bundle = rundir.root / "exports" / "teacher-tflite-int8io"
    manifest = BundleManifest.read(bundle)
    assert manifest.quantization.kept_in_float == ("audio_logmel",)
    assert {n: q.dtype for n, q in manifest.quantization.io.items()} == {"image": "uint8", "audio": "int16", **{
        t: "int8" for t in ("count", "boxes", "mask", "spoken", "spoken_box")}}
    ops = {u.op for u in model_ops((bundle / "model.tflite").read_bytes())}
    assert "RFFT2D" in ops and "CAST" in ops  # the front-end in float, after the PCM cast
    with open(CANVAS, newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["split"] == "test")
    answer = load(bundle).predict(image=str(CANVAS.parent / row["image"]), audio=str(CANVAS.parent / row["audio"]))
    assert answer["spoken"]["label"] in [str(d) for d in range(10)]


def _canvas_targets(n_rows=4):
    """Target maps of the first canvas rows' boxes (stride 4, 10 digit classes): a teacher that is exactly right."""
    import csv

    with open(CANVAS, newline="") as f:
        rows = [r for _, r in zip(range(n_rows), csv.DictReader(f))]
    maps = []
    for r in rows:
        boxes = np.array([[x0 / 4, y0 / 4, x1 / 4, y1 / 4, d] for x0, y0, x1, y1, d in json.loads(r["boxes"])])
        maps.append(encode_targets(boxes, (24, 24), 10))
    return np.clip(np.stack(maps), 0.02, 0.98).astype(np.float32)  # sigmoid outputs never reach 0 or 1


def _fit_to_teacher(loss, teacher, steps=80, lr=0.5):
    """Gradient steps on free student logits against loss(teacher, activation(logits)); returns the student."""
    import tensorflow as tf

    logits = tf.Variable(tf.zeros_like(teacher))
    act = tf.sigmoid if loss.__name__ == "boxes" else tf.nn.softmax
    target, m, v = tf.constant(teacher), tf.Variable(tf.zeros_like(teacher)), tf.Variable(tf.zeros_like(teacher))

    @tf.function
    def fit():  # Adam by hand, one graph: eager steps cost more than the losses
        for i in tf.range(1, steps + 1):
            with tf.GradientTape() as tape:
                value = loss(target, act(logits))
            g = tape.gradient(value, logits)
            m.assign(0.9 * m + 0.1 * g)
            v.assign(0.999 * v + 0.001 * g * g)
            t = tf.cast(i, tf.float32)
            logits.assign_sub(lr * (m / (1 - 0.9 ** t)) / (tf.sqrt(v / (1 - 0.999 ** t)) + 1e-8))
    fit()
    return act(logits).numpy()


def test_dense_soft_losses_vanish_on_the_teacher_and_teach_its_answers():
    """Distillation's soft targets: zero where the student equals the teacher, and a student fitted to them alone
    decodes the teacher's boxes (heatmap KL + regression at the teacher's peaks) and its pixel classes (KL)."""
    box, mask = kinds.task_kind("boxes"), kinds.task_kind("mask")
    teacher = _canvas_targets()
    loss = box.soft_loss(None, {"classes": [str(d) for d in range(10)]}, temperature=2.0)
    assert float(loss(teacher, teacher)) == pytest.approx(0.0, abs=1e-4)
    assert float(loss(teacher, np.full_like(teacher, 0.5))) > 1.0
    student = _fit_to_teacher(loss, teacher)
    assert box.agreement(teacher, student, 0.5) == 1.0  # same boxes, same classes, IoU >= 0.5 each
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (2, 16, 16, 3)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    mloss = mask.soft_loss(None, {"classes": ["0", "1", "2"]}, temperature=2.0)
    assert float(mloss(probs, probs)) == pytest.approx(0.0, abs=1e-5)
    assert float(mloss(probs, np.full_like(probs, 1 / 3))) > 0.1
    assert mask.agreement(probs, _fit_to_teacher(mloss, probs, steps=60), 0.5) > 0.99


def test_dense_heads_take_pruning_qat_and_the_hint(canvas_run):
    """The compression stages see dense heads through the kinds: the hint reads the trunk's vector through a
    dense head's gate (the same tensor a class head reads), pruning leaves the heads' output convolutions dense,
    and quantization-aware wrapping keeps every output's shape."""
    from edgemtl.compress import prune
    from edgemtl.compress.distill import shared_representation
    from edgemtl.compress.qat import quantize_for_training
    from edgemtl.models.build import load_model
    from edgemtl.recipe import load_recipe

    recipe = load_recipe(CANVAS_RECIPE, TINY_CANVAS)
    by_name = {t.name: t for t in recipe.tasks}
    net = load_model(canvas_run / "models" / "teacher" / "model.keras")
    trunk = shared_representation(net, by_name["count"])
    for task in ("boxes", "mask", "spoken_box"):
        assert shared_representation(net, by_name[task]) is trunk
    assert len(trunk.shape) == 2
    chosen = prune.select_layers(net, recipe, recipe.compress.prune)
    assert {"boxes_logits", "mask_logits"}.isdisjoint(chosen) and "boxes_dec4_conv" in chosen
    wrapped = prune.wrap_for_pruning(load_model(canvas_run / "models" / "teacher" / "model.keras"), chosen,
                                     recipe.compress.prune, steps_per_epoch=2)
    qat = quantize_for_training(net, prune.head_layers(net), pruned=False)
    for model in (wrapped, qat):
        assert {n: tuple(model.output[n].shape) for n in net.output_names} == \
            {n: tuple(net.output[n].shape) for n in net.output_names}


# every stage of the main job on the canvas: single-task baselines, distillation, pruning, QAT, int8 TFLite through
# the gate, bench (one backend) -- one epoch each on 64 rows
CANVAS_EVERY_STAGE = TINY_CANVAS + [
    "stages=[train,single_task,evaluate,compress,export,bench,report]", "compress.training={epochs: 1}",
    "compress.prune.epochs=1", "compress.qat.epochs=1", "export.model=[teacher,student-qat]", "bench.backends=[litert]",
    "bench.runs=5", "bench.threads=[1]", "bench.batch=4", "bench.max_seconds=1"]


@pytest.mark.slow
def test_canvas_through_every_stage(tmp_path):
    from edgemtl.cli import main

    out = tmp_path / "canvas"
    assert main(["run", str(CANVAS_RECIPE), "--out", str(out)] + set_args(CANVAS_EVERY_STAGE)) == 0
    check_every_stage(out)


def check_every_stage(out):
    """What a canvas run through every stage left: per task its kind's metric in each stage's results."""
    from edgemtl.rundir import RunDir

    metric = {"boxes": "map50", "spoken_box": "map50", "mask": "miou", "count": "accuracy", "spoken": "accuracy"}
    for task, name in metric.items():  # a single-task baseline per task, scored by its kind
        single = json.loads((out / "models" / f"single-{task}" / "metrics.json").read_text())
        assert 0.0 <= single["splits"]["test"][task][name] <= 1.0
    compress = json.loads((out / "compress.json").read_text())
    assert {"student", "student-pruned", "student-qat"} <= {r["model"] for r in compress["models"]}
    bundles = {a.name for a in RunDir(out).bundles()}
    assert {"teacher-tflite-int8"} <= bundles and any(b.startswith("student") for b in bundles)
    for b in bundles:  # the gate compared decoded boxes and masks: mAP@0.5 and mIoU, their drop and agreement
        gate = json.loads((out / "exports" / b / "parity.json").read_text())
        for task, name in metric.items():
            row = gate["tasks"][task]
            assert row["metric"] == name and 0.0 <= row["agreement"] <= 1.0 and row["drop"] is not None
    bench = json.loads((out / "bench" / "results.json").read_text())
    for artifact, acc in bench["accuracy"].items():  # accuracy columns per task: its kind's metric
        for task, name in metric.items():
            assert 0.0 <= acc[task][name] <= 1.0, artifact
    text = (out / "bench" / "report.md").read_text()
    assert "mAP@0.5" in text and "mIoU" in text
