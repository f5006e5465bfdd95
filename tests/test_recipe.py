"""Recipe validation: every problem at once, one line each, naming the file and the key; never a traceback."""
import pytest

from conftest import AV_RECIPE, DEMO, write_recipe
from edgemtl.cli import main
from edgemtl.errors import EdgemtlError
from edgemtl.names import TASK_TYPES
from edgemtl.recipe import load_recipe

BASE = f"""
name: t
data:
  source: {DEMO / 'pairs.csv'}
  split: {{column: split}}
inputs:
  - {{name: audio, type: audio, column: audio, sample_rate: 8000}}
  - {{name: image, type: image, column: image, size: [28, 28], channels: 1}}
tasks:
  - {{name: digit, type: multiclass}}
  - {{name: speaker, type: multiclass}}
"""


def errors_of(tmp_path, text, overrides=()):
    with pytest.raises(EdgemtlError) as e:
        load_recipe(write_recipe(tmp_path, text, "fashion.yaml"), overrides)
    return e.value.messages


def test_shipped_recipes_load_with_defaults_filled():
    recipe = load_recipe(AV_RECIPE)
    assert recipe.training.loss_combination.type == "sum"
    assert recipe.inputs[0].encoder.type == "cnn"
    assert recipe.tasks[0].column == "digit"


def test_wrong_choice_names_file_path_and_options(tmp_path):
    text = BASE.replace("{name: speaker, type: multiclass}", "{name: speaker, type: multiclas}")
    assert errors_of(tmp_path, text) == [
        f"fashion.yaml: tasks[1].type: 'multiclas' is not one of {', '.join(TASK_TYPES)} "
        "(did you mean 'multiclass'?)"]


def test_every_problem_is_reported_at_once(tmp_path):
    text = BASE.replace("name: t\n", "name: t\ntraining: {epocs: 3, batch_size: -1}\nfusion: {type: gate}\n")
    assert errors_of(tmp_path, text) == [
        "fashion.yaml: fusion.type: 'gate' is not one of concat, average, weighted, gated, attention "
        "(did you mean 'gated'?)",
        "fashion.yaml: training.epocs: unknown key (did you mean 'epochs'?)",
        "fashion.yaml: training.batch_size: must be > 0, got -1",
    ]


def test_bench_section_names_a_wrong_backend(tmp_path):
    text = BASE.replace("name: t\n", "name: t\nbench: {backends: [litrt], threads: [0]}\n")
    assert errors_of(tmp_path, text) == [
        "fashion.yaml: bench.backends: unknown backend 'litrt' (one of litert, ort-cpu, ort-cuda, ort-cuda-graph, "
        "ort-tensorrt, keras, tf-function, tf-gpu) (did you mean 'litert'?)",
        "fashion.yaml: bench.threads: must be a list of positive integers, got [0]"]


def test_wrong_type_and_missing_key(tmp_path):
    text = BASE.replace("sample_rate: 8000", "sample_rate: fast").replace("  - {name: digit, type: multiclass}\n",
                                                                          "  - {name: digit}\n")
    assert errors_of(tmp_path, text) == [
        "fashion.yaml: inputs[0].sample_rate: expected an integer, got 'fast'",
        "fashion.yaml: tasks[0].type: required key missing",
    ]


def test_unknown_modality_and_encoder(tmp_path):
    text = BASE.replace("type: audio,", "type: sound,").replace(
        "channels: 1}", "channels: 1, encoder: {type: resnet50}}")
    assert errors_of(tmp_path, text) == [
        "fashion.yaml: inputs[0].type: 'sound' is not one of image, text, audio, numeric, sequence",
        "fashion.yaml: inputs[1].encoder.type: 'resnet50' is not one of cnn, mobilenet, resnet, backbone"
        " (did you mean {type: backbone, name: resnet50}?)",
    ]
    # a near backbone family gets the backbone form; a near encoder type still its type
    near = errors_of(tmp_path, BASE.replace("channels: 1}", "channels: 1, encoder: {type: efficientnet}}"))
    assert near[-1].endswith("(did you mean {type: backbone, name: efficientnet_b0}?)")
    near = errors_of(tmp_path, BASE.replace("channels: 1}", "channels: 1, encoder: {type: resnt}}"))
    assert near[-1].endswith("(did you mean 'resnet'?)")


def test_cross_key_checks(tmp_path):
    text = BASE.replace("{name: speaker, type: multiclass}", "{name: audio, type: multiclass}") + \
        "training: {early_stopping: {monitor: val_digit_acc}}\n"
    assert errors_of(tmp_path, text) == [
        "fashion.yaml: tasks[1].name: 'audio' is already used by inputs[0]",
        "fashion.yaml: training.early_stopping.monitor: 'val_digit_acc' is not a metric of this recipe "
        "(did you mean 'val_digit_accuracy'?)",
    ]


def test_match_labels_names_a_text_input_of_a_task_with_class_names(tmp_path):
    text = BASE.replace("  - {name: image,", "  - {name: words, type: text, column: speaker}\n  - {name: image,") \
        .replace("{name: digit, type: multiclass}", "{name: digit, type: multiclass, match_labels: word}") \
        .replace("{name: speaker, type: multiclass}", "{name: speaker, type: binary, match_labels: words}")
    assert errors_of(tmp_path, text) == [
        "fashion.yaml: tasks[0].match_labels: 'word' is not a text input (did you mean 'words'?)",
        "fashion.yaml: tasks[1].match_labels: a binary task has no class names to match "
        "(multiclass and multilabel tasks do)",
    ]
    text = BASE.replace("{name: digit, type: multiclass}", "{name: digit, type: multiclass, unmatched_weight: 1}")
    assert errors_of(tmp_path, text) == [
        "fashion.yaml: tasks[0].unmatched_weight: needs match_labels (it trains the head without the match)"]
    assert errors_of(tmp_path, text.replace("unmatched_weight: 1", "unmatched_weight: -1")) == [
        "fashion.yaml: tasks[0].unmatched_weight: must be >= 0, got -1"]


def test_task_metrics_are_checked_and_defaulted(tmp_path):
    text = BASE.replace("{name: digit, type: multiclass}", "{name: digit, type: multiclass, metrics: [acuracy]}")
    assert errors_of(tmp_path, text) == [
        "fashion.yaml: tasks[0].metrics[0]: 'acuracy' is not a multiclass metric (one of accuracy, macro_f1) "
        "(did you mean 'accuracy'?)"]
    recipe = load_recipe(write_recipe(tmp_path, BASE))
    assert recipe.tasks[0].metrics == ("accuracy", "macro_f1")


def test_missing_data_file_and_bad_yaml(tmp_path):
    assert errors_of(tmp_path, BASE.replace(str(DEMO / "pairs.csv"), "nowhere.csv")) == [
        f"fashion.yaml: data.source: file '{tmp_path / 'nowhere.csv'}' not found"]
    assert errors_of(tmp_path, "name: [unclosed\n")[0].startswith("fashion.yaml line 2: not valid YAML")


def test_overrides_reach_list_items_by_name(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, BASE), ["tasks.speaker.weight=2", "inputs[1].channels=3"])
    assert recipe.tasks[1].weight == 2.0 and recipe.inputs[1].channels == 3
    assert errors_of(tmp_path, BASE, ["tasks.speakr.weight=2"]) == [
        "--set tasks.speakr.weight: no item 'speakr' (did you mean 'speaker'?)"]


def test_check_cli_reports_data_problems_without_traceback(tmp_path, capsys):
    text = BASE.replace("column: image, size", "column: picture, size") + \
        "  - {name: split_task, type: multiclass, column: split}\n"
    path = write_recipe(tmp_path, text, "fashion.yaml")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == "error: pairs.csv: inputs[1].column: no column 'picture'\n"
    # A task column with one class in the training split:
    fixed = write_recipe(tmp_path, text.replace("column: picture", "column: image"), "fashion.yaml")
    assert main(["check", str(fixed)]) == 2
    err = capsys.readouterr().err  # after the warning that the 'val' rows are in no split (the recipe names no val)
    assert "split is 'val', none of train, test: 120 such row(s) are left out of every split" in err
    assert err.endswith("error: tasks[2] (split_task): column 'split' has 1 class(es) in the training split; "
                        "a classification task needs at least 2\n")


def test_check_cli_builds_and_runs_one_batch(capsys):
    assert main(["check", str(AV_RECIPE)]) == 0
    out = capsys.readouterr().out
    assert "ok — rows {'train': 1320, 'val': 120, 'test': 300}" in out
    assert "'digit': [4, 10], 'speaker': [4, 6]" in out


def test_docs_recipe_reference_matches_the_schema():
    from conftest import REPO
    from edgemtl.recipe.reference import END, START, reference_markdown

    doc = (REPO / "docs" / "reference.md").read_text()
    block = doc.split(START, 1)[1].split(END, 1)[0].strip()
    assert block == reference_markdown(), "run: edgemtl reference --update docs/reference.md"


@pytest.mark.parametrize("line, expected", [
    ("export: {formats: [tflit]}",
     "export.formats[0]: 'tflit' is not one of tflite, onnx, c, micro (did you mean 'tflite'?)"),
    ("export: {precisions: [int4]}",
     "export.precisions[0]: 'int4' is not one of fp32, fp16, dynamic, int8, int8io (did you mean 'int8'?)"),
    ("export: {tolerance: {digt: 0.5}}", "export.tolerance.digt: not a task of the recipe (did you mean 'digit'?)"),
    ("export: {model: [teachr]}",
     "export.model[0]: 'teachr' is not a model this recipe can produce (one of teacher, student, student-scratch, "
     "student-pruned, student-qat, single-digit, single-speaker) (did you mean 'teacher'?)"),
    ("export: {model: student-qat}\ncompress: {qat: {enabled: false}}",
     "export.model[0]: 'student-qat' needs compress.qat.enabled: true"),
    ("export: {tolerance: {digit: 2}}", "export.tolerance.digit: must be in [0, 1], got 2"),
    ("export: {default_tolerance: -0.1}", "export.default_tolerance: must be in [0, 1], got -0.1"),
    ("export: {opset: 99}", "export.opset: must be an ONNX opset from 7 to 21, got 99"),
    ("compress: {training: {epocs: 3}}", "compress.training.epocs: unknown key (did you mean 'epochs'?)"),
    ("compress: {student: {trunk: {unit: [8]}}}", "compress.student.trunk.unit: unknown key (did you mean 'units'?)"),
    ("compress: {distill: {tasks: {digit: {alpah: 0.5}}}}",
     "compress.distill.tasks.digit.alpah: unknown key (did you mean 'alpha'?)"),
])
def test_check_rejects_each_bad_export_and_compress_key_with_one_line(tmp_path, capsys, line, expected):
    path = write_recipe(tmp_path, BASE + line + "\n", "fashion.yaml")
    assert main(["check", str(path)]) == 2  # before any data is decoded or a model built
    assert capsys.readouterr().err == f"error: fashion.yaml: {expected}\n"


def test_recipe_is_frozen_typed_and_round_trips_through_to_dict():
    import dataclasses

    from edgemtl.recipe import recipe_hash, validate_recipe
    from edgemtl.recipe.schema import AudioCnnEncoder, AudioInput, ImageInput

    recipe = load_recipe(AV_RECIPE)
    assert isinstance(recipe.input("audio"), AudioInput) and isinstance(recipe.input("image"), ImageInput)
    assert isinstance(recipe.input("audio").encoder, AudioCnnEncoder)
    assert recipe.task("speaker").name == "speaker" and isinstance(recipe.export.model, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.seed = 1
    with pytest.raises(TypeError):
        recipe.export.tolerance["digit"] = 0.5
    with pytest.raises(KeyError, match="did you mean 'digit'"):
        recipe.task("digt")
    plain = recipe.to_dict()
    assert validate_recipe(plain) == recipe and recipe_hash(plain) == recipe_hash(recipe)
    assert "in" in validate_recipe({**plain, "data": {**plain["data"], "filters": [
        {"column": "split", "in": ["train"]}]}}).to_dict()["data"]["filters"][0]


def _satisfies(value, schema: dict, path="recipe") -> list:
    """A tiny checker of the JSON Schema subset the recipe schema uses (type, enum, const, properties, required,
    additionalProperties, items, anyOf, oneOf)."""
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
             "integer": int, "number": (int, float)}
    if "anyOf" in schema or "oneOf" in schema:
        options = schema.get("anyOf") or schema["oneOf"]
        results = [_satisfies(value, s, path) for s in options]
        matching = sum(not r for r in results)
        ok = matching >= 1 if "anyOf" in schema else matching == 1
        return [] if ok else [f"{path}: matches {matching} of {len(options)} options"]
    problems = []
    if "type" in schema:
        kind = kinds[schema["type"]]
        if not isinstance(value, kind) or (isinstance(value, bool) and schema["type"] in ("integer", "number")):
            return [f"{path}: not {schema['type']}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} not in enum")
    if "const" in schema and value != schema["const"]:
        problems.append(f"{path}: {value!r} is not {schema['const']!r}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        problems += [f"{path}.{k}: required" for k in schema.get("required", []) if k not in value]
        for k, v in value.items():
            if k in props:
                problems += _satisfies(v, props[k], f"{path}.{k}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{path}.{k}: not allowed")
            elif isinstance(schema.get("additionalProperties"), dict):
                problems += _satisfies(v, schema["additionalProperties"], f"{path}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            problems += _satisfies(v, schema["items"], f"{path}[{i}]")
    return problems


def test_json_schema_describes_the_recipe_and_the_shipped_recipes_satisfy_it(tmp_path):
    import json

    import yaml

    from conftest import FASHION_RECIPE

    out = tmp_path / "recipe.schema.json"
    assert main(["reference", "--json-schema", str(out)]) == 0
    schema = json.loads(out.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    props = schema["properties"]
    assert schema["required"] == ["name", "data", "inputs", "tasks"] and schema["additionalProperties"] is False
    assert props["export"]["properties"]["formats"]["items"]["enum"] == ["tflite", "onnx", "c", "micro"]
    assert props["tasks"]["items"]["properties"]["type"]["enum"] == list(TASK_TYPES)
    inputs = props["inputs"]["items"]["oneOf"]
    assert [i["properties"]["type"]["const"] for i in inputs] == ["image", "text", "audio", "numeric", "sequence"]
    image = inputs[0]["properties"]
    assert image["size"]["default"] == [64, 64] and "required" in inputs[0] and "type" in inputs[0]["required"]
    encoders = image["encoder"]["oneOf"]
    assert [e["properties"]["type"]["const"] for e in encoders] == ["cnn", "mobilenet", "resnet", "backbone"]
    assert "type" not in encoders[0].get("required", [])  # cnn is the default image encoder
    for path in (AV_RECIPE, FASHION_RECIPE):
        assert _satisfies(yaml.safe_load(path.read_text()), schema) == [], path
    bad = yaml.safe_load(AV_RECIPE.read_text())
    bad["export"] = {"formats": ["tflit"]}
    bad["inputs"][0]["encoder"] = {"type": "resnet50"}
    assert _satisfies(bad, schema) == ["recipe.inputs[0]: matches 0 of 5 options",
                                       "recipe.export.formats[0]: 'tflit' not in enum"]


def test_recipe_package_imports_no_higher_room():
    import subprocess
    import sys

    from conftest import REPO

    code = ("import sys, edgemtl.recipe, edgemtl.recipe.reference; "
            "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('edgemtl.')}))")
    rooms = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert not {"bench", "compress", "export", "models", "train", "tfk"} & set(eval(rooms)), rooms
