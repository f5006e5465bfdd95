"""Fuzz: the runtime and the bundles. Bad values for every input of a loaded bundle of the session run (EdgemtlError
naming the input), broken copies of a bundle (every manifest key missing, of the wrong type or with a bad value; the
model file, vocab and manifest damaged: EdgemtlError naming manifest.json / the file), and `predict` on them."""
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fuzz.helpers import Case, expect_cli_error, expect_runtime_error, params

BUNDLE_NAME = "teacher-tflite-fp32"


@pytest.fixture(scope="session")
def session_run(request):
    """The session's tiny trained run (tests/conftest.py), read-only: copy before corrupting. EDGEMTL_FUZZ_RUN
    names an existing one instead (a quicker loop while working on this suite)."""
    if os.environ.get("EDGEMTL_FUZZ_RUN"):
        return Path(os.environ["EDGEMTL_FUZZ_RUN"])
    return request.getfixturevalue("tiny_run")


@pytest.fixture(scope="session")
def bundle(session_run) -> Path:
    return session_run / "exports" / BUNDLE_NAME


@pytest.fixture(scope="session")
def model(bundle):
    from edgemtl.runtime import load

    return load(bundle)


@pytest.fixture(scope="session")
def good(session_run):
    """One valid raw value per input: a test row's WAV and PNG."""
    from conftest import DEMO

    return {"audio": str(DEMO / "recordings" / "0_george_0.wav"), "image": str(DEMO / "images" / "0000.png")}


def _values(modality: str) -> list:
    """(id, value, rate) of bad raw values for one input."""
    cases = [
        ("none", None, None), ("int", 5, None), ("float", 3.5, None), ("bool", True, None), ("dict", {"a": 1}, None),
        ("empty-list", [], None), ("nested-lists", [[[1, [2]]]], None), ("empty-string", "", None),
        ("missing-path", "/nonexistent/file.bin", None), ("folder-path", "/tmp", None),
        ("garbage-bytes", b"\x00\x01garbage" * 10, None), ("empty-bytes", b"", None),
        ("empty-array", np.zeros((0,), np.float32), 8000), ("string-array", np.array(["a", "b"]), 8000),
        ("object-array", np.array([None, {}], dtype=object), 8000),
        ("complex-array", np.ones(100, np.complex64), 8000), ("five-d-array", np.zeros((1, 1, 1, 1, 1)), 8000),
        ("nan-array", np.full((8000,) if modality == "audio" else (28, 28), np.nan, np.float32), 8000),
        ("inf-array", np.full((8000,) if modality == "audio" else (28, 28), np.inf, np.float32), 8000),
        ("path-with-nul", "a\x00b.wav", None), ("very-long-path", "x" * 10000, None),
    ]
    if modality == "audio":
        ok = np.zeros(8000, np.float32)
        cases += [
            ("rate-string", ok, "8000"), ("rate-zero", ok, 0), ("rate-negative", ok, -8000),
            ("rate-nan", ok, math.nan), ("rate-huge", ok, 10 ** 9), ("rate-missing", ok, None),
            ("rate-bool", ok, True), ("rate-list", ok, [8000]),
            ("two-channel-array", np.zeros((8000, 2), np.float32), 8000),
            ("int-samples", np.zeros(8000, np.int16), 8000), ("ten-minutes", np.zeros(8000 * 600, np.float32), 8000),
            ("zero-samples", np.zeros(0, np.float32), 8000),
            ("out-of-range-samples", np.full(8000, 1e6, np.float32), 8000),
        ]
    else:
        cases += [
            ("seven-channels", np.zeros((28, 28, 7), np.uint8), None), ("zero-size", np.zeros((0, 0), np.uint8), None),
            ("one-d-array", np.zeros(784, np.uint8), None), ("huge-array", np.zeros((20000, 20000), np.bool_), None),
            ("negative-floats", np.full((28, 28), -5.0, np.float32), None),
        ]
    return cases


INPUT_CASES = [Case(f"{name}.{cid}", (name, value, rate), f"input '{name}'")
               for name in ("audio", "image") for cid, value, rate in _values(name)]


@pytest.mark.parametrize("case", params(INPUT_CASES))
def test_bad_runtime_input(case, model, good):
    name, value, rate = case.value
    raw = dict(good, **{name: value})
    expect_runtime_error(lambda: model.predict(rate=rate, **raw), case.where)


BATCH_CASES = [
    Case("batch.empty-lists", {"audio": [], "image": []}, "empty"),
    Case("batch.lengths-differ", {"audio": ["A", "A"], "image": ["I"]}, "different lengths"),
    Case("batch.not-a-list", {"audio": "A", "image": "I"}, "input 'audio'"),
    Case("batch.none-items", {"audio": [None], "image": ["I"]}, "input 'audio'"),
    Case("batch.none", {"audio": None, "image": None}, "input 'audio'"),
    Case("batch.unknown-input", {"audio": ["A"], "image": ["I"], "video": ["V"]}, "unknown input 'video'"),
    Case("batch.missing-input", {"audio": ["A"]}, "missing input 'image'"),
    Case("predict.unknown-input", "one:video", "unknown input 'video'"),
    Case("predict.missing-input", "one:-image", "missing input 'image'"),
    Case("predict.misspelt-input", "one:imag", "did you mean 'image'"),
]


@pytest.mark.parametrize("case", params(BATCH_CASES))
def test_bad_runtime_call(case, model, good):
    if isinstance(case.value, str):
        what = case.value.split(":")[1]
        raw = dict(good)
        if what.startswith("-"):
            raw.pop(what[1:])
        else:
            raw[what] = good["image"]
        expect_runtime_error(lambda: model.predict(**raw), case.where)
        return
    raw = {k: [good["audio"] if x == "A" else good["image"] if x == "I" else x for x in v] if isinstance(v, list)
           else (good["audio"] if v == "A" else good["image"] if v == "I" else v) for k, v in case.value.items()}
    expect_runtime_error(lambda: model.predict_batch(**raw), case.where)


# ---- damaged bundles --------------------------------------------------------------------------------------------
def _manifest(bundle) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield path + (k,), v
            yield from _leaves(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield path + (i,), v
            yield from _leaves(v, path + (i,))


def _dotted(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


# keys a reader may do without (defaults or information only): removing them is not a bad input
OPTIONAL = {"parity", "quantization", "created", "edgemtl_version", "notes", "vocab", "column", "recipe_hash",
            "source", "tolerance"}
WRONG = {bool: "yes", int: "seven", float: "x", str: 12345, list: "not-a-list", dict: ["not", "a", "mapping"]}


def manifest_cases(manifest: dict) -> list:
    cases = []
    for path, value in _leaves(manifest):
        where = "manifest.json"
        last = path[-1]
        optional = any(isinstance(p, str) and p in OPTIONAL for p in path)
        if isinstance(last, str) and not optional:
            cases.append(Case(f"manifest.{_dotted(path)}=missing", ("delete", path), where))
        if any(isinstance(p, str) and p in OPTIONAL for p in path):
            continue
        for kind, bad in WRONG.items():
            if isinstance(value, kind) and value is not None:
                cases.append(Case(f"manifest.{_dotted(path)}=wrong-type", ("set", path, bad), where))
                break
    extra = [
        ("schema_version", -7), ("schema_version", 10 ** 6), ("format", "tpu"), ("precision", "int3"),
        ("file", "../../../../etc/passwd"), ("file", "/etc/passwd"), ("file", "missing.tflite"), ("file", ""),
        ("inputs", []), ("outputs", []), ("inputs", [None]), ("outputs", [7]),
        (("inputs", 0, "modality"), "video"), (("inputs", 0, "dtype"), "float128"), (("inputs", 0, "dtype"), "weird"),
        (("inputs", 1, "shape"), [None, 0, 0, 1]), (("inputs", 1, "shape"), [None, -28, 28, 1]),
        (("inputs", 1, "shape"), [None, 28]), (("inputs", 1, "preprocess", "size"), [0, 0]),
        (("inputs", 1, "preprocess", "size"), [100000, 100000]), (("inputs", 1, "preprocess", "channels"), 2),
        (("inputs", 0, "preprocess", "sample_rate"), 0), (("inputs", 0, "preprocess", "clip_samples"), -1),
        (("inputs", 0, "name"), "image"), (("inputs", 0, "name"), ""),
        (("outputs", 0, "labels"), ["only-one"]), (("outputs", 0, "labels"), []), (("outputs", 0, "type"), "ranking"),
        (("outputs", 0, "task"), "speaker"), (("outputs", 0, "decode"), "guess"),
    ]
    for path, value in extra:
        path = path if isinstance(path, tuple) else (path,)
        cases.append(Case(f"manifest.{_dotted(path)}={str(value)[:20]}", ("set", path, value), "manifest.json"))
    return cases


REFERENCE = Path(__file__).with_name("av_teacher_manifest.json")  # the keys this exporter writes (demo teacher)


def _manifest_case_params():
    cases = manifest_cases(json.loads(REFERENCE.read_text()))
    seen, unique = set(), []
    for c in cases:
        if c.id not in seen:
            seen.add(c.id)
            unique.append(c)
    return params(unique)


def _apply(manifest: dict, op):
    node = manifest
    path = op[1]
    try:
        for p in path[:-1]:
            node = node[p]
        if op[0] == "delete":
            del node[path[-1]]
        else:
            node[path[-1]] = op[2]
    except (KeyError, IndexError, TypeError):
        pytest.fail(f"the bundle's manifest has no {path}: update {REFERENCE.name} from a fresh export")


@pytest.fixture
def bundle_copy(bundle, tmp_path):
    copy_dir = tmp_path / BUNDLE_NAME
    shutil.copytree(bundle, copy_dir)
    return copy_dir


@pytest.mark.parametrize("case", _manifest_case_params())
def test_bad_manifest_key(case, bundle_copy):
    from edgemtl.runtime import load

    manifest = _manifest(bundle_copy)
    _apply(manifest, case.value)
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    expect_runtime_error(lambda: load(bundle_copy), case.where)


def _model_file(bundle) -> str:
    return _manifest(bundle)["file"]


FILE_CASES = [
    Case("bundle.manifest-missing", ("manifest.json", None), "manifest.json"),
    Case("bundle.manifest-folder", ("manifest.json", "folder"), "manifest.json"),
    Case("bundle.manifest-empty", ("manifest.json", b""), "manifest.json"),
    Case("bundle.manifest-truncated", ("manifest.json", "half"), "manifest.json"),
    Case("bundle.manifest-binary", ("manifest.json", bytes(range(256))), "manifest.json"),
    Case("bundle.manifest-a-list", ("manifest.json", b"[1, 2, 3]"), "manifest.json"),
    Case("bundle.manifest-nan", ("manifest.json", "nan"), "manifest.json"),
    Case("bundle.manifest-huge-number", ("manifest.json", b'{"schema_version": 1e999}'), "manifest.json"),
    Case("bundle.manifest-deep", ("manifest.json", b"[" * 100000 + b"]" * 100000), "manifest.json"),
    Case("bundle.model-missing", ("MODEL", None), "model.tflite"),
    Case("bundle.model-empty", ("MODEL", b""), "model"),
    Case("bundle.model-garbage", ("MODEL", b"garbage" * 100), "model"),
    Case("bundle.model-truncated", ("MODEL", "half"), "model"),
    Case("bundle.model-folder", ("MODEL", "folder"), "model"),
]


@pytest.mark.parametrize("case", params(FILE_CASES))
def test_damaged_bundle_file(case, bundle_copy, session_run):
    from edgemtl.runtime import load

    name, content = case.value
    target = bundle_copy / (_model_file(bundle_copy) if name == "MODEL" else name)
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        original = target.read_bytes()
        target.unlink()
    if content == "folder":
        target.mkdir()
    elif content == "half":
        target.write_bytes(original[: len(original) // 2])
    elif content == "nan":
        target.write_text(json.dumps(dict(_manifest(session_run / "exports" / BUNDLE_NAME), schema_version=math.nan)))
    elif content is not None:
        target.write_bytes(content)
    expect_runtime_error(lambda: load(bundle_copy), case.where)


def test_the_bundle_path_itself(tmp_path):
    from edgemtl.runtime import load

    expect_runtime_error(lambda: load(tmp_path / "nope"), "nope")
    (tmp_path / "file").write_text("x")
    expect_runtime_error(lambda: load(tmp_path / "file"), "file")
    expect_runtime_error(lambda: load(tmp_path), str(tmp_path.name))


# ---- predict on the command line ----------------------------------------------------------------------------------
def _predict_cases() -> list:
    return [
        Case("predict.bundle-missing", ["predict", "/nonexistent/bundle", "--audio", "A", "--image", "I"],
             "/nonexistent/bundle"),
        Case("predict.unknown-input-flag", ["predict", "B", "--video", "x", "--audio", "A", "--image", "I"], "video"),
        Case("predict.flag-without-value", ["predict", "B", "--audio"], "audio"),
        Case("predict.missing-input", ["predict", "B", "--audio", "A"], "image"),
        Case("predict.input-twice", ["predict", "B", "--audio", "A", "--audio", "A", "--image", "I"], "audio"),
        Case("predict.bad-device", ["predict", "B", "--device", "tpu", "--audio", "A", "--image", "I"], "--device"),
        Case("predict.input-missing-file", ["predict", "B", "--audio", "/nope.wav", "--image", "I"], "input 'audio'"),
        Case("predict.input-is-folder", ["predict", "B", "--audio", "/tmp", "--image", "I"], "input 'audio'"),
        Case("predict.stray-positional", ["predict", "B", "extra", "--audio", "A", "--image", "I"], "extra"),
        Case("predict.manifest-missing", ["predict", "B", "--manifest", "/nope.csv"], "/nope.csv"),
        Case("predict.manifest-binary", ["predict", "B", "--manifest", "BINARY"], "m.csv"),
        Case("predict.manifest-folder", ["predict", "B", "--manifest", "/tmp"], "/tmp"),
        Case("predict.manifest-no-columns", ["predict", "B", "--manifest", "NOCOLS"], "m.csv"),
        Case("predict.manifest-short-row", ["predict", "B", "--manifest", "SHORT"], "m.csv row"),
        Case("predict.manifest-bad-file-row", ["predict", "B", "--manifest", "BADROW"], "m.csv row 2"),
        Case("predict.manifest-empty", ["predict", "B", "--manifest", "EMPTY"], "m.csv"),
        Case("predict.out-is-folder", ["predict", "B", "--manifest", "GOOD", "--out", "/tmp"], "/tmp"),
        Case("predict.out-in-missing-folder", ["predict", "B", "--manifest", "GOOD", "--out", "/nope/dir/p.csv"],
             "/nope/dir"),
        Case("predict.out-is-the-manifest", ["predict", "B", "--manifest", "GOOD", "--out", "GOOD"], "m.csv"),
        Case("predict.manifest-with-inputs", ["predict", "B", "--manifest", "GOOD", "--audio", "A"], "--manifest"),
        Case("predict.manifest-twice", ["predict", "B", "--manifest", "GOOD", "--manifest", "GOOD"],
             "--manifest is given twice"),
        Case("predict.out-twice", ["predict", "B", "--manifest", "GOOD", "--out", "/tmp/a.csv", "--out", "/tmp/b.csv"],
             "--out is given twice"),
        Case("predict.device-twice", ["predict", "B", "--device", "cpu", "--device", "cuda", "--audio", "A",
                                      "--image", "I"], "--device is given twice"),
        Case("predict.image-twice", ["predict", "B", "--audio", "A", "--image", "I", "--image", "I"], "image"),
    ]


@pytest.mark.parametrize("case", params(_predict_cases()))
def test_bad_predict_command(case, bundle, good, tmp_path, capsys):
    m = tmp_path / "m.csv"
    rows = f"audio,image\n{good['audio']},{good['image']}\n"
    contents = {"BINARY": bytes(range(256)) * 8, "NOCOLS": b"x,y\n1,2\n",
                "SHORT": f"audio,image\n{good['audio']}\n".encode(),
                "BADROW": (rows + f"/nope.wav,{good['image']}\n").encode(), "EMPTY": b"", "GOOD": rows.encode()}
    argv = []
    for a in case.value:
        if a in contents:
            m.write_bytes(contents[a])
            argv.append(m)
        else:
            argv.append({"B": bundle, "A": good["audio"], "I": good["image"]}.get(a, a))
    where = case.where if case.where != "GOOD" else str(m)
    expect_cli_error(argv, where, capsys)



# ---- predict --manifest with a numeric input (its manifest entry has `columns`, no `column`) ----------------------
@pytest.fixture(scope="module")
def numeric_bundle(tmp_path_factory):
    """A one-epoch model of two numeric columns of tests/data/fashion_mini, exported as fp32 TFLite."""
    from conftest import FASHION_MINI, write_recipe
    from edgemtl.cli import main

    root = tmp_path_factory.mktemp("numeric")
    recipe = write_recipe(root, f"""name: numeric_tiny
stages: [train, export]
data: {{source: {FASHION_MINI}, split: {{ratios: [0.7, 0.1, 0.2]}}}}
inputs: [{{name: numbers, type: numeric, columns: [year, id]}}]
trunk: {{units: [8]}}
tasks: [{{name: gender, type: multiclass}}]
training: {{epochs: 1, batch_size: 64}}
export: {{formats: [tflite], precisions: [fp32], default_tolerance: 1.0}}
""")
    assert main(["run", str(recipe), "--out", str(root / "run"), "-q"]) == 0
    return root / "run" / "exports" / "teacher-tflite-fp32"


def test_predict_manifest_feeds_numeric_inputs_from_their_columns(numeric_bundle, tmp_path, capsys):
    import csv

    from conftest import FASHION_MINI
    from edgemtl.cli import main
    from edgemtl.runtime import load

    model = load(numeric_bundle)
    assert model.manifest.input("numbers").column is None  # what made predict --manifest unable to feed it
    with open(FASHION_MINI, newline="") as f:
        rows = [{"id": r["id"], "year": r["year"]} for r in list(csv.DictReader(f))[:5]]
    manifest = tmp_path / "rows.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "year"])  # another column order than the recipe's
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "answers.csv"
    assert main(["predict", str(numeric_bundle), "--manifest", str(manifest), "--out", str(out)]) == 0
    with open(out, newline="") as f:
        got = list(csv.DictReader(f))
    want = [model.predict(numbers=[float(r["year"]), float(r["id"])])["gender"] for r in rows]
    assert [g["gender"] for g in got] == [w["label"] for w in want]
    assert [round(float(g["gender_score"]), 4) for g in got] == [round(w["score"], 4) for w in want]
    rows[3]["year"] = "soon"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "year"])
        writer.writeheader()
        writer.writerows(rows)
    expect_cli_error(["predict", numeric_bundle, "--manifest", manifest, "--out", out],
                     f"{manifest} row 4, columns year, id", capsys)
    (manifest).write_text("id\n1\n")
    expect_cli_error(["predict", numeric_bundle, "--manifest", manifest], "no column 'year'", capsys)
