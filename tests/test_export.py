"""Export: every format and precision as a bundle, the parity gate, float fallback, and bad-input messages."""
import json
import re
import shutil

import numpy as np
import pytest

from conftest import REPO
from edgemtl.artifacts import ArtifactId
from edgemtl.cli import main
from edgemtl.errors import EdgemtlError
from edgemtl.recipe.schema import TaskSpec
from edgemtl.runtime.backends import open_runner
from edgemtl.runtime.manifest import SCHEMA_VERSION, BundleManifest, ParityReport

BUNDLES = ["teacher-tflite-fp32", "teacher-tflite-fp16", "teacher-tflite-dynamic", "teacher-tflite-int8",
           "teacher-tflite-int8io", "teacher-onnx-fp32", "teacher-onnx-fp16", "teacher-onnx-dynamic",
           "teacher-onnx-int8", "teacher-c-int8"]


@pytest.fixture(scope="session")
def exported(tiny_run):
    return tiny_run / "exports"


def test_every_format_and_precision_is_a_bundle(exported):
    assert sorted(p.name for p in exported.iterdir() if p.is_dir() and p.name != "rejected") == sorted(BUNDLES)
    for name in BUNDLES:
        manifest = json.loads((exported / name / "manifest.json").read_text())
        assert manifest["schema_version"] == SCHEMA_VERSION
        assert manifest["precision"] == ArtifactId.parse(name).precision
        assert (exported / name / manifest["file"]).stat().st_size > 1000
        assert [(i["name"], i["dtype"]) for i in manifest["inputs"]] == [("audio", "float32"), ("image", "uint8")]
        assert manifest["inputs"][0]["preprocess"] == {"sample_rate": 8000, "clip_samples": 8000}
        assert [o["task"] for o in manifest["outputs"]] == ["digit", "speaker"]
        assert manifest["outputs"][1]["labels"][0] == "george" and manifest["outputs"][0]["decode"] == "argmax"
        parity = json.loads((exported / name / "parity.json").read_text())
        assert parity["deployable"], (name, parity["reason"])
        assert parity["rows"] == 300 and set(parity["tasks"]) == {"digit", "speaker"}


def test_float_artifacts_match_keras_within_1e4(exported):
    for name in ("teacher-tflite-fp32", "teacher-onnx-fp32"):
        parity = json.loads((exported / name / "parity.json").read_text())
        assert all(t["max_abs_diff"] <= 1e-4 and t["agreement"] == 1.0 for t in parity["tasks"].values())


def test_bundles_run_in_litert_and_onnxruntime(exported, av_data):
    x = {k: v[:3] for k, v in av_data["test"].x.items()}
    reference = json.loads((exported / "teacher-tflite-fp32" / "parity.json").read_text())
    for name in BUNDLES[:-1]:
        manifest = json.loads((exported / name / "manifest.json").read_text())
        out = open_runner(exported / name / manifest["file"]).run(x)
        assert out["digit"].shape == (3, 10) and out["speaker"].shape == (3, 6), name
        assert np.allclose(out["digit"].sum(axis=1), 1.0, atol=0.05), name
    io = json.loads((exported / "teacher-tflite-int8io" / "manifest.json").read_text())["quantization"]["io"]
    assert io["digit"]["dtype"] == "int8" and io["digit"]["scale"] > 0 and reference["deployable"]


def test_c_array_holds_the_int8_model(exported):
    folder = exported / "teacher-c-int8"
    model = (folder / "model.tflite").read_bytes()
    source = (folder / "model_data.cc").read_text()
    values = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", source))
    assert values == model and f"model_data_len = {len(model)};" in source
    header = (folder / "model_data.h").read_text()
    assert "alignas(16)" in source and "extern const unsigned char model_data[];" in header


def test_half_precision_bundles_of_a_label_matching_model(fashion_tiny_run):
    """The label-name match puts bool -> float Casts in the ONNX graph, where fp16 conversion used to loop forever."""
    for bundle in ("teacher-tflite-fp16", "teacher-onnx-fp16"):
        parity = json.loads((fashion_tiny_run / "exports" / bundle / "parity.json").read_text())
        diffs = [t["max_abs_diff"] for t in parity["tasks"].values()]
        assert parity["deployable"] and max(diffs) < 1e-2, (bundle, parity)


def test_parity_gate_rejects_a_broken_artifact(tiny_run, av_data, tmp_path):
    from edgemtl.export import parity, tflite
    from edgemtl.export.signature import exported_model
    from edgemtl.models.build import load_model
    from edgemtl.stages import open_run

    run, recipe = open_run(tiny_run)
    model = exported_model(load_model(run.model_file("teacher")), recipe)
    test = av_data["test"]
    reference = model.predict(test.x, verbose=0)
    head = model.get_layer("digit")
    kernel, bias = head.get_weights()
    head.set_weights([kernel[:, ::-1], bias[::-1]])  # a deliberately broken digit head
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(tflite.convert(model, "fp32"))
    verdict = parity.check(broken, "fp32", test.x, test.y, reference, recipe.tasks, av_data.labels, {})
    assert not verdict["deployable"] and verdict["reason"].startswith("digit: max difference ")
    assert "speaker" not in verdict["reason"] and verdict["tasks"]["speaker"]["max_abs_diff"] <= 1e-4
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes((tiny_run / "exports/teacher-onnx-fp32/model.onnx").read_bytes()[:5000])
    verdict = parity.check(truncated, "fp32", test.x, test.y, reference, recipe.tasks, av_data.labels, {})
    assert not verdict["deployable"] and "ONNX Runtime cannot load this model" in verdict["reason"]


def test_keep_float_leaves_the_audio_front_end_in_float(tiny_run, av_data, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from edgemtl.export import tflite
    from edgemtl.export.signature import exported_model
    from edgemtl.models.build import load_model
    from edgemtl.stages import open_run

    run, recipe = open_run(tiny_run)
    model = exported_model(load_model(run.model_file("teacher")), recipe)
    samples = [{k: v[i:i + 1] for k, v in av_data["train"].x.items()} for i in range(20)]
    content = tflite.convert(model, "int8", samples, keep_float=("audio_logmel",))
    tensors = Interpreter(model_content=content).get_tensor_details()
    logmel = [t for t in tensors if "audio_logmel" in t["name"] and "Log" in t["name"]]
    conv = [t for t in tensors if "image_block1_conv" in t["name"]]
    assert logmel and all(t["dtype"] == np.float32 for t in logmel)
    assert any(t["dtype"] == np.int8 for t in conv)


def test_audio_front_end_survives_dynamic_range_quantization(tiny_run, av_data):
    """Dynamic-range TFLite quantizes large constant weights and their inputs: the log-mel front-end has none."""
    from ai_edge_litert.interpreter import Interpreter

    from edgemtl.export import tflite
    from edgemtl.models.build import load_model
    from edgemtl.stages import open_run
    from edgemtl.tfk import keras

    run, _ = open_run(tiny_run)
    teacher = load_model(run.model_file("teacher"))
    front = keras.Model(teacher.get_layer("audio").input, teacher.get_layer("audio_logmel").output)
    audio = av_data["test"].x["audio"][:16]
    interpreter = Interpreter(model_content=tflite.convert(front, "dynamic"))
    runner = interpreter.get_signature_runner()
    got = next(iter(runner(audio=audio[:1]).values()))
    assert np.abs(got - front.predict(audio[:1], verbose=0)).max() < 1e-3


def test_float_fallback_is_tried_and_recorded(own_run, av_data, monkeypatch):
    import dataclasses

    from edgemtl.export import run as export_run
    from edgemtl.stages import open_run

    run, recipe = open_run(own_run)
    with export_run.ModelExport(run, recipe, av_data, "teacher", 20) as session:
        real_judge = session.judge

        def strict_judge(path, precision):  # fails unless the audio front-end stayed in float
            report = real_judge(path, precision)
            kept = [k for k, p in session.converter.memo.items() if p == path][0][2]
            if "audio_logmel" not in kept:
                report = dataclasses.replace(report, deployable=False, reason="digit: forced failure")
            return report

        monkeypatch.setattr(session, "judge", strict_judge)
        row = session.export_artifact(ArtifactId("teacher", "tflite", "int8"))
    assert row["deployable"] and row["kept_in_float"] == ["audio_logmel"]
    manifest = json.loads((own_run / "exports/teacher-tflite-int8/manifest.json").read_text())
    assert manifest["quantization"]["kept_in_float"] == ["audio_logmel"]
    assert manifest["quantization"]["calibration_rows"] >= 16  # every digit and speaker class, then random rows


@pytest.mark.slow  # a calibration child and a direct int8io conversion; CI sees the derived int8io in every bundle test
def test_int8io_shares_the_int8_calibration_and_answers_as_the_converter_would(tiny_run, av_data, monkeypatch):
    """One calibration child for int8 and int8io; the derived int8io file answers as a direct int8io conversion
    (same ranges) and feeds and returns integers."""
    from edgemtl.export import child as child_module, run as export_run
    from edgemtl.export.tflite import convert as direct
    from edgemtl.stages import open_run

    run, recipe = open_run(tiny_run)
    jobs = []
    real_run = child_module.ConversionChild.run
    monkeypatch.setattr(child_module.ConversionChild, "run", lambda self, job: jobs.append(job) or real_run(self, job))
    with export_run.ModelExport(run, recipe, av_data, "teacher", 12) as session:
        derived = session.converter.convert(ArtifactId("teacher", "tflite", "int8io")).read_bytes()
        session.converter.convert(ArtifactId("teacher", "tflite", "int8"))
        samples, model = session.converter.samples, session.converter.model
        assert len(jobs) == 1 and len(session.converter.memo) == 2
        reference = direct(model, "int8io", list(samples))
    x = {k: v[:8] for k, v in av_data["test"].x.items()}
    a_dir, b_dir = tiny_run / "int8io-a.tflite", tiny_run / "int8io-b.tflite"
    a_dir.write_bytes(derived)
    b_dir.write_bytes(reference)
    try:
        a, b = open_runner(a_dir), open_runner(b_dir)
        details = [{**a.inputs, **a.outputs}, {**b.inputs, **b.outputs}]
        assert details[0]["digit"]["dtype"] == np.int8 and details[0]["image"]["dtype"] == np.uint8  # raw pixels
        for name, d in details[0].items():
            other = details[1][name]
            assert d["dtype"] == other["dtype"] and d["quantization"] == pytest.approx(other["quantization"]), name
        out_a, out_b = a.run(x), b.run(x)
        for task in ("digit", "speaker"):
            assert np.abs(out_a[task] - out_b[task]).max() <= 1e-6, task
    finally:
        a_dir.unlink()
        b_dir.unlink()


def test_int8_siblings_start_from_what_the_first_needed_in_float(own_run, av_data, monkeypatch):
    from edgemtl.export import gate, run as export_run
    from edgemtl.stages import open_run

    run, recipe = open_run(own_run)
    with export_run.ModelExport(run, recipe, av_data, "teacher", 20) as session:
        session.worked["tflite"] = ("audio_logmel",)  # as if the first int8 artifact had just needed it
        row = session.export_artifact(ArtifactId("teacher", "tflite", "int8"))
        # int8io from there, with no fallback of its own: the float front-end reads int16 PCM (export/pcm.py)
        monkeypatch.setattr(gate, "fallback_candidates", lambda *a: [])
        io_row = session.export_artifact(ArtifactId("teacher", "tflite", "int8io"))
        memo = list(session.converter.memo)
    assert row["deployable"] and row["kept_in_float"] == ["audio_logmel"]
    assert row["fallback_tried"] == [["audio_logmel"]]
    assert [k for k in memo if k[1] == "int8"] == [("tflite", "int8", ("audio_logmel",))]
    assert [k for k in memo if k[1] == "int8io"] == [("tflite", "int8io", ("audio_logmel",))]
    assert io_row["deployable"] and io_row["kept_in_float"] == ["audio_logmel"], io_row
    manifest = BundleManifest.read(run.root / "exports" / "teacher-tflite-int8io")
    assert manifest.quantization.io["audio"].dtype == "int16"
    assert {manifest.quantization.io[t.name].dtype for t in recipe.tasks} == {"int8"}


def test_no_fallback_where_the_format_cannot_keep_parts_in_float(own_run, av_data, monkeypatch):
    import dataclasses

    from edgemtl.export import run as export_run
    from edgemtl.stages import open_run

    run, recipe = open_run(own_run)
    with export_run.ModelExport(run, recipe, av_data, "teacher", 20) as session:
        real_judge = session.judge
        monkeypatch.setattr(session, "judge", lambda path, precision: dataclasses.replace(
            real_judge(path, precision), deployable=False, reason="digit: forced failure"))
        row = session.export_artifact(ArtifactId("teacher", "tflite", "dynamic"))
        converted = len(session.converter.memo)
    assert not row["deployable"] and row["fallback_tried"] == []
    assert row["reason"] == "digit: forced failure (TFLite dynamic cannot keep parts in float: no fallback to try)"
    assert converted == 1


def test_fallback_search_tries_the_candidates_in_order_and_keeps_the_first_that_passes():
    """The search alone, with a fake converter and judge: which parts were converted, in which order."""
    from edgemtl.export.formats import FORMATS
    from edgemtl.export.gate import search

    converted = []

    def convert(keep):
        converted.append(keep)
        if keep == ("image_",):
            raise EdgemtlError("cannot keep image_ in float")
        return keep

    def judge(keep):
        return ParityReport(deployable=keep == ("audio_", "image_"), reason=f"failed with {keep}", tasks={})

    found = search(convert, judge, FORMATS["onnx"], "int8", [("audio_logmel",), ("image_",), ("audio_", "image_")])
    assert converted == [(), ("audio_logmel",), ("image_",), ("audio_", "image_")]
    assert found.keep == ("audio_", "image_") and found.report.deployable
    assert found.report.fallback_tried == (("audio_logmel",), ("image_",), ("audio_", "image_"))
    failed = search(convert, judge, FORMATS["tflite"], "fp32", [("audio_logmel",)])
    assert not failed.report.deployable and failed.keep == () and failed.report.fallback_tried == ()


def test_export_bad_inputs_are_one_line_each(tiny_run, tmp_path, capsys):
    assert main(["export", str(tiny_run), "--format", "tflit,onnx", "--precision", "int4"]) == 2
    assert capsys.readouterr().err == (
        "error: --format: unknown format 'tflit' (one of tflite, onnx, c, micro) (did you mean 'tflite'?)\n"
        "error: --precision: unknown precision 'int4' (one of fp32, fp16, dynamic, int8, int8io) "
        "(did you mean 'int8'?)\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(tiny_run / "recipe.yaml", empty / "recipe.yaml")
    assert main(["export", str(empty)]) == 2
    assert capsys.readouterr().err == (f"error: {empty}: no model 'teacher' (models/teacher/model.keras missing; "
                                       f"have: none)\n")


def test_calibration_split_too_small(av_data):
    from edgemtl.data.dataset import Split
    from edgemtl.export.convert import calibration_rows

    tiny = Split({k: v[:5] for k, v in av_data["train"].x.items()}, {k: v[:5] for k, v in av_data["train"].y.items()},
                 av_data["train"].rows[:5])
    with pytest.raises(EdgemtlError) as e:
        calibration_rows(tiny, [], 100, 0)
    assert e.value.messages == ["calibration split too small: the training split has 5 rows, full-int8 "
                                "calibration needs at least 10"]
    rows = calibration_rows(av_data["train"], [TaskSpec(name="digit", type="multiclass")], 12, 0)
    assert len(rows) == 12 and set(av_data["train"].y["digit"][rows]) == set(range(10))


def test_a_layer_the_format_cannot_carry_is_named():
    from edgemtl.export import tflite
    from edgemtl.export.convert import conversion_error
    from edgemtl.tfk import keras, tf

    class Svd(keras.layers.Layer):
        def call(self, x):
            return tf.linalg.svd(tf.reshape(x, [-1, 4, 4]), compute_uv=False)

    x = keras.Input((16,), name="x")
    model = keras.Model({"x": x}, {"y": keras.layers.Dense(2, name="y")(Svd(name="spectral_norm")(x))})
    with pytest.raises(Exception) as e:
        tflite.convert(model, "fp32")
    assert conversion_error(e.value, "tflite", "teacher", model) == (
        "teacher: cannot convert to tflite: layer 'spectral_norm' uses op tf.Svd, which tflite builtin ops "
        "cannot carry")


def test_interrupted_bundle_write_keeps_the_previous_bundle(exported, tmp_path, monkeypatch):
    from edgemtl.export import bundle
    from edgemtl.rundir import RunDir

    source = exported / "teacher-tflite-fp32"
    manifest, parity = BundleManifest.read(source), ParityReport.read(source)
    run = RunDir(tmp_path)
    folder = tmp_path / "exports" / "teacher-tflite-fp32"
    bundle.write_bundle(folder, {"model.tflite": b"old"}, manifest, parity, run)

    def crash(self):
        raise KeyboardInterrupt  # interrupted half way through the folder

    monkeypatch.setattr(ParityReport, "to_json", crash)
    with pytest.raises(KeyboardInterrupt):
        bundle.write_bundle(folder, {"model.tflite": b"new"}, manifest, parity, run)
    assert (folder / "model.tflite").read_bytes() == b"old"
    assert [p.name for p in folder.parent.iterdir()] == ["teacher-tflite-fp32"]


@pytest.mark.parametrize("encoder, head", [("lstm, units: 32", ""), ("conv1d, filters: 32", ", match_labels: title")])
def test_text_models_keep_their_accuracy_in_int8(tmp_path, encoder, head):
    """The case that breaks naively (fused LSTM + int8): unrolled, it exports with the float model's answers; so
    does a head that matches class names in the title (integer token comparisons ahead of the int8 logits)."""
    from edgemtl.data.dataset import prepare
    from edgemtl.export import parity, tflite
    from edgemtl.export.signature import exported_model
    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import RunDir
    from edgemtl.train.fit import train_model

    path = tmp_path / "text.yaml"
    path.write_text(f"""
name: text
data: {{source: {REPO / 'tests/data/fashion_mini/products.csv'}, split: {{ratios: [0.7, 0.1, 0.2]}}}}
inputs:
  - {{name: title, type: text, column: title, max_length: 12, encoder: {{type: {encoder}, embedding_dim: 32}}}}
trunk: {{units: [32], dropout: 0.0}}
tasks:
  - {{name: gender, type: multiclass{head}}}
training: {{epochs: 12, batch_size: 16, learning_rate: 0.01, early_stopping: {{patience: null}}}}
""")
    recipe = load_recipe(path)
    data = prepare(recipe)
    run = RunDir(tmp_path / "run")
    train_model(recipe, data, run)
    from edgemtl.models.build import load_model

    model = exported_model(load_model(run.model_file("teacher")), recipe)
    test = data["test"]
    reference = model.predict(test.x, verbose=0)
    samples = [{k: v[i:i + 1] for k, v in data["train"].x.items()} for i in range(len(data["train"]))]
    artifact = tmp_path / "text-int8.tflite"
    artifact.write_bytes(tflite.convert(model, "int8", samples))
    verdict = parity.check(artifact, "int8", test.x, test.y, reference, recipe.tasks, data.labels,
                           {"gender": 0.03})
    gender = verdict["tasks"]["gender"]
    assert gender["keras"] >= 0.8, "the float model did not learn; the check would mean nothing"
    assert verdict["deployable"] and gender["agreement"] >= 0.95, verdict
    if head:  # the match's tables are padded to always-absent entries: no zero columns built per call
        from ai_edge_litert import interpreter as lite

        ops = {op["op_name"] for op in lite.Interpreter(model_path=str(artifact))._get_ops_details()}
        assert "EQUAL" in ops and "ZEROS_LIKE" not in ops, ops
