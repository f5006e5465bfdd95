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


@pytest.fixture(scope="module")
def season(tmp_path_factory, fashion_tiny_run):
    """The season recipe from the session fashion run, its source run and its data prepared as the train stage
    prepares them (RUN's vocabularies adopted)."""
    from edgemtl.data.dataset import prepare
    from edgemtl.recipe import load_recipe
    from edgemtl.train.from_run import adopter, open_source

    recipe = load_recipe(season_recipe(tmp_path_factory.mktemp("season")),
                         [f"training.from_run.run={fashion_tiny_run}"])
    source = open_source(recipe)
    return recipe, source, prepare(recipe, adopt=adopter(source, recipe))


def built(season, freeze: tuple):
    """The season recipe's net started from RUN's teacher, `freeze` kept fixed, as the train stage builds it."""
    from dataclasses import replace

    from edgemtl.models.build import build_model, numeric_stats
    from edgemtl.train.from_run import init_net

    recipe, source, data = season
    source = replace(source, freeze=freeze)
    net = build_model(recipe, data.labels, data.tokenizers, numeric_stats(recipe, data["train"].x))
    init_net(source, recipe, net)
    return recipe, source, data, net


def weights_of(model) -> dict:
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers if layer.weights}


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_a_new_task_trains_beside_frozen_parts_that_stay_bit_identical(season, fashion_tiny_run):
    from edgemtl.data.pipeline import make_dataset
    from edgemtl.tfk import keras
    from edgemtl.train.trainer import MultitaskTrainer
    from edgemtl.train.weighting import make_combination

    recipe, source, data, net = built(season, ("encoders", "fusion", "trunk", "heads"))
    teacher = load_model(fashion_tiny_run / "models" / "teacher" / "model.keras")
    theirs = weights_of(teacher)
    copied = [name for names in source.copied.values() for name in names]
    assert {"encoders", "trunk", "heads"} <= set(source.copied) and set(copied) == set(theirs)
    assert source.fresh == ["season"] and source.kept == ("gender", "masterCategory")
    # kept tasks keep RUN's classes and text vocabulary; the new task learns its own classes
    assert data.labels["gender"] == source.labels["gender"] and len(data.labels["season"]["classes"]) >= 2
    assert data.tokenizers["title"].vocab == \
        (fashion_tiny_run / "preprocess" / "vocab_title.txt").read_text().splitlines()
    fresh_head = [w.copy() for w in net.get_layer("season").get_weights()]
    # one epoch of multitask training, as the train stage runs it
    trainer = MultitaskTrainer(net, recipe.tasks, data.labels, make_combination(recipe.training.loss_combination,
                                                                                 recipe.tasks))
    trainer.compile(optimizer=keras.optimizers.Adam(0.01))
    trainer.fit(make_dataset(data["train"], recipe, True, 16), epochs=1, verbose=0)
    after = weights_of(net)
    for name in copied:  # every weight, BatchNorm statistics included
        assert same(after[name], theirs[name]), name
    assert not same(after["season"], fresh_head)  # the new head did train
    x = {k: v[:8] for k, v in data["test"].x.items()}
    old, new = teacher(x, training=False), net(x, training=False)
    assert np.array_equal(old["gender"].numpy(), new["gender"].numpy())
    assert np.array_equal(old["masterCategory"].numpy(), new["masterCategory"].numpy())


def test_fine_tuned_parts_start_from_run_and_stay_trainable(season, fashion_tiny_run):
    _, source, _, net = built(season, ("encoders",))
    teacher = load_model(fashion_tiny_run / "models" / "teacher" / "model.keras")
    for name in ("trunk_dense0", "gender_logits", "image_block0_bn"):
        assert same(net.get_layer(name).get_weights(), teacher.get_layer(name).get_weights()), name
    assert net.get_layer("trunk_dense0").trainable and net.get_layer("gender_logits").trainable
    assert not net.get_layer("image_block0_conv").trainable and not net.get_layer("title_embedding").trainable
    assert net.get_layer("season").trainable


@pytest.mark.slow
def test_train_from_run_records_where_the_teacher_came_from(tmp_path, fashion_tiny_run):
    out = tmp_path / "run"
    assert main(["train", str(season_recipe(tmp_path)), "--from", str(fashion_tiny_run), "--out", str(out)]) == 0
    before = weights_of(load_model(fashion_tiny_run / "models" / "teacher" / "model.keras"))
    after = weights_of(load_model(out / "models" / "teacher" / "model.keras"))
    assert all(same(after[name], before[name]) for name in before)  # all frozen, as saved
    assert (out / "preprocess" / "vocab_title.txt").read_text() == \
        (fashion_tiny_run / "preprocess" / "vocab_title.txt").read_text()
    record = json.loads((out / "models" / "teacher" / "metrics.json").read_text())["from_run"]
    assert record["run"] == str(fashion_tiny_run.resolve()) and record["new_tasks"] == ["season"]
    assert record["kept_tasks"] == ["gender", "masterCategory"] and record["copied_layers"]["encoders"] > 0
    assert record["fresh_layers"] == ["season"] and record["frozen"] == ["encoders", "fusion", "trunk", "heads"]
    fingerprint = json.loads((out / "fingerprint.json").read_text())
    assert fingerprint["from_run"]["run"] == str(fashion_tiny_run.resolve())


def test_the_record_goes_to_the_fingerprint_and_the_teacher_metrics(tmp_path, season, fashion_tiny_run):
    from dataclasses import replace

    from edgemtl.rundir import RunDir
    from edgemtl.train.from_run import write_record

    source = replace(season[1], initialised=True)
    run = RunDir(tmp_path / "new")
    run.model_dir("teacher").mkdir(parents=True)
    (run.root / "fingerprint.json").write_text(json.dumps({"version": 1, "built_from": {"a": 1}}))
    write_record(source, run)
    fingerprint = json.loads((run.root / "fingerprint.json").read_text())
    assert fingerprint["built_from"] == {"a": 1} and fingerprint["from_run"]["run"] == str(fashion_tiny_run)
    record = json.loads(run.metrics_file("teacher").read_text())["from_run"]
    assert record["new_tasks"] == ["season"] and record["recipe_hash"] == RunDir(fashion_tiny_run).recipe_hash()


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


def test_new_data_may_label_only_the_new_task(tmp_path, fashion_tiny_run, capsys):
    """Rows without the kept tasks' labels: those tasks keep RUN's classes (no 'too few classes'), check passes."""
    import csv

    from conftest import FASHION_MINI

    (tmp_path / "images").symlink_to(FASHION_MINI.parent / "images")
    with open(FASHION_MINI, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(tmp_path / "new.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "gender": "", "masterCategory": ""} for r in rows)
    recipe = season_recipe(tmp_path, model=FASHION_MINI_MODEL.replace(str(FASHION_MINI), str(tmp_path / "new.csv")))
    assert main(["check", str(recipe), "--from", str(fashion_tiny_run), "--json"]) == 0
    outputs = json.loads(capsys.readouterr().out)["outputs"]
    source = json.loads((fashion_tiny_run / "preprocess" / "labels.json").read_text())
    assert outputs["gender"][1] == len(source["gender"]["classes"]) >= 2
