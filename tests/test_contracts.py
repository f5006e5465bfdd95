"""The typed on-disk contracts: bundle manifest and parity report, artifact names, run-directory paths, metrics.json,
the formats table. Fast: no TensorFlow, no training. The real manifests under tests/data/manifests were written by
`edgemtl export` (tests/test_export.py's tiny runs) and copied verbatim."""
import copy
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from edgemtl import names
from edgemtl.artifacts import ArtifactId, model_of_target, single_task_name, single_task_of
from edgemtl.errors import EdgemtlError
from edgemtl.export.formats import FORMATS, format_of_file, get_format, plan
from edgemtl.model_metrics import read_history, read_metrics, update_metrics, write_metrics
from edgemtl.rundir import RunDir
from edgemtl.runtime.manifest import SCHEMA_VERSION, BundleManifest, ParityReport

DATA = Path(__file__).parent / "data" / "manifests"
REAL = sorted(DATA.glob("*.manifest.json"))
AV_INT8IO = DATA / "av-teacher-tflite-int8io.manifest.json"
FASHION = DATA / "fashion-teacher-onnx-fp16.manifest.json"


def _strict_loads(text: str):
    def refuse(constant):
        raise AssertionError(f"bare {constant} in JSON")
    return json.loads(text, parse_constant=refuse)


def _bundle(tmp_path: Path, manifest: dict | str, files=("model.tflite", "model.onnx", "vocab_title.txt")) -> Path:
    folder = tmp_path / "teacher-tflite-int8io"
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        (folder / name).write_bytes(b"x")
    (folder / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    return folder


# --- BundleManifest -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_manifests_round_trip(path, tmp_path):
    original = json.loads(path.read_text())
    manifest = BundleManifest.from_json(path, tmp_path)
    assert _strict_loads(manifest.to_json()) == original
    again = BundleManifest.from_json(manifest.to_json(), tmp_path)
    assert again == manifest and again.to_dict() == original
    assert manifest.artifact == ArtifactId(original["model"], original["format"], original["precision"])
    assert manifest.model_path == tmp_path / original["file"]
    assert [e.name for e in manifest.inputs] == [e["name"] for e in original["inputs"]]


def test_typed_parts_carry_todays_keys():
    av = BundleManifest.from_json(AV_INT8IO)
    audio, image = av.inputs
    assert (audio.preprocess.sample_rate, audio.preprocess.clip_samples) == (8000, 8000)
    assert image.preprocess.size == (28, 28) and image.sample_shape == (28, 28, 1) and image.dtype == "uint8"
    assert av.output("speaker").labels[0] == "george" and av.output("digit").width() == 10
    assert av.quantization.kept_in_float == ("audio_logmel",) and av.quantization.calibration_rows == 20
    assert av.quantization.io["digit"].dtype == "float32" and av.deployable
    fashion = BundleManifest.from_json(FASHION)
    assert fashion.input("title").preprocess.vocab == "vocab_title.txt"
    assert fashion.file_names() == ("model.onnx", "vocab_title.txt")
    with pytest.raises(EdgemtlError, match="no input 'price'"):
        fashion.input("price")


def test_read_accepts_the_folder_or_its_manifest(tmp_path):
    folder = _bundle(tmp_path, AV_INT8IO.read_text())
    assert BundleManifest.read(folder) == BundleManifest.read(folder / "manifest.json")
    assert BundleManifest.from_json(str(folder / "manifest.json")) == BundleManifest.read(folder)
    assert BundleManifest.read(folder).bundle_dir == folder


def _mutate(source: Path, edit) -> dict:
    data = json.loads(source.read_text())
    edit(data)
    return data


def _set(path: str, value):
    """An edit that sets a dotted/indexed key ("inputs.1.shape") to value, or deletes it when value is DELETE."""
    def edit(data):
        *parents, last = path.split(".")
        for p in parents:
            data = data[int(p)] if isinstance(data, list) else data[p]
        key = int(last) if isinstance(data, list) else last
        if value is DELETE:
            del data[key]
        else:
            data[key] = value
    return edit


DELETE = object()
BAD = [  # (manifest, edit, words the message must hold besides the file path)
    (AV_INT8IO, _set("schema_version", DELETE), ["missing required key 'schema_version'"]),
    (AV_INT8IO, _set("schema_version", "1"), ["schema_version", "expected an integer"]),
    (AV_INT8IO, _set("schema_version", True), ["schema_version", "expected an integer"]),
    (AV_INT8IO, _set("schema_version", -7), ["schema_version", "positive"]),
    (AV_INT8IO, _set("schema_version", 0), ["schema_version", "positive"]),
    (AV_INT8IO, _set("schema_version", SCHEMA_VERSION + 1), ["schema_version", "newer", "upgrade edgemtl"]),
    (AV_INT8IO, _set("model", DELETE), ["missing required key 'model'"]),
    (AV_INT8IO, _set("format", "tflit"), ["format", "unknown format 'tflit'"]),
    (AV_INT8IO, _set("format", "onnx"), ["precision", "unknown onnx precision 'int8io'"]),
    (AV_INT8IO, _set("inputs.0.modality", "video"), ["inputs[0].modality", "unknown modality 'video'"]),
    (AV_INT8IO, _set("inputs.1.dtype", "uint9"), ["inputs[1].dtype", "unknown dtype 'uint9'"]),
    (AV_INT8IO, _set("inputs.1.shape", [None, 0, 0, 1]), ["inputs[1].shape", "positive"]),
    (AV_INT8IO, _set("inputs.1.shape", [None, None, 28, 1]), ["inputs[1].shape[1]", "only the batch"]),
    (AV_INT8IO, _set("inputs.1.preprocess.size", [0, 0]), ["inputs[1].preprocess.size[0]", "positive"]),
    (AV_INT8IO, _set("inputs.1.preprocess.size", [32, 32]), ["inputs[1].shape", "does not match its preprocess"]),
    (AV_INT8IO, _set("inputs.0.preprocess.clip_samples", 16000), ["inputs[0].shape", "[16000]"]),
    (AV_INT8IO, _set("inputs.1.preprocess.size", [28]), ["inputs[1].preprocess.size", "expected 2 items"]),
    (AV_INT8IO, _set("inputs.0.preprocess", DELETE), ["inputs[0]", "missing required key 'preprocess'"]),
    (AV_INT8IO, _set("inputs.0.preprocess.clip_samples", "8000"), ["inputs[0].preprocess.clip_samples"]),
    (AV_INT8IO, _set("inputs.1.name", "audio"), ["inputs", "'audio' appears more than once"]),
    (AV_INT8IO, _set("inputs", []), ["inputs", "at least 1"]),
    (AV_INT8IO, _set("inputs", {"audio": {}}), ["inputs", "expected a list"]),
    (AV_INT8IO, _set("outputs.0.labels", ["0"]), ["outputs[0].labels", "at least 2 labels"]),
    (AV_INT8IO, _set("outputs.0.labels", DELETE), ["outputs[0]", "missing required key 'labels'"]),
    (AV_INT8IO, _set("outputs.0.labels", [0, 1]), ["outputs[0].labels[0]", "expected a string"]),
    (AV_INT8IO, _set("outputs.0.type", "ranking"), ["outputs[0].type", "unknown task type 'ranking'"]),
    (AV_INT8IO, _set("outputs.0.decode", "threshold"), ["outputs[0].decode", "argmax"]),
    (AV_INT8IO, _set("outputs.0.type", "binary"), ["outputs[0]", "threshold"]),
    (AV_INT8IO, _set("quantization.precision", "fp32"), ["quantization.precision", "int8io"]),
    (AV_INT8IO, _set("quantization.io.digit.scale", "big"), ["quantization.io.digit.scale", "expected a number"]),
    (AV_INT8IO, _set("parity.deployable", "yes"), ["parity.deployable", "true or false"]),
    (AV_INT8IO, _set("extra", 1), ["unknown key 'extra'"]),
    (AV_INT8IO, _set("file", "/etc/passwd"), ["file", "absolute path"]),
    (AV_INT8IO, _set("file", "../../teacher/model.keras"), ["file", "'..'"]),
    (FASHION, _set("inputs.1.preprocess.vocab", "../../../etc/passwd"), ["inputs[1].preprocess.vocab", "'..'"]),
    (FASHION, _set("inputs.1.preprocess.lowercase", "yes"), ["inputs[1].preprocess.lowercase", "true or false"]),
]


@pytest.mark.parametrize("source, edit, words", BAD, ids=[f"{i}-{b[2][0][:30]}" for i, b in enumerate(BAD)])
def test_bad_manifests_are_refused_naming_file_and_key(source, edit, words, tmp_path):
    folder = _bundle(tmp_path, _mutate(source, edit))
    with pytest.raises(EdgemtlError) as e:
        BundleManifest.read(folder)
    message = str(e.value)
    assert message.startswith(str(folder / "manifest.json") + ": "), message
    for w in words:
        assert w in message, (w, message)


@pytest.mark.parametrize("text, words", [
    ('{"schema_version": 1, "inputs": [', ["not valid JSON", "truncated"]),
    ("[1, 2]", ["expected an object, got a list"]),
    ("", ["not valid JSON"]),
])
def test_unreadable_manifest_text(text, words, tmp_path):
    folder = _bundle(tmp_path, text)
    with pytest.raises(EdgemtlError) as e:
        BundleManifest.read(folder)
    assert str(folder / "manifest.json") in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_missing_folder_folder_manifest_and_binary_manifest(tmp_path):
    with pytest.raises(EdgemtlError, match="bundle folder not found"):
        BundleManifest.read(tmp_path / "nope")
    (tmp_path / "a" / "manifest.json").mkdir(parents=True)
    with pytest.raises(EdgemtlError, match="is not a file"):
        BundleManifest.read(tmp_path / "a")
    (tmp_path / "b").mkdir()
    with pytest.raises(EdgemtlError, match="no manifest.json"):
        BundleManifest.read(tmp_path / "b")
    (tmp_path / "b" / "manifest.json").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(EdgemtlError, match="not UTF-8"):
        BundleManifest.read(tmp_path / "b")


def test_a_symlink_out_of_the_bundle_is_refused(tmp_path):
    outside = tmp_path / "elsewhere.tflite"
    outside.write_bytes(b"x")
    folder = _bundle(tmp_path, AV_INT8IO.read_text(), files=())
    (folder / "model.tflite").symlink_to(outside)
    with pytest.raises(EdgemtlError, match="resolves outside"):
        BundleManifest.read(folder)
    inside = tmp_path / "ok"
    folder2 = _bundle(inside, AV_INT8IO.read_text(), files=("real.tflite",))
    (folder2 / "model.tflite").symlink_to(folder2 / "real.tflite")  # a link that stays inside is fine
    assert BundleManifest.read(folder2).model_path == folder2 / "model.tflite"
    with pytest.raises(EdgemtlError, match="'..'"):
        BundleManifest.read(folder2).path_of("../x")


def test_named_files_must_be_present_files(tmp_path):
    folder = _bundle(tmp_path, FASHION.read_text(), files=("model.onnx",))
    manifest = BundleManifest.read(folder)
    with pytest.raises(EdgemtlError, match=r"'vocab_title.txt' named by manifest.json \(inputs\[1\].preprocess.vocab\) "
                                           r"is missing"):
        manifest.require_files()
    (folder / "vocab_title.txt").mkdir()
    with pytest.raises(EdgemtlError, match="is a folder, not a file"):
        manifest.require_files()
    (folder / "vocab_title.txt").rmdir()
    (folder / "vocab_title.txt").write_text("a\n")
    manifest.require_files()


def test_fewer_labels_than_outputs():
    manifest = BundleManifest.from_json(AV_INT8IO)
    manifest.check_output_widths({"digit": 10, "speaker": 6})
    with pytest.raises(EdgemtlError, match=r"outputs\[0\].labels: the model outputs 11 values for task 'digit', "
                                           r"the manifest has 10 labels"):
        manifest.check_output_widths({"digit": 11})


def test_to_json_is_strict_with_nan_as_null():
    manifest = BundleManifest.from_json(AV_INT8IO)
    io = dict(manifest.quantization.io)
    io["digit"] = dataclasses.replace(io["digit"], scale=float("nan"))
    broken = dataclasses.replace(manifest, quantization=dataclasses.replace(manifest.quantization, io=io))
    text = broken.to_json()
    assert _strict_loads(text)["quantization"]["io"]["digit"]["scale"] is None
    with pytest.raises(EdgemtlError, match=r"quantization.io.digit.scale: expected a number, got null"):
        BundleManifest.from_json(text)


# --- ParityReport ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(DATA.glob("*.parity.json")), ids=lambda p: p.name)
def test_real_parity_reports_round_trip(path):
    report = ParityReport.from_json(path.read_text(), str(path))
    assert _strict_loads(report.to_json()) == json.loads(path.read_text())
    assert ParityReport.from_json(report.to_json()) == report
    assert report.rows > 0 and set(report.tasks) and report.deployable


def test_parity_nan_becomes_null_with_a_reason():
    data = json.loads((DATA / "av-teacher-tflite-int8io.parity.json").read_text())
    data["tasks"]["digit"]["drop"] = float("nan")
    report = ParityReport.from_json(json.dumps(data))  # bare NaN in the file, as older versions wrote it
    assert report.tasks["digit"].drop is None
    written = _strict_loads(ParityReport.from_dict(copy.deepcopy(data)).to_json())
    assert written["tasks"]["digit"]["drop"] is None
    assert written["null_reasons"] == {"tasks.digit.drop": "not a number (NaN)"}
    assert ParityReport.from_dict(written).null_reasons == {"tasks.digit.drop": "not a number (NaN)"}


# --- ArtifactId -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, model, fmt, precision", [
    ("teacher-tflite-fp32", "teacher", "tflite", "fp32"),
    ("student-qat-tflite-int8io", "student-qat", "tflite", "int8io"),
    ("student-qat-c-int8", "student-qat", "c", "int8"),
    ("single-gender-onnx-fp16", "single-gender", "onnx", "fp16"),
    ("single-article-type-onnx-dynamic", "single-article-type", "onnx", "dynamic"),
    ("single-x-onnx-int8-tflite-int8", "single-x-onnx-int8", "tflite", "int8"),
])
def test_artifact_names_parse_from_the_right(name, model, fmt, precision):
    aid = ArtifactId.parse(name)
    assert (aid.model, aid.format, aid.precision) == (model, fmt, precision)
    assert aid.name == name and str(aid) == name
    assert aid.is_int8 == (precision in names.INT8_PRECISIONS)


@pytest.mark.parametrize("name", ["teacher", "teacher-tflite", "teacher-tflit-fp32", "-tflite-fp32", "tflite-fp32",
                                  "teacher-onnx-int8io", "teacher-c-fp32", ".tmp-123-teacher-tflite-fp32",
                                  "teacher-keras", "teacher-tflite-int4", ""])
def test_bad_artifact_names(name):
    with pytest.raises(EdgemtlError, match="artifact"):
        ArtifactId.parse(name, "artifact")
    assert not ArtifactId.is_artifact_name(name)


def test_artifact_order_and_single_task_names():
    ids = [ArtifactId.parse(n) for n in ("teacher-c-int8", "student-onnx-fp32", "teacher-tflite-int8io",
                                         "teacher-tflite-fp32", "teacher-onnx-fp16", "teacher-tflite-int8")]
    assert [a.name for a in sorted(ids)] == ["student-onnx-fp32", "teacher-tflite-fp32", "teacher-tflite-int8",
                                             "teacher-tflite-int8io", "teacher-onnx-fp16", "teacher-c-int8"]
    assert ArtifactId.parse("single-article-type-tflite-fp32").task == "article-type"
    assert ArtifactId.parse("teacher-tflite-fp32").task is None
    assert single_task_of(single_task_name("age")) == "age" and single_task_of("student") is None
    assert model_of_target("student-qat-keras") == "student-qat"
    assert model_of_target("student-qat-tflite-int8") == "student-qat"


# --- RunDir ---------------------------------------------------------------------------------------------------
def test_run_dir_names_every_path_inside_the_run(tmp_path):
    run, aid = RunDir(tmp_path), ArtifactId("teacher", "tflite", "int8")
    paths = {name: getattr(run, name) for name in ("recipe", "env", "preprocess", "report", "labels", "models_dir",
                                                   "exports", "rejected", "cache", "compress_md", "compress_json",
                                                   "student_search", "bench_dir", "bench_results", "bench_report",
                                                   "bench_html", "pareto_png")}
    paths.update({f"{m}(teacher)": getattr(run, m)("teacher") for m in (
        "model_dir", "keras_file", "qat_weights_file", "saved_model", "metrics_file", "history", "backup",
        "tensorboard", "export_summary")})
    paths.update(vocab=run.vocab("title"), bundle=run.bundle_dir(aid), bundle_manifest=run.bundle_manifest(aid),
                 bundle_parity=run.bundle_parity(aid), rejected_dir=run.rejected_dir(aid),
                 cache_file=run.cache_file("ab12"))
    assert all(p.is_relative_to(tmp_path) for p in paths.values())
    assert len(set(paths.values())) == len(paths), "two names for one path"
    assert run.bundle_dir(aid) == tmp_path / "exports" / "teacher-tflite-int8"
    assert run.bundle_manifest(aid).name == "manifest.json" and run.vocab("title").name == "vocab_title.txt"
    assert run.rejected_dir(aid).parent == run.rejected and not run.rejected_dir(aid).is_relative_to(
        run.bundle_dir(aid))


def test_bundles_skips_temporary_rejected_and_stray_folders(tmp_path):
    run = RunDir(tmp_path)
    for name in ("teacher-tflite-fp32", "student-qat-c-int8", "single-age-onnx-fp16", ".tmp-42-teacher-onnx-fp32",
                 "rejected", "notes", "teacher-onnx-int8"):
        (run.exports / name).mkdir(parents=True)
        (run.exports / name / "manifest.json").write_text("{}")
    (run.exports / "teacher-onnx-int8" / "manifest.json").unlink()  # half a bundle: no manifest
    (run.exports / "teacher-summary.json").write_text("[]")
    (run.rejected / "teacher-tflite-int8").mkdir()
    (run.rejected / "teacher-tflite-int8" / "manifest.json").write_text("{}")
    assert [a.name for a in run.bundles()] == ["single-age-onnx-fp16", "student-qat-c-int8", "teacher-tflite-fp32"]
    assert run.rejected_bundles() == [ArtifactId("teacher", "tflite", "int8")]
    assert RunDir(tmp_path / "empty").bundles() == []


def test_models_lists_model_folders_only(tmp_path):
    run = RunDir(tmp_path)
    for name, file in (("teacher", "model.keras"), ("student-qat", "model.qat-weights.h5"), ("notes", "model.txt")):
        run.model_dir(name).mkdir(parents=True)
        (run.model_dir(name) / file).write_text("x")
    assert run.models() == ["student-qat", "teacher"]
    assert run.model_file("student-qat") == run.qat_weights_file("student-qat")
    assert run.model_file("teacher") == run.keras_file("teacher")


# --- metrics.json ---------------------------------------------------------------------------------------------
def test_metrics_nan_written_as_null_with_a_reason(tmp_path):
    run = RunDir(tmp_path)
    written = write_metrics(run, "teacher", {"params": 10, "splits": {"test": {"age": {"mae": float("nan"),
                                                                                      "n": 0}}}})
    on_disk = _strict_loads(run.metrics_file("teacher").read_text())
    assert on_disk == written and on_disk["splits"]["test"]["age"]["mae"] is None
    assert on_disk["null_reasons"] == {"splits.test.age.mae": "not a number (NaN)"}
    assert read_metrics(run, "teacher") == on_disk
    updated = update_metrics(run, "teacher", {"sparsity": {"overall": None}}, {"sparsity.overall": "nothing pruned",
                                                                               "params": "not null: dropped"})
    assert updated["params"] == 10 and updated["null_reasons"] == {"splits.test.age.mae": "not a number (NaN)",
                                                                   "sparsity.overall": "nothing pruned"}


def test_metrics_corrupt_truncated_or_missing(tmp_path):
    run = RunDir(tmp_path)
    assert read_metrics(run, "teacher") == {}
    with pytest.raises(EdgemtlError, match="no metrics for model 'teacher'"):
        read_metrics(run, "teacher", missing_ok=False)
    write_metrics(run, "teacher", {"params": 10, "val": {"loss": 0.5}})
    path = run.metrics_file("teacher")
    path.write_text(path.read_text()[:20])  # a kill mid-write of a non-atomic writer
    with pytest.raises(EdgemtlError) as e:
        read_metrics(run, "teacher")
    assert str(path) in str(e.value) and "truncated" in str(e.value)
    path.write_text("[1, 2]")
    with pytest.raises(EdgemtlError, match="expected a JSON object"):
        read_metrics(run, "teacher")
    real = json.loads((DATA / "av-teacher.metrics.json").read_text())
    assert write_metrics(run, "teacher", real) == real  # today's metrics.json is already strict: unchanged


def test_history_drops_a_half_written_last_line(tmp_path):
    run = RunDir(tmp_path)
    run.model_dir("teacher").mkdir(parents=True)
    run.history("teacher").write_text('{"epoch": 1, "loss": 1.0}\n{"epoch": 2, "loss": NaN}\n{"epoch": 3, "lo')
    assert read_history(run, "teacher") == [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": None}]
    run.history("teacher").write_text('{"epoch": 1\n{"epoch": 2}\n')
    with pytest.raises(EdgemtlError, match="line 1"):
        read_history(run, "teacher")


# --- the formats table ----------------------------------------------------------------------------------------
def test_formats_table_matches_the_names_and_the_exporter():
    assert tuple(FORMATS) == names.FORMATS
    for name, fmt in FORMATS.items():
        assert fmt.precisions == names.FORMAT_PRECISIONS[name] and fmt.name == name
        assert set(fmt.keeps_float) <= set(fmt.precisions) and set(fmt.in_child) <= set(fmt.precisions)
    keeps = {(f.converts_as, p) for f in FORMATS.values() for p in f.keeps_float}
    assert keeps == {("tflite", "int8"), ("tflite", "int8io"), ("onnx", "fp16"), ("onnx", "dynamic"), ("onnx", "int8"),
                     ("micro", "int8")}
    assert {(f.name, p) for f in FORMATS.values() for p in f.in_child} == \
        {(f, p) for f in ("tflite", "c", "micro") for p in names.INT8_PRECISIONS if p in names.FORMAT_PRECISIONS[f]}
    assert FORMATS["c"].converts_as == "tflite" and not FORMATS["c"].benched and FORMATS["c"].load_package()
    assert format_of_file(".onnx").name == "onnx" and FORMATS["onnx"].model_file == "model.onnx"


def test_formats_converters_and_runners_resolve():
    for fmt in FORMATS.values():
        assert callable(fmt.load_converter()) and callable(fmt.load_runner()), fmt.name


def test_plan_and_bad_names():
    got = plan("student-qat", ["tflite", "c", "onnx"], ["fp32", "int8io"])
    assert [a.name for a in got] == ["student-qat-tflite-fp32", "student-qat-tflite-int8io", "student-qat-onnx-fp32"]
    with pytest.raises(EdgemtlError) as e:  # today's CLI wording (tests/test_export.py asserts it), one line each
        plan("teacher", ["tflit", "onnx"], ["int4"])
    assert e.value.messages == [
        "--format: unknown format 'tflit' (one of tflite, onnx, c, micro) (did you mean 'tflite'?)",
        "--precision: unknown precision 'int4' (one of fp32, fp16, dynamic, int8, int8io) (did you mean 'int8'?)"]
    with pytest.raises(EdgemtlError, match=r"^recipe.yaml: export.formats\[0\]: unknown format 'tf'"):
        get_format("tf", "recipe.yaml: export.formats[0]")


# --- layering -------------------------------------------------------------------------------------------------
def test_contract_modules_load_without_tensorflow_yaml_or_the_recipe():
    """runtime/manifest.py loaded on its own (the runtime package's __init__ is another module's business), and the
    TF-free modules: none may pull in TensorFlow, yaml or edgemtl.recipe."""
    code = f"""
import importlib.util, sys, types
sys.path.insert(0, {str(REPO)!r})
import edgemtl
pkg = types.ModuleType("edgemtl.runtime"); pkg.__path__ = [{str(REPO / 'edgemtl' / 'runtime')!r}]
sys.modules["edgemtl.runtime"] = pkg
import edgemtl.runtime.manifest, edgemtl.artifacts, edgemtl.rundir, edgemtl.model_metrics, edgemtl.export.formats
import edgemtl.export.converters
bad = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "yaml", "tf_keras", "onnx", "numpy")
       or m.startswith("edgemtl.recipe")]
print(",".join(bad))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", done.stdout


def test_the_runtime_package_imports_neither_yaml_nor_the_recipe_nor_tensorflow():
    """`import edgemtl.runtime` in a fresh interpreter, as a device with the light install does."""
    code = ("import sys; import edgemtl.runtime; "
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', "
            "'yaml') or m.startswith('edgemtl.recipe'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", done.stdout


def test_no_nan_helper_keeps_finite_values():
    from edgemtl.jsonio import strict
    clean, reasons = strict({"a": [1.0, float("inf"), -float("inf")], "b": (1, 2), "c": math.pi})
    assert clean == {"a": [1.0, None, None], "b": [1, 2], "c": math.pi}
    assert reasons == {"a[1]": "infinite", "a[2]": "-infinite"}
