"""edgemtl.runtime and `edgemtl predict`: raw files in, per-task answers out, without TensorFlow."""
import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO, FASHION_MINI, REPO
from edgemtl.cli import main
from edgemtl.errors import EdgemtlError
from edgemtl.runtime import load
from edgemtl.runtime.manifest import SCHEMA_VERSION


def _manifest_rows(path) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _raw_test_inputs(run, data, manifest):
    """The test split as raw values: file paths (absolute) and strings, straight from the manifest."""
    rows = _manifest_rows(manifest)
    model = load(run / "exports" / "teacher-tflite-fp32")
    raw = {}
    for entry in model.manifest.inputs:
        values = [rows[r - 1][entry.column] for r in data["test"].rows]
        raw[entry.name] = [str(manifest.parent / v) if entry.modality in ("image", "audio") else v for v in values]
    return raw


def _keras_outputs(run, data):
    from edgemtl.models.build import load_model

    return load_model(run / "models" / "teacher" / "model.keras").predict(data["test"].x, verbose=0)


@pytest.fixture(scope="session")
def fashion_data(fashion_tiny_run):
    from edgemtl.data.dataset import prepare
    from edgemtl.recipe import load_recipe

    recipe = load_recipe(fashion_tiny_run / "recipe.yaml")
    return prepare(recipe, fashion_tiny_run / "preprocess")


def _check_parity(run, data, manifest):
    raw = _raw_test_inputs(run, data, manifest)
    reference = _keras_outputs(run, data)
    for bundle in ("teacher-tflite-fp32", "teacher-onnx-fp32"):
        model = load(run / "exports" / bundle)
        arrays = model.prepare_batch(**raw)
        for name, array in arrays.items():  # the runtime's preprocessing is training's, bit for bit
            assert np.array_equal(array, data["test"].x[name]), (bundle, name)
        answers = model.predict_batch(**raw)
        for task, entry in model.outputs.items():
            probs = np.array([[a[task]["scores"][str(label)] for label in entry["labels"]] for a in answers])
            assert np.abs(probs - reference[task]).max() <= 1e-4, (bundle, task)
            top1 = [entry["labels"][i] for i in reference[task].argmax(axis=1)]
            assert [a[task]["label"] for a in answers] == top1, (bundle, task)


def _reference_inputs(model, image, title) -> dict:
    """The model's input arrays for one row computed the plain way: PIL's Image.open (a JPEG twice the input size a
    side drafted, as runtime.md says), convert and resize; the bundle's vocabulary read line by line and the title
    split into lowercase words."""
    import io

    from PIL import Image

    feeds = {}
    for entry in model.manifest.inputs:
        pre = entry.to_dict()["preprocess"]
        if entry.modality == "image":
            height, width = pre["size"]
            mode = "RGB" if pre["channels"] == 3 else "L"
            with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as im:
                if im.format == "JPEG" and im.width >= 2 * width and im.height >= 2 * height:
                    im.draft(mode, (width, height))
                im = im.convert(mode).resize((width, height), Image.BILINEAR)
            feeds[entry.name] = np.asarray(im, dtype=np.uint8).reshape(1, height, width, pre["channels"])
        else:
            vocab = (model.folder / pre["vocab"]).read_text().splitlines()
            index = {w: i for i, w in enumerate(vocab)}
            words = re.findall(r"\w+", title.lower())[:pre["max_length"]]
            ids = [index.get(w, 1) for w in words] + [0] * (pre["max_length"] - len(words))
            feeds[entry.name] = np.array([ids], dtype=np.int32)
    return feeds


def _reference_outputs(model, feeds: dict) -> dict:
    """Outputs by name from the bundle's model file run bare on the configuration its gate verified: LiteRT's
    signature runner, or an ONNX Runtime session."""
    settings = model.settings
    if model.manifest.model_path.suffix == ".onnx":
        import onnxruntime as ort

        from edgemtl.runtime.backends import ORT_LEVELS

        options = ort.SessionOptions()
        options.intra_op_num_threads = settings["threads"]
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                   ORT_LEVELS[settings["graph_optimization"]])
        session = ort.InferenceSession(str(model.manifest.model_path), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feeds)))
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if settings["kernels"] == "xnnpack" else \
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=str(model.manifest.model_path), num_threads=settings["threads"],
                              experimental_op_resolver_type=resolver)
    return interpreter.get_signature_runner()(**feeds)


def _reference_answers(model, outputs: dict, row: int) -> dict:
    """One row's answers from the model's outputs: the top class, its score and every class's, as floats."""
    answers = {}
    for task, entry in model.outputs.items():
        p = np.asarray(outputs[task], dtype=np.float64)[row]
        best = int(np.argmax(p))
        answers[task] = ({"value": float(p[0])} if entry["type"] == "regression" else
                         {"label": entry["labels"][best], "score": float(p[best]),
                          "scores": {str(label): float(v) for label, v in zip(entry["labels"], p)}})
    return answers


def test_predict_from_raw_files_answers_as_a_plain_reference_computes(fashion_tiny_run):
    """predict(image=<jpeg path>, title=<text>) on real rows answers exactly what a reference built the plain way
    gives (PIL's Image.open, the vocabulary file, the model run bare, each answer from the model's output row),
    for every bundle, from paths, bytes and photos re-encoded at the input size (decoded without draft); and
    predict_batch what the bare model gives for the same batch: the runtime's decode, feeding and answer building
    change no answer."""
    import io

    from PIL import Image

    rows = _manifest_rows(FASHION_MINI)[:40]
    for bundle in sorted((fashion_tiny_run / "exports").glob("teacher-*")):
        if not (bundle / "manifest.json").exists() or "micro" in bundle.name:
            continue
        model = load(bundle)
        size = next(tuple(e.to_dict()["preprocess"]["size"]) for e in model.manifest.inputs if e.modality == "image")
        batch = []
        for row in rows:
            path, title = FASHION_MINI.parent / row["image"], row["title"]
            buffer = io.BytesIO()  # the photo re-encoded at the input size: decoded without draft
            Image.open(path).convert("RGB").resize(size[::-1]).save(buffer, "JPEG", quality=90)
            for image in (path, buffer.getvalue()):
                feeds = _reference_inputs(model, image, title)
                expected = _reference_answers(model, _reference_outputs(model, feeds), 0)
                given = [str(image), image.read_bytes()] if isinstance(image, Path) else [image]
                for value in given:
                    assert model.predict(image=value, title=title) == expected, (bundle.name, row["image"])
            batch.append(_reference_inputs(model, path, title))
        outputs = _reference_outputs(model, {k: np.concatenate([f[k] for f in batch]) for k in batch[0]})
        raw = {"image": [str(FASHION_MINI.parent / r["image"]) for r in rows], "title": [r["title"] for r in rows]}
        assert model.predict_batch(**raw) == [_reference_answers(model, outputs, i) for i in range(len(rows))], \
            bundle.name


def test_fp32_parity_on_raw_files_av_digits(tiny_run, av_data):
    _check_parity(tiny_run, av_data, DEMO / "pairs.csv")


def test_fp32_parity_on_raw_files_fashion(fashion_tiny_run, fashion_data):
    _check_parity(fashion_tiny_run, fashion_data, FASHION_MINI)


def test_int8_bundles_agree_with_their_parity_json(tiny_run, av_data):
    raw = _raw_test_inputs(tiny_run, av_data, DEMO / "pairs.csv")
    for bundle in ("teacher-tflite-int8", "teacher-tflite-int8io", "teacher-onnx-int8"):
        model = load(tiny_run / "exports" / bundle)
        parity = json.loads((tiny_run / "exports" / bundle / "parity.json").read_text())
        answers = model.predict_batch(**raw)
        for task, entry in model.outputs.items():
            truth = [entry["labels"][i] for i in av_data["test"].y[task]]
            accuracy = np.mean([a[task]["label"] == t for a, t in zip(answers, truth)])
            assert accuracy == pytest.approx(parity["tasks"][task]["artifact"], abs=1e-9), (bundle, task)


def test_runtime_imports_without_tensorflow():
    code = ("import sys, time; t = time.time(); import edgemtl.runtime; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')]; "
            "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_answers_keep_no_state_between_calls(tiny_run):
    model = load(tiny_run / "exports" / "teacher-tflite-fp32")
    a = dict(audio=str(DEMO / "recordings/0_george_0.wav"), image=str(DEMO / "images/0000.png"))
    b = dict(audio=str(DEMO / "recordings/0_george_1.wav"), image=str(DEMO / "images/0001.png"))
    first = model.predict(**a)
    model.predict_batch(**{k: [v, b[k], v] for k, v in a.items()})  # a different batch size in between
    model.predict(**b)
    assert model.predict(**a) == first


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="checks the fallback of a machine without a GPU")
def test_gpu_devices_fall_back_to_the_cpu_without_a_gpu(tiny_run, capsys):
    sample = dict(audio=str(DEMO / "recordings/0_george_0.wav"), image=str(DEMO / "images/0000.png"))
    on_cpu = load(tiny_run / "exports" / "teacher-onnx-fp32").predict(**sample)
    for device in ("cuda", "cuda-graph"):
        model = load(tiny_run / "exports" / "teacher-onnx-fp32", device=device)
        assert model.runner.provider == "CPUExecutionProvider"
        assert model.predict(**sample) == on_cpu
    args = ["predict", str(tiny_run / "exports" / "teacher-onnx-fp32"), "--json"] + \
        [a for name, value in sample.items() for a in (f"--{name}", value)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert main(args + ["--device", "cuda-graph"]) == 0 and capsys.readouterr().out == printed


def test_inputs_as_arrays_and_bytes(tiny_run):
    from PIL import Image

    from edgemtl.kinds.audio import read_wav

    model = load(tiny_run / "exports" / "teacher-onnx-fp32")
    wav, image = DEMO / "recordings/3_jackson_0.wav", DEMO / "images/0000.png"
    by_path = model.predict(audio=str(wav), image=str(image))
    samples, rate = read_wav(wav)
    assert model.predict(audio=samples, rate=rate, image=Image.open(image)) == by_path
    assert model.predict(audio=wav.read_bytes(), image=np.asarray(Image.open(image))) == by_path


def test_decoding_of_every_task_type():
    from edgemtl.runtime.answers import answer

    binary = {"type": "binary", "labels": ["no", "yes"], "threshold": 0.5}
    assert answer(binary, np.array([0.8]))["label"] == "yes"
    assert answer(binary, np.array([0.3])) == {"label": "no", "score": 0.7, "scores": {"no": 0.7, "yes": 0.3}}
    multilabel = {"type": "multilabel", "labels": ["a", "b", "c"], "threshold": 0.5}
    assert answer(multilabel, np.array([0.9, 0.2, 0.6]))["labels"] == ["a", "c"]
    assert answer({"type": "regression"}, np.array([2012.5])) == {"value": 2012.5}
    multiclass = {"type": "multiclass", "labels": ["x", "y"]}
    assert answer(multiclass, np.array([0.25, 0.75]))["label"] == "y"


def test_predict_command_one_sample_and_json(tiny_run, capsys):
    bundle = str(tiny_run / "exports" / "teacher-tflite-int8")
    args = ["predict", bundle, "--audio", str(DEMO / "recordings/0_george_0.wav"), "--image",
            str(DEMO / "images/0000.png")]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("digit: ") and "\nspeaker: " in text
    assert main(args + ["--json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert set(answers["speaker"]["scores"]) == {"george", "jackson", "lucas", "nicolas", "theo", "yweweler"}


def test_predict_command_over_a_manifest(tiny_run, tmp_path):
    rows = _manifest_rows(DEMO / "pairs.csv")[:20]
    manifest = tmp_path / "rows.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["audio", "image"])
        writer.writeheader()
        writer.writerows({"audio": str(DEMO / r["audio"]), "image": str(DEMO / r["image"])} for r in rows)
    assert main(["predict", str(tiny_run / "exports" / "teacher-onnx-fp32"), "--manifest", str(manifest)]) == 0
    out = _manifest_rows(tmp_path / "rows.predictions.csv")
    assert len(out) == 20 and set(out[0]) == {"row", "digit", "digit_score", "speaker", "speaker_score"}
    model = load(tiny_run / "exports" / "teacher-onnx-fp32")
    assert out[4]["digit"] == model.predict(audio=str(DEMO / rows[4]["audio"]),
                                            image=str(DEMO / rows[4]["image"]))["digit"]["label"]


AUDIO, IMAGE = str(DEMO / "recordings/0_george_0.wav"), str(DEMO / "images/0000.png")


@pytest.mark.parametrize("inputs, message", [
    (dict(image=IMAGE), "missing input 'audio'; this model takes audio, image"),
    (dict(audio=AUDIO, image=IMAGE, imag=IMAGE), "unknown input 'imag' (did you mean 'image'?)"),
    (dict(audio=AUDIO, image=str(DEMO / "pairs.csv")), "input 'image': image '"),
    (dict(audio=IMAGE, image=IMAGE), "input 'audio': audio '"),
    (dict(audio=AUDIO, image="nowhere.png"), "input 'image': image file 'nowhere.png' not found"),
    (dict(audio=np.zeros(800, np.float32), rate=1000, image=IMAGE), "sample rate 1000 Hz is outside"),
    (dict(audio=np.zeros(8000 * 11, np.float32), rate=8000, image=IMAGE), "11.0 s of audio; the model hears 1 s"),
    (dict(audio=np.zeros(800, np.int16), rate=8000, image=IMAGE), "audio array has dtype int16"),
    (dict(audio=np.zeros((2, 800), np.float32), rate=8000, image=IMAGE), "expected one channel"),
    (dict(audio=AUDIO, image=np.zeros((28, 28, 5), np.uint8)), "image array has shape (28, 28, 5)"),
])
def test_bad_runtime_inputs_are_one_clear_message(tiny_run, inputs, message):
    model = load(tiny_run / "exports" / "teacher-tflite-int8io")
    with pytest.raises(EdgemtlError) as e:
        model.predict(**inputs)
    assert len(e.value.messages) == 1 and message in e.value.messages[0], e.value.messages


def test_empty_text_is_refused(fashion_tiny_run):
    model = load(fashion_tiny_run / "exports" / "teacher-onnx-fp32")
    with pytest.raises(EdgemtlError, match="input 'title': empty text"):
        model.predict(image=str(FASHION_MINI.parent / _manifest_rows(FASHION_MINI)[0]["image"]), title="  ")


def test_bad_bundles_are_one_clear_message(tiny_run, fashion_tiny_run, tmp_path):
    source = tiny_run / "exports" / "teacher-tflite-fp32"
    with pytest.raises(EdgemtlError, match="no manifest.json, so not an edgemtl bundle"):
        load(tmp_path)
    newer = tmp_path / "newer"
    shutil.copytree(source, newer)
    manifest = json.loads((newer / "manifest.json").read_text())
    (newer / "manifest.json").write_text(json.dumps({**manifest, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(EdgemtlError, match=f"schema version {SCHEMA_VERSION + 1} is newer than this runtime reads"):
        load(newer)
    swapped = tmp_path / "swapped"
    shutil.copytree(source, swapped)
    shutil.copy(fashion_tiny_run / "exports" / "teacher-tflite-fp32" / "model.tflite", swapped / "model.tflite")
    with pytest.raises(EdgemtlError, match="the model does not match its manifest.json"):
        load(swapped)
    (swapped / "model.tflite").write_bytes(b"not a model")
    with pytest.raises(EdgemtlError, match="LiteRT cannot load this model"):
        load(swapped)


def test_a_manifest_names_no_file_outside_its_bundle_and_no_fewer_labels_than_outputs(tiny_run, tmp_path):
    source = tiny_run / "exports" / "teacher-tflite-fp32"
    manifest = json.loads((source / "manifest.json").read_text())
    escaped = tmp_path / "escaped"
    shutil.copytree(source, escaped)
    (escaped / "manifest.json").write_text(json.dumps({**manifest, "file": "../teacher-tflite-fp32/model.tflite"}))
    with pytest.raises(EdgemtlError, match=r"manifest.json: file: .* leads out of the folder"):
        load(escaped)
    short = tmp_path / "short"
    shutil.copytree(source, short)
    digit = manifest["outputs"][0]
    cut = {**manifest, "outputs": [{**digit, "labels": digit["labels"][:-1]}, *manifest["outputs"][1:]]}
    (short / "manifest.json").write_text(json.dumps(cut))
    with pytest.raises(EdgemtlError, match=f"the model outputs {len(digit['labels'])} values for task 'digit', "
                                           f"the manifest has {len(digit['labels']) - 1} labels"):
        load(short)
    (short / "model.tflite").unlink()
    (short / "model.tflite").mkdir()
    with pytest.raises(EdgemtlError, match="'model.tflite' named by manifest.json .* is a folder, not a file"):
        load(short)


def test_watch_folder_example_answers_each_complete_sample(tiny_run, tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    shutil.copy(DEMO / "recordings/0_george_0.wav", incoming / "s1.wav")
    shutil.copy(DEMO / "images/0000.png", incoming / "s1.png")
    shutil.copy(DEMO / "images/0001.png", incoming / "s2.png")  # no audio yet: not a complete sample
    done = subprocess.run([sys.executable, str(REPO / "examples" / "watch_folder.py"),
                           str(tiny_run / "exports" / "teacher-tflite-int8"), str(incoming), "--once"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    expected = load(tiny_run / "exports" / "teacher-tflite-int8").predict(audio=str(incoming / "s1.wav"),
                                                                          image=str(incoming / "s1.png"))
    assert len(lines) == 1 and lines[0].startswith(f"s1: digit: {expected['digit']['label']} (")
