"""Optional inputs (`inputs[].optional`): rows with an empty image train with the image absent, the exported int8
model takes `image_present`, the runtime answers without an image, and evaluation and parity cover both patterns.
One tiny run on real fashion_mini rows, a third of their image cells blanked."""
import csv
import dataclasses
import json

import numpy as np
import pytest

from conftest import FASHION_MINI, write_recipe

BLANK_EVERY = 3  # every third row loses its photo


def blanked_manifest(folder):
    """fashion_mini with every BLANK_EVERY-th image cell emptied (absolute paths to the real images otherwise)."""
    with open(FASHION_MINI, newline="") as f:
        rows = list(csv.DictReader(f))
    out = folder / "products.csv"
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for i, r in enumerate(rows):
            writer.writerow({**r, "image": "" if i % BLANK_EVERY == 0 else str(FASHION_MINI.parent / r["image"])})
    return out, rows


def optional_recipe(source, extra: str = "") -> str:
    return f"""
name: fashion_optional
stages: [train, evaluate, export, report]
data: {{source: {source}, split: {{ratios: [0.7, 0.1, 0.2]}}}}
inputs:
  - {{name: image, type: image, column: image, size: [32, 32], optional: true,
     encoder: {{type: cnn, filters: [8, 16]}}}}
  - {{name: title, type: text, column: title, max_length: 12,
     encoder: {{type: conv1d, embedding_dim: 16, filters: 16}}}}
fusion: {{modality_dropout: 0.3}}
trunk: {{units: [32]}}
tasks:
  - {{name: gender, type: multiclass, match_labels: title}}
  - {{name: masterCategory, type: multiclass}}
training: {{epochs: 2, batch_size: 16, learning_rate: 0.01}}
export: {{model: teacher, formats: [tflite], precisions: [int8], default_tolerance: 1.0}}
{extra}"""


@pytest.fixture(scope="session")
def optional_run(tmp_path_factory):
    from edgemtl.cli import main

    root = tmp_path_factory.mktemp("optional")
    source, rows = blanked_manifest(root)
    recipe = write_recipe(root, optional_recipe(source), "fashion_optional.yaml")
    assert main(["run", str(recipe), "--out", str(root / "run")]) == 0
    return root / "run", recipe, rows


@pytest.fixture(scope="session")
def optional_data(optional_run):
    from edgemtl.data.dataset import prepare
    from edgemtl.recipe import load_recipe

    run, recipe, _ = optional_run
    return prepare(load_recipe(recipe), run / "preprocess")


def bundle(run):
    return run / "exports" / "teacher-tflite-int8"


def test_empty_cells_mark_the_input_absent_and_no_row_is_lost(optional_run, optional_data):
    _, _, rows = optional_run
    assert sum(len(optional_data[s]) for s in ("train", "val", "test")) == len(rows)
    assert not optional_data.skipped
    for name in ("train", "test"):
        split = optional_data[name]
        present = split.x["image_present"][:, 0]
        blank = np.array([int(r) - 1 for r in split.rows]) % BLANK_EVERY == 0  # manifest rows are 1-based
        np.testing.assert_array_equal(present, (~blank).astype(np.float32))
        absent_images = split.x["image"][present == 0]
        if name == "test":  # what the runtime feeds for a missing image
            assert not absent_images.any()
        else:  # training placeholders are real photos (batch-norm statistics), discarded by the graph
            assert absent_images.reshape(len(absent_images), -1).any(axis=1).all()


def test_a_required_input_with_an_empty_cell_is_still_a_bad_row(tmp_path):
    from edgemtl.data.dataset import prepare
    from edgemtl.errors import EdgemtlError
    from edgemtl.recipe import load_recipe

    source, _ = blanked_manifest(tmp_path)
    text = optional_recipe(source).replace("optional: true,", "")
    assert "optional: true" not in text
    with pytest.raises(EdgemtlError, match="row 1"):
        prepare(load_recipe(write_recipe(tmp_path, text)))


def test_every_input_optional_is_a_recipe_error(tmp_path):
    from edgemtl.errors import EdgemtlError
    from edgemtl.recipe import load_recipe

    text = optional_recipe(FASHION_MINI).replace("column: title, ", "column: title, optional: true, ")
    with pytest.raises(EdgemtlError, match=r"inputs\[\d\]\.optional: every input is optional"):
        load_recipe(write_recipe(tmp_path, text))


def test_the_manifest_lists_the_optional_input_and_its_presence_input(optional_run):
    from edgemtl.runtime.manifest import SCHEMA_VERSION, BundleManifest

    manifest = BundleManifest.read(bundle(optional_run[0]))
    assert manifest.schema_version == SCHEMA_VERSION >= 3
    image, title = manifest.input("image"), manifest.input("title")
    assert (image.optional, image.presence) == (True, "image_present")
    assert (title.optional, title.presence) == (False, None)
    assert manifest.model_input_names == ("image", "title", "image_present")
    raw = json.loads((bundle(optional_run[0]) / "manifest.json").read_text())
    raw["inputs"][0].pop("presence")
    from edgemtl.errors import EdgemtlError

    with pytest.raises(EdgemtlError, match=r"inputs\[0\]\.presence"):
        BundleManifest.from_dict(raw)


def test_the_int8_runtime_answers_with_and_without_the_image(optional_run, optional_data):
    from edgemtl.runtime import load

    model = load(bundle(optional_run[0]))
    test = optional_data["test"]
    i = int(np.flatnonzero(test.x["image_present"][:, 0] == 1)[0])
    title = "Nike Men Black Running Shoes"
    without = model.predict(title=title)
    also_without = model.predict(title=title, image=None)
    with_image = model.predict(title=title, image=test.x["image"][i])
    assert without == also_without
    assert set(without) == {"gender", "masterCategory"}
    # the runtime fed zeros and presence 0: the same as running those arrays directly
    arrays = model.prepare(title=title)
    np.testing.assert_array_equal(arrays["image_present"], [[0.0]])
    assert not arrays["image"].any()
    direct = model.run({**arrays})
    assert np.allclose(direct["gender"][0], [without["gender"]["scores"][c] for c in without["gender"]["scores"]])
    # the photo changes what the model sees: presence 1 and the image's vector
    assert with_image["masterCategory"]["scores"] != without["masterCategory"]["scores"]
    batch = model.predict_batch(title=[title, title], image=[None, test.x["image"][i]])
    assert batch == [without, with_image]


def test_predict_cli_answers_from_the_title_alone(optional_run, capsys):
    from edgemtl.cli import main

    assert main(["predict", str(bundle(optional_run[0])), "--title", "Puma Women Blue Track Pants", "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert set(answers) == {"gender", "masterCategory"}


def test_metrics_and_report_give_each_presence_pattern(optional_run, optional_data):
    from edgemtl.model_metrics import read_metrics
    from edgemtl.rundir import RunDir

    run = optional_run[0]
    metrics = read_metrics(RunDir(run), "teacher", missing_ok=False)
    by_pattern = metrics["patterns"]["test"]
    assert set(by_pattern) == {"image+title", "title"}
    present = optional_data["test"].x["image_present"][:, 0]
    assert by_pattern["image+title"]["rows"] == int(present.sum())
    assert by_pattern["title"]["rows"] == int((present == 0).sum())
    assert by_pattern["title"]["gender"]["n"] + by_pattern["image+title"]["gender"]["n"] == \
        metrics["splits"]["test"]["gender"]["n"]
    report = (run / "report.md").read_text()
    assert "Per presence pattern" in report and "title (" in report and "image+title (" in report


def test_parity_and_calibration_cover_both_patterns(optional_run, optional_data):
    from edgemtl.export.convert import calibration_rows
    from edgemtl.recipe import load_recipe
    from edgemtl.runtime.manifest import ParityReport

    report = ParityReport.read(bundle(optional_run[0]))
    assert set(report.patterns) == {"image+title", "title"}
    assert sum(p["rows"] for p in report.patterns.values()) == report.rows
    for p in report.patterns.values():
        assert set(p["tasks"]) == {"gender", "masterCategory"} and p["tasks"]["gender"]["drop"] is not None
    recipe = load_recipe(optional_run[1])
    train = optional_data["train"]
    rows = calibration_rows(train, list(recipe.tasks), 20, recipe.seed)
    assert {float(v) for v in train.x["image_present"][rows, 0]} == {0.0, 1.0}


def test_a_drop_on_one_pattern_alone_fails_the_gate(optional_run, optional_data):
    """The gate's per-pattern check on the run's real Keras outputs: wrong answers on the title-only rows only."""
    from edgemtl.export.parity import _pattern_parity
    from edgemtl.models.build import load_model
    from edgemtl.presence import patterns
    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import RunDir

    run, recipe_path, _ = optional_run
    recipe = load_recipe(recipe_path)
    test = optional_data["test"]
    model = load_model(RunDir(run).require_model("teacher"))
    reference = model.predict(test.x, verbose=0)
    rows = patterns(test.x, ["image", "title"])
    broken = {k: v.copy() for k, v in reference.items()}
    y = test.y["gender"]
    alone = rows == "title"
    wrong = np.roll(np.eye(reference["gender"].shape[1], dtype=np.float32)[np.maximum(y, 0)], 1, axis=1)
    broken["gender"][alone] = wrong[alone]  # every title-only row answered with another class
    tolerance = {"gender": 0.05, "masterCategory": 0.05}
    tasks = [dataclasses.replace(t) for t in recipe.tasks]
    result, problems = _pattern_parity(broken, test.y, reference, tasks, optional_data.labels, tolerance, rows, True)
    assert result["image+title"]["tasks"]["gender"]["drop"] == 0
    assert result["title"]["tasks"]["gender"]["drop"] > 0.05
    assert any("gender on 'title' rows" in p for p in problems)
    assert not any("image+title" in p for p in problems)


def test_modality_dropout_drops_to_the_state_of_a_missing_input(optional_run, optional_data):
    """In the trained model, a dropped present image (training) and a missing one (presence 0) both give exactly the
    learned absent vector to the fusion."""
    from edgemtl.models.build import load_model
    from edgemtl.rundir import RunDir
    from edgemtl.tfk import keras

    model = load_model(RunDir(optional_run[0]).require_model("teacher"))
    layer = model.get_layer("image_absent")
    x = {k: v[:64] for k, v in optional_data["train"].x.items()}
    vector, presence = keras.Model(model.inputs, layer.input)(x)
    absent = layer.absent.numpy()
    assert np.abs(absent).sum() > 0  # learned, not the initial zeros
    missing = layer([vector, np.zeros_like(presence)], training=False).numpy()
    np.testing.assert_array_equal(missing, np.broadcast_to(absent, missing.shape))
    ones = np.ones_like(presence)
    np.testing.assert_array_equal(layer([vector, ones], training=False).numpy(), vector.numpy())
    dropped = layer([vector, ones], training=True).numpy()
    is_absent = np.all(dropped == absent, axis=1)
    assert 0 < is_absent.sum() < len(is_absent)
    np.testing.assert_array_equal(dropped[~is_absent], vector.numpy()[~is_absent])


# --- compress and int8io with an optional input --------------------------------------------------------------------
def test_the_student_carries_the_presence_input_and_distils_on_both_patterns(optional_run, optional_data):
    """The student takes image_present, starts from the teacher's absent vector (weight selection cuts it like the
    encoder's vector), and distillation on rows of both patterns trains it while the teacher stays as it was."""
    from edgemtl.compress.distill import DistillTrainer
    from edgemtl.compress.selection import select_from_teacher
    from edgemtl.compress.student import student_recipe
    from edgemtl.models.build import build_model, load_model
    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import RunDir
    from edgemtl.tfk import keras
    from edgemtl.train.weighting import make_combination

    run, recipe_path, _ = optional_run
    recipe = load_recipe(recipe_path, ["compress.student.preset=small", "compress.distill.mixup=1.0"])
    student = student_recipe(recipe)
    teacher = load_model(RunDir(run).require_model("teacher"))
    net = build_model(student, optional_data.labels, optional_data.tokenizers, {}, student.tasks, "student")
    assert "image_present" in net.input_names
    done, _ = select_from_teacher(net, teacher)
    assert "image_absent" in done
    absent, teacher_absent = net.get_layer("image_absent").absent.numpy(), teacher.get_layer("image_absent").absent
    assert 0 < len(absent) < teacher_absent.shape[0]
    np.testing.assert_array_equal(absent, teacher_absent.numpy()[:len(absent)])
    train = optional_data["train"]
    x, y = {k: v[:64] for k, v in train.x.items()}, {k: v[:64] for k, v in train.y.items()}
    assert {float(v) for v in x["image_present"][:, 0]} == {0.0, 1.0}
    trainer = DistillTrainer(net, student.tasks, optional_data.labels, make_combination(
        student.training.loss_combination, student.tasks), teacher, recipe.compress.distill,
        {i.name: i.type for i in student.inputs})
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = teacher_absent.numpy().copy()
    trainer.fit(x, y, batch_size=16, epochs=1, verbose=0)
    np.testing.assert_array_equal(teacher_absent.numpy(), before)
    assert not np.array_equal(net.get_layer("image_absent").absent.numpy(), absent)


def test_a_run_with_an_optional_input_passes_the_run_checks(optional_run):
    """The model files' presence inputs are the recipe's (edgemtl export / evaluate / compress on an existing run)."""
    from edgemtl.errors import EdgemtlError
    from edgemtl.recipe import load_recipe
    from edgemtl.runcheck import check_model_matches, check_run
    from edgemtl.rundir import RunDir

    run, recipe_path, _ = optional_run
    recipe = load_recipe(recipe_path)
    check_run(RunDir(run), recipe)
    required = load_recipe(write_recipe(run.parent, optional_recipe(recipe.data.source).replace(
        "optional: true,", ""), "required.yaml"))
    with pytest.raises(EdgemtlError, match="has input 'image_present'"):
        check_model_matches(RunDir(run).require_model("teacher"), required)


def test_the_int8io_gate_requires_presence_to_carry_0_and_1_exactly():
    from edgemtl.export.parity import int8io_problems

    def problems(**d):
        return int8io_problems({"inputs": ["title", "image_present"], "io": {
            "title": {"dtype": "int32", "scale": 0.0, "zero_point": 0}, "image_present": d}})

    assert problems(dtype="int8", scale=1 / 255, zero_point=-128) == []  # calibrated on both patterns
    assert problems(dtype="int8", scale=0.0045, zero_point=-128) == [
        "int8io: presence input 'image_present' (int8, scale 0.0045, zero point -128) does not carry 1 exactly"]
    assert problems(dtype="float32", scale=0.0, zero_point=0) == [
        "int8io: input 'image_present' is float32, not integer (the converter kept float I/O)"]


def test_int8io_feeds_the_presence_flag_as_an_integer(optional_run, optional_data, tmp_path, capfd):
    """`edgemtl export` on the existing run: the int8io file takes image_present as int8 (0 -> -128, 1 -> 127), the
    gate covers both patterns, and the bundle answers from the title alone. -q: no per-artifact lines."""
    import shutil

    from edgemtl.cli import main
    from edgemtl.runtime import load
    from edgemtl.runtime.manifest import BundleManifest, ParityReport

    run = tmp_path / "run"
    shutil.copytree(optional_run[0], run)
    capfd.readouterr()
    assert main(["export", str(run), "--model", "teacher", "--format", "tflite", "--precision", "int8io", "-q"]) == 0
    assert "teacher-tflite-int8io" not in capfd.readouterr().err
    folder = run / "exports" / "teacher-tflite-int8io"
    io = BundleManifest.read(folder).quantization.io
    assert io["image_present"].dtype == "int8"
    assert round(-io["image_present"].zero_point) == 128 and abs(io["image_present"].scale * 255 - 1) < 1e-6
    report = ParityReport.read(folder)
    assert report.deployable and set(report.patterns) == {"image+title", "title"}
    model = load(folder)
    title = "Nike Men Black Running Shoes"
    without = model.predict(title=title)
    test = optional_data["test"]
    i = int(np.flatnonzero(test.x["image_present"][:, 0] == 1)[0])
    assert set(without) == {"gender", "masterCategory"}
    assert model.predict(title=title, image=test.x["image"][i]) != without


def test_the_compression_table_gives_each_model_per_presence_pattern(optional_run, monkeypatch):
    from edgemtl.model_metrics import read_metrics
    from edgemtl.recipe import load_recipe
    from edgemtl.reports import compress_report
    from edgemtl.rundir import RunDir

    run, recipe_path, _ = optional_run
    recipe = load_recipe(recipe_path)
    monkeypatch.setattr(compress_report, "convert_model", lambda *a: b"\0" * 100)  # sizes are not what this checks
    row = compress_report.model_row(RunDir(run), recipe, "teacher", list(recipe.tasks))
    by_pattern = read_metrics(RunDir(run), "teacher", missing_ok=False)["patterns"]["test"]
    lines = "\n".join(compress_report._pattern_lines([row], list(recipe.tasks)))
    title = by_pattern["title"]
    expected = np.mean([title[t]["score"] for t in ("gender", "masterCategory")])
    assert f"| title ({title['rows']} rows) |" in lines
    assert f"| teacher | {by_pattern['image+title']['mean_score']:.4f} | {expected:.4f} |" in lines


@pytest.mark.slow
def test_compress_with_an_optional_input_exports_an_int8_student_for_both_patterns(tmp_path):
    """The whole chain on the blanked subset: distilled, pruned and quantization-aware students with image_present;
    student-qat int8 and int8io pass the gate on both patterns and answer without the image."""
    from conftest import set_args
    from edgemtl.cli import main
    from edgemtl.runtime import load
    from edgemtl.runtime.manifest import ParityReport

    source, _ = blanked_manifest(tmp_path)
    text = optional_recipe(source, "compress: {student: {preset: small}}").replace(
        "stages: [train, evaluate, export, report]", "stages: [train, compress, export, report]").replace(
        "export: {model: teacher, formats: [tflite], precisions: [int8],",
        "export: {model: [student-qat], formats: [tflite], precisions: [int8, int8io],")
    recipe = write_recipe(tmp_path, text, "compress.yaml")
    sets = ["compress.training.epochs=2", "compress.prune.epochs=2", "compress.qat.epochs=1"]
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "-q"] + set_args(sets)) == 0
    for precision in ("int8", "int8io"):
        folder = tmp_path / "run" / "exports" / f"student-qat-tflite-{precision}"
        report = ParityReport.read(folder)
        assert report.deployable and set(report.patterns) == {"image+title", "title"}
        assert set(load(folder).predict(title="Puma Women Blue Track Pants")) == {"gender", "masterCategory"}
    assert "Per presence pattern" in (tmp_path / "run" / "compress.md").read_text()
