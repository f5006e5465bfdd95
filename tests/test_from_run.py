"""Incremental training (`train NEW_RECIPE --from RUN`): a recipe with one task more starts from the session fashion
run's teacher; frozen parts stay bit-identical through training, the new task gets a fresh head, the run records
where it came from, and a recipe that does not fit RUN is one error naming what differs."""
import json

import numpy as np
import pytest

from conftest import FASHION_MINI_MODEL, write_recipe
from edgemtl.cli import main
from edgemtl.errors import EdgemtlError
from edgemtl.models.build import load_model

TASKS = """tasks:
  - {name: gender, type: multiclass, match_labels: title}
  - {name: masterCategory, type: multiclass}
  - {name: season, type: multiclass}
"""


def season_recipe(tmp_path, freeze="[encoders, fusion, trunk, heads]", model=FASHION_MINI_MODEL, tasks=TASKS):
    return write_recipe(tmp_path, f"""
name: fashion_season
stages: [train]
{model}{tasks}training: {{epochs: 1, batch_size: 16, learning_rate: 0.01, from_run: {{freeze: {freeze}}}}}
""", "season.yaml")


def test_a_new_task_trains_beside_frozen_parts_that_stay_bit_identical(tmp_path, fashion_tiny_run):
    out = tmp_path / "run"
    assert main(["train", str(season_recipe(tmp_path)), "--from", str(fashion_tiny_run), "--out", str(out)]) == 0
    before = load_model(fashion_tiny_run / "models" / "teacher" / "model.keras")
    after = load_model(out / "models" / "teacher" / "model.keras")
    theirs = {layer.name: layer for layer in before.layers if layer.weights}
    kept = [layer for layer in after.layers if layer.weights and layer.name in theirs]
    parts = {n.split("_")[0] for n in (layer.name for layer in kept)}
    assert {"image", "title", "trunk", "gender", "masterCategory"} <= parts
    for layer in kept:  # every weight, BatchNorm statistics included
        assert all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), theirs[layer.name].get_weights())), \
            layer.name
    assert "season" in after.output_names and "season" not in theirs
    # the kept tasks answer exactly as RUN's teacher did; the new head answers its own classes
    labels = json.loads((out / "preprocess" / "labels.json").read_text())
    source_labels = json.loads((fashion_tiny_run / "preprocess" / "labels.json").read_text())
    assert labels["gender"] == source_labels["gender"] and len(labels["season"]["classes"]) >= 2
    assert (out / "preprocess" / "vocab_title.txt").read_text() == \
        (fashion_tiny_run / "preprocess" / "vocab_title.txt").read_text()
    rng = np.random.default_rng(0)
    x = {"image": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
         "title": rng.integers(0, 20, (4, 12), dtype=np.int32)}
    old, new = before(x, training=False), after(x, training=False)
    assert np.array_equal(old["gender"].numpy(), new["gender"].numpy())
    assert new["season"].shape == (4, len(labels["season"]["classes"]))
    # where it came from: the fingerprint and the teacher's metrics
    record = json.loads((out / "models" / "teacher" / "metrics.json").read_text())["from_run"]
    assert record["run"] == str(fashion_tiny_run.resolve()) and record["new_tasks"] == ["season"]
    assert record["kept_tasks"] == ["gender", "masterCategory"] and record["copied_layers"]["encoders"] > 0
    assert "season" in record["fresh_layers"]
    fingerprint = json.loads((out / "fingerprint.json").read_text())
    assert fingerprint["from_run"]["run"] == str(fashion_tiny_run.resolve())


def test_fine_tuned_parts_start_from_run_and_stay_trainable(tmp_path, fashion_tiny_run):
    from edgemtl.data.dataset import prepare
    from edgemtl.models.build import build_model, numeric_stats
    from edgemtl.recipe import load_recipe
    from edgemtl.train.from_run import adopter, init_net, open_source

    recipe = load_recipe(season_recipe(tmp_path, freeze="[encoders]"),
                         [f"training.from_run.run={fashion_tiny_run}"])
    source = open_source(recipe)
    data = prepare(recipe, adopt=adopter(source, recipe))
    net = build_model(recipe, data.labels, data.tokenizers, numeric_stats(recipe, data["train"].x))
    init_net(source, recipe, net)
    teacher = load_model(fashion_tiny_run / "models" / "teacher" / "model.keras")
    trunk = net.get_layer("trunk_dense0")
    assert trunk.trainable and np.array_equal(trunk.get_weights()[0],
                                              teacher.get_layer("trunk_dense0").get_weights()[0])
    assert not net.get_layer("image_conv0_conv").trainable if "image_conv0_conv" in [
        layer.name for layer in net.layers] else all(
        not layer.trainable for layer in net.layers if layer.name.startswith("image_") and layer.weights)
    assert net.get_layer("season").trainable


@pytest.mark.parametrize("change, expected", [
    ({"model": FASHION_MINI_MODEL.replace("filters: [8, 16]", "filters: [8, 24]")}, "inputs.image.encoder.filters"),
    ({"tasks": TASKS.replace("type: multiclass}\n  - {name: season", "type: multilabel}\n  - {name: season")},
     "tasks.masterCategory.type"),
])
def test_a_recipe_that_does_not_fit_run_is_one_error_naming_the_difference(tmp_path, fashion_tiny_run, change,
                                                                          expected):
    from edgemtl.recipe import load_recipe
    from edgemtl.train.from_run import open_source

    recipe = load_recipe(season_recipe(tmp_path, **change), [f"training.from_run.run={fashion_tiny_run}"])
    with pytest.raises(EdgemtlError) as error:
        open_source(recipe)
    message = str(error.value)
    assert expected in message and "training.from_run.run" in message and "\n" not in message


def test_a_kept_task_with_classes_run_lacks_is_an_error(tmp_path, fashion_tiny_run, capsys):
    tasks = TASKS.replace("{name: masterCategory, type: multiclass}",
                          "{name: masterCategory, type: multiclass, column: usage}")
    out = tmp_path / "run"
    code = main(["train", str(season_recipe(tmp_path, tasks=tasks)), "--from", str(fashion_tiny_run),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "masterCategory" in err and "RUN's head does not know" in err
    assert not (out / "models" / "teacher" / "model.keras").exists()
    missing = main(["train", str(season_recipe(tmp_path)), "--from", str(tmp_path / "nowhere"),
                    "--out", str(tmp_path / "run2")])
    assert missing == 2 and "not a run directory made by edgemtl" in capsys.readouterr().err
