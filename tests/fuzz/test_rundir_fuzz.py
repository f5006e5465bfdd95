"""Fuzz: run directories. A copy of the session run with one file damaged, hand-edited or copied from elsewhere:
metrics.json, preprocess/labels.json, recipe.yaml (edited after training: the run's fingerprint.json names the key),
fingerprint.json itself, a model.keras of another recipe. Each is one `error:` line naming the file (exit 2),
found before any data is decoded or model loaded; the damaged file is left as it was."""
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from conftest import DEMO, FASHION_MINI
from fuzz.helpers import Case, expect_cli_error, params
from fuzz.test_runtime_fuzz import session_run  # noqa: F401 - fixture

DATA = str(DEMO / "pairs.csv")


@pytest.fixture
def run(session_run, tmp_path):  # noqa: F811 - the imported fixture
    """The session run without its exports and single-task models (what these cases need, copied fast)."""
    copy = tmp_path / "run"
    shutil.copytree(session_run, copy, ignore=shutil.ignore_patterns("exports", "single-*", "tensorboard", "cache",
                                                                     "saved_model", "bench", ".lock"))
    return copy


def _edit(old: str, new: str):
    def apply(run: Path):
        text = (run / "recipe.yaml").read_text()
        assert old in text, f"the session run's recipe.yaml has no {old!r}"
        (run / "recipe.yaml").write_text(text.replace(old, new, 1))
    return apply


def _write(rel: str, content):
    def apply(run: Path):
        path = run / rel
        if content == "half":
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        elif content == "folder":
            path.unlink()
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
    return apply


def _labels(change):
    def apply(run: Path):
        path = run / "preprocess" / "labels.json"
        labels = json.loads(path.read_text())
        change(labels)
        path.write_text(json.dumps(labels))
    return apply


def _model_config(old: bytes, new: bytes):
    """model.keras with its config.json edited: the same weights file, another recipe's architecture."""
    def apply(run: Path):
        path = run / "models" / "teacher" / "model.keras"
        with zipfile.ZipFile(path) as z:
            items = {n: z.read(n) for n in z.namelist()}
        assert old in items["config.json"]
        items["config.json"] = items["config.json"].replace(old, new)
        with zipfile.ZipFile(path, "w") as z:
            for name, data in items.items():
                z.writestr(name, data)
    return apply


def _foreign_recipe(run: Path):
    """RUN/recipe.yaml replaced by another recipe's resolved recipe (with its own hash line)."""
    from edgemtl.recipe import load_recipe, recipe_hash
    from edgemtl.stages import yaml

    other = run.parent / "other.yaml"
    other.write_text(f"""name: other
data: {{source: {FASHION_MINI}}}
inputs: [{{name: image, type: image, column: image, size: [32, 32]}}]
tasks: [{{name: gender, type: multiclass}}]
""")
    recipe = load_recipe(other)
    (run / "recipe.yaml").write_text(f"# recipe_hash: {recipe_hash(recipe)}\n" + yaml.safe_dump(recipe.to_dict()))


SIZE = "  size:\n  - 28\n  - 28\n"
METRICS, LABELS, RECIPE, MODEL = ("models/teacher/metrics.json", "preprocess/labels.json", "recipe.yaml",
                                  "models/teacher/model.keras")
# (id, mutation, command, the place the error names); report reads metrics, evaluate reads labels first
CASES = [
    Case("metrics.truncated", (_write(METRICS, "half"), "report"), METRICS),
    Case("metrics.empty", (_write(METRICS, b""), "report"), METRICS),
    Case("metrics.binary", (_write(METRICS, bytes(range(256))), "report"), METRICS),
    Case("metrics.a-list", (_write(METRICS, [1, 2]), "report"), METRICS),
    Case("metrics.folder", (_write(METRICS, "folder"), "report"), METRICS),
    Case("labels.truncated", (_write(LABELS, "half"), "evaluate"), LABELS),
    Case("labels.empty", (_write(LABELS, b""), "evaluate"), LABELS),
    Case("labels.binary", (_write(LABELS, bytes(range(256))), "evaluate"), LABELS),
    Case("labels.a-list", (_write(LABELS, [1, 2]), "evaluate"), LABELS),
    Case("labels.folder", (_write(LABELS, "folder"), "evaluate"), LABELS),
    Case("labels.task-missing", (_labels(lambda lab: lab.pop("speaker")), "evaluate"), "no entry for task 'speaker'"),
    Case("labels.entry-a-string", (_labels(lambda lab: lab.update(digit="0-9")), "evaluate"), "task 'digit'"),
    Case("labels.classes-a-number", (_labels(lambda lab: lab["digit"].update(classes=10)), "evaluate"),
         "task 'digit': 'classes'"),
    Case("labels.classes-numbers", (_labels(lambda lab: lab["digit"].update(classes=list(range(10)))), "evaluate"),
         "task 'digit': 'classes'"),
    Case("labels.classes-twice", (_labels(lambda lab: lab["digit"].update(classes=["0"] * 10)), "evaluate"),
         "names a class twice"),
    Case("labels.classes-missing", (_labels(lambda lab: lab["digit"].pop("classes")), "evaluate"),
         "task 'digit': 'classes'"),
    Case("labels.type-changed", (_labels(lambda lab: lab["digit"].update(type="regression")), "evaluate"),
         "task 'digit': labels of a 'regression' task"),
    Case("recipe.image-size-edited", (_edit(SIZE, "  size:\n  - 32\n  - 32\n"), "report"),
         "recipe.yaml: inputs.image.size is [32, 32], the run's models were built with [28, 28]"),
    Case("recipe.image-channels-edited", (_edit("  channels: 1\n", "  channels: 3\n"), "report"),
         "inputs.image.channels is 3"),
    Case("recipe.audio-rate-edited", (_edit("  sample_rate: 8000\n", "  sample_rate: 16000\n"), "evaluate"),
         "inputs.audio.sample_rate is 16000"),
    Case("recipe.encoder-edited", (_edit("    - 8\n    - 16\n", "    - 8\n    - 32\n"), "evaluate"),
         "inputs.audio.encoder.filters"),
    Case("recipe.trunk-edited", (_edit("trunk:\n  units:\n  - 32\n", "trunk:\n  units:\n  - 64\n"), "evaluate"),
         "trunk.units is [64]"),
    Case("recipe.task-added", (_edit("tasks:\n", "tasks:\n- name: parity\n  type: multiclass\n  column: digit\n"),
                               "evaluate"), "tasks: 'parity' is new"),
    Case("recipe.task-renamed", (_edit("- name: speaker\n", "- name: voice\n"), "report"),
         "tasks: 'voice' is new, 'speaker' is gone"),
    Case("recipe.task-type-edited", (_edit("  type: multiclass\n", "  type: multilabel\n"), "evaluate"),
         "tasks.digit.type is \"multilabel\""),
    Case("recipe.input-renamed", (_edit("- name: image\n", "- name: picture\n"), "evaluate"),
         "inputs: 'picture' is new, 'image' is gone"),
    Case("recipe.from-another-recipe", (_foreign_recipe, "evaluate"), "recipe.yaml: inputs: "),
    Case("recipe.from-another-recipe-export", (_foreign_recipe, "export"), "recipe.yaml: inputs: "),
    Case("recipe.from-another-recipe-bench", (_foreign_recipe, "bench"), "recipe.yaml: inputs: "),
    Case("recipe.from-another-recipe-pack", (_foreign_recipe, "pack"), "recipe.yaml: inputs: "),
    Case("fingerprint.truncated", (_write("fingerprint.json", "half"), "report"), "fingerprint.json"),
    Case("fingerprint.a-list", (_write("fingerprint.json", [1]), "evaluate"), "fingerprint.json"),
    Case("fingerprint.no-built-from", (_write("fingerprint.json", {"version": 1}), "evaluate"), "fingerprint.json"),
    Case("model.input-of-another-recipe", (_model_config(b'"image"', b'"picture"'), "evaluate"),
         "model.keras: has input 'picture'"),
    Case("model.image-size-of-another-recipe", (_model_config(b"[null, 28, 28, 1]", b"[null, 32, 32, 1]"),
                                                "export"), "model.keras: input 'image' has shape [32, 32, 1]"),
    Case("model.task-of-another-recipe", (_model_config(b'"speaker"', b'"gender"'), "evaluate"),
         "model.keras: has output 'gender'"),
    Case("model.input-of-another-recipe-compress", (_model_config(b'"image"', b'"picture"'), "compress"),
         "model.keras: has input 'picture'"),
]
COMMANDS = {"report": [], "evaluate": ["--data", DATA], "export": ["--data", DATA, "--format", "onnx"],
            "bench": ["--data", DATA], "pack": ["OUT"], "compress": []}


@pytest.mark.parametrize("case", params(CASES))
def test_damaged_run_directory(case, run, capsys):
    mutate, command = case.value
    mutate(run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    extra = [str(run.parent / "pack") if a == "OUT" else a for a in COMMANDS[command]]
    line = expect_cli_error([command, run] + extra, case.where, capsys)
    assert str(run) in line or "--" in line  # the file is named by its path in the run
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    assert {p: after.get(p) for p in before} == before, "a refused command changed the run"
    assert not [p for p in after if ".tmp-" in str(p)]
    assert not (run.parent / "pack").exists()


def test_the_session_run_has_a_fingerprint_that_matches(session_run):  # noqa: F811 - the imported fixture
    """The check has something to compare with in a fresh run, and passes on it (every model file included)."""
    from edgemtl.recipe import load_recipe
    from edgemtl.runcheck import FINGERPRINT_FILE, check_run
    from edgemtl.rundir import RunDir

    run = RunDir(session_run)
    built = json.loads((session_run / FINGERPRINT_FILE).read_text())["built_from"]
    assert built["inputs.image.size"] == [28, 28] and "tasks.digit.type" in built
    assert len(run.models()) >= 3  # teacher and the single-task models: all checked
    check_run(run, load_recipe(run.recipe))


def test_training_only_keys_may_be_edited_after_training(run, capsys):
    """Keys that change no built file (dropout, augmentation, loss weights, metrics) are not refused."""
    _edit("  dropout: 0.3\n", "  dropout: 0.1\n")(run)
    _edit("  weight: 1.0\n", "  weight: 2.0\n")(run)
    from edgemtl.cli import main

    assert main(["report", str(run)]) == 0
    assert "error" not in capsys.readouterr().err


def test_a_half_written_history_line_is_dropped_before_training_goes_on(tmp_path, caplog):
    """--resume after a kill during the append: the half row is dropped with a warning and the file rewritten, so the
    next epoch's row starts on its own line (appending to the half line made the whole file unreadable)."""
    from edgemtl.model_metrics import read_history_file
    from edgemtl.train.callbacks import BestModel

    history = tmp_path / "history.jsonl"
    history.write_text('{"epoch": 1, "loss": 2.0, "val_loss": 0.5}\n{"epoch": 2, "loss": 1.0, "val_loss": 0.4}\n'
                       '{"epoch": 3, "loss": 0.')
    best = BestModel(None, "val_loss", None, tmp_path, 4, [])
    assert "half-written last line" in caplog.text
    assert [r["epoch"] for r in best.history] == [1, 2] and best.best_epoch == 2
    best.on_epoch_end(2, {"loss": 0.9, "val_loss": 0.6})  # epoch 3 again, not better: appended, no model saved
    assert [r["epoch"] for r in read_history_file(history)] == [1, 2, 3]


def test_keys_a_newer_edgemtl_adds_or_drops_are_no_edit(run, capsys):
    """A run made by an older edgemtl: its fingerprint lacks keys added since (with their defaults) and holds keys
    dropped since; neither is taken for a hand edit."""
    from edgemtl.cli import main

    path = run / "fingerprint.json"
    saved = json.loads(path.read_text())
    del saved["built_from"]["tasks.digit.separator"]
    saved["built_from"]["inputs.image.a_key_dropped_since"] = 3
    path.write_text(json.dumps(saved))
    assert main(["report", str(run)]) == 0
    assert "error" not in capsys.readouterr().err
    _edit("- name: image\n", "- name: picture\n")(run)  # a renamed input is still found by its name
    assert main(["report", str(run)]) == 2
    assert "inputs: 'picture' is new, 'image' is gone" in capsys.readouterr().err
