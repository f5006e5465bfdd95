"""Training runs end to end: the run directory contract, evaluate, single-task models, resume, NaN and reruns."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from conftest import AV_RECIPE, REPO, TINY_AV, TINY_RUN, set_args
from edgemtl.cli import main
from edgemtl.recipe.schema import TaskSpec

DIGIT = TaskSpec(name="digit", type="multiclass", metrics=("accuracy",))


def test_run_directory_contract(tiny_run):
    recipe_text = (tiny_run / "recipe.yaml").read_text()
    assert recipe_text.startswith("# recipe_hash: ")
    assert yaml.safe_load(recipe_text)["training"]["epochs"] == 2  # resolved recipe, overrides applied
    env = json.loads((tiny_run / "env.json").read_text())
    assert {"python", "tensorflow", "cpu", "seed", "edgemtl"} <= set(env)
    labels = json.loads((tiny_run / "preprocess" / "labels.json").read_text())
    assert labels["digit"]["classes"] == [str(d) for d in range(10)]
    teacher = tiny_run / "models" / "teacher"
    for name in ("model.keras", "saved_model/saved_model.pb", "metrics.json", "history.jsonl", "tensorboard"):
        assert (teacher / name).exists(), name
    assert not (teacher / "backup").exists()  # a finished run leaves no resume checkpoint behind
    assert not list(teacher.glob(".tmp-*"))


def test_metrics_per_split_and_task(tiny_run):
    metrics = json.loads((tiny_run / "models" / "teacher" / "metrics.json").read_text())
    assert set(metrics["splits"]) == {"train", "val", "test"}
    test = metrics["splits"]["test"]
    assert test["digit"]["n"] == 300 and 0 <= test["digit"]["accuracy"] <= 1 and "macro_f1" in test["speaker"]
    assert metrics["epochs_run"] == 2 and metrics["params"] > 0


def test_single_task_models_and_report(tiny_run):
    for task in ("digit", "speaker"):
        metrics = json.loads((tiny_run / "models" / f"single-{task}" / "metrics.json").read_text())
        assert metrics["tasks"] == [task] and "test" in metrics["splits"]
    report = (tiny_run / "report.md").read_text()
    assert "| digit | accuracy |" in report and "single-task" in report
    assert "Single-task models together" in report


def test_evaluate_command_prints_the_test_table(tiny_run, capsys):
    assert main(["evaluate", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("| task | accuracy | macro-F1 |")
    assert "| digit |" in out and "| 300 |" in out


def test_the_evaluate_mean_is_the_mean_of_its_score_column():
    """A regression task's MAE is shown raw, but the mean is of normalised scores, which the table lists."""
    from types import SimpleNamespace

    from edgemtl.train.evaluate import format_scores

    tasks = [SimpleNamespace(name="colour", type="multiclass", auxiliary=False),
             SimpleNamespace(name="year", type="regression", auxiliary=False),
             SimpleNamespace(name="season", type="multiclass", auxiliary=True)]
    scores = {"test": {"colour": {"accuracy": 0.96, "macro_f1": 0.9, "score": 0.96, "n": 10},
                       "year": {"mae": 0.25, "rmse": 0.5, "score": 0.84, "n": 10},
                       "season": {"accuracy": 0.5, "macro_f1": 0.5, "score": 0.5, "n": 10}}}
    text = format_scores(scores, tasks)
    header = [c.strip() for c in text.splitlines()[0].strip("|").split("|")]
    column = header.index("score")
    rows = {line.split("|")[1].strip(): line.split("|")[column + 1].strip() for line in text.splitlines()[2:5]}
    assert rows == {"colour": "0.9600", "year": "0.8400", "season": "0.5000"}
    mean_line = text.splitlines()[-1]
    assert mean_line.startswith("mean score (test): 0.9000 (the score column's mean; score = normalised score "
                                "(accuracy for class tasks, 1 - MAE/std for regression; higher is better))")
    assert mean_line.endswith("auxiliary, not in the mean: season")


def test_rerun_without_resume_or_overwrite_keeps_the_run(tiny_run, capsys):
    before = (tiny_run / "models" / "teacher" / "model.keras").stat().st_mtime
    args = ["train", str(AV_RECIPE), "--out", str(tiny_run)] + set_args(TINY_RUN)
    assert main(args) == 2
    assert capsys.readouterr().err == (f"error: {tiny_run / 'models' / 'teacher'} already exists: pass --resume to "
                                       f"continue it or --overwrite to start again\n")
    assert (tiny_run / "models" / "teacher" / "model.keras").stat().st_mtime == before
    changed = args + ["--set", "seed=7"]
    assert main(changed) == 2
    assert "was made from a different recipe" in capsys.readouterr().err


def test_evaluate_errors_are_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path}: not a run directory (no recipe.yaml); "
                                       f"train one with 'edgemtl train'\n")


def test_nan_loss_stops_with_the_task_name(tmp_path, capsys):
    args = ["train", str(AV_RECIPE), "--out", str(tmp_path / "nan")] + \
        set_args(TINY_AV + ["training.learning_rate=1e9", "training.optimizer=sgd"])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("error: training stopped: task '") and "loss became nan" in last.lower()
    assert "no epoch had finished cleanly, so no model was saved" in last
    assert not (tmp_path / "nan" / "models" / "teacher" / "model.keras").exists()  # diverged weights are not kept


def test_kill_mid_epoch_then_resume_loses_nothing(tmp_path):
    """SIGKILL during epoch 2 (after a step checkpoint), then --resume: epochs continue, none repeated or lost."""
    out = tmp_path / "killed"
    # 8 epochs: on a fast CPU 3 epochs ended within the 1.5 s wait below, before the kill
    sets = TINY_AV + ["training.epochs=8", "training.checkpoint_every=3", "training.batch_size=16"]
    args = [sys.executable, "-m", "edgemtl", "train", str(AV_RECIPE), "--out", str(out)]
    args += set_args(sets)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    history = out / "models" / "teacher" / "history.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (history.exists() and history.read_text().count("\n") >= 1):
        time.sleep(0.2)
    time.sleep(1.5)  # into epoch 2, past at least one step checkpoint (every 3 of 41 steps)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = [json.loads(line)["epoch"] for line in history.read_text().splitlines()]
    assert done_before and done_before[-1] < 8, "the run finished before it could be killed"
    resumed = subprocess.run(args + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    epochs = [json.loads(line)["epoch"] for line in history.read_text().splitlines()]
    assert epochs == list(range(1, 9))
    metrics = json.loads((out / "models" / "teacher" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 8 and np.isfinite(metrics["val"]["mean_score"])


class _KilledAtEpochEnd(Exception):
    pass


def test_kill_between_last_step_and_epoch_row_redoes_that_epoch_end(av_data, tmp_path):
    """A kill after an epoch's last step but before its history row (e.g. during validation) loses no epoch."""
    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import RunDir
    from edgemtl.tfk import keras
    from edgemtl.train.fit import TrainHooks, train_model

    class KillAtEndOfEpoch2(keras.callbacks.Callback):  # runs before BestModel writes the row
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise _KilledAtEpochEnd()

    # checkpoint_every=1: a step checkpoint at every batch, the epoch's last one included
    recipe = load_recipe(AV_RECIPE, TINY_AV + ["training.epochs=3", "training.checkpoint_every=1"])
    history = tmp_path / "models" / "teacher" / "history.jsonl"
    with pytest.raises(_KilledAtEpochEnd):
        train_model(recipe, av_data, RunDir(tmp_path), hooks=TrainHooks(callbacks=(KillAtEndOfEpoch2(),)))
    assert [json.loads(line)["epoch"] for line in history.read_text().splitlines()] == [1]
    train_model(recipe, av_data, RunDir(tmp_path), resume=True)
    assert [json.loads(line)["epoch"] for line in history.read_text().splitlines()] == [1, 2, 3]


def test_best_model_breaks_ties_on_val_loss_and_counts_patience(tmp_path):
    from edgemtl.train.callbacks import BestModel

    best = BestModel(None, "val_mean_score", 2, tmp_path, 10, [DIGIT])
    rows = [{"val_mean_score": 0.9, "val_loss": 0.5}, {"val_mean_score": 1.0, "val_loss": 0.3},
            {"val_mean_score": 1.0, "val_loss": 0.2}, {"val_mean_score": 1.0, "val_loss": 0.4},
            {"val_mean_score": 0.99, "val_loss": 0.1}]
    improved = [best._judge(epoch, row) for epoch, row in enumerate(rows, 1)]
    assert improved == [True, True, True, False, False]
    assert best.best_epoch == 3 and best.wait == 3  # three epochs since the score last rose


def test_redone_epoch_replaces_its_history_row(tmp_path):
    """A kill after an epoch's row but before its epoch-end backup: on resume that epoch's end runs again, once."""
    from edgemtl.train.callbacks import BestModel

    rows = [{"epoch": 1, "val_mean_score": 0.5, "val_loss": 0.9}, {"epoch": 2, "val_mean_score": 0.8, "val_loss": 0.4}]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    best = BestModel(None, "val_mean_score", 5, tmp_path, 3, [DIGIT])
    assert best.best_epoch == 2
    best.on_epoch_begin(1)  # Keras restored to the middle of (0-based) epoch 1, i.e. epoch 2 again
    assert [r["epoch"] for r in BestModel.read_history(tmp_path)] == [1]
    assert best.best_epoch == 1
