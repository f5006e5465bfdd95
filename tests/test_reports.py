"""Reports on a recipe WITH A REGRESSION TASK: every mean, monitor and comparison in report.md, compress.md and
bench/ uses each task's normalised score (accuracy; 1 - MAE/std for regression), while the regression column
shows its raw MAE. The demo recipe gets a third task: the digit's value as a regression (pairs.csv `digit`)."""
import json
import re

import numpy as np
import pytest
import yaml

from conftest import AV_RECIPE, TINY_AV, set_args

REGRESSION = "digit_value"
SHORT = TINY_AV + [
    "stages=[train,evaluate,compress,export,bench,report]", "training.epochs=2", "compress.scratch=false",
    "compress.training.epochs=1", "compress.prune.enabled=false", "compress.qat.epochs=1",
    "export.model=[teacher,student-qat]", "export.formats=[tflite]", "export.precisions=[fp32,int8]",
    "export.default_tolerance=1.0", "bench.backends=[litert]", "bench.threads=[1]", "bench.runs=3",
    "bench.max_seconds=0.5", "bench.batch=4"]


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    from edgemtl.cli import main

    root = tmp_path_factory.mktemp("regression")
    raw = yaml.safe_load(AV_RECIPE.read_text())
    raw["data"]["source"] = str((AV_RECIPE.parent / raw["data"]["source"]).resolve())
    raw["tasks"].append({"name": REGRESSION, "type": "regression", "column": "digit"})
    recipe = root / "av_regression.yaml"
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["run", str(recipe), "--out", str(root / "run"), "-q"] + set_args(SHORT)) == 0
    return root / "run"


def _metrics(run, name) -> dict:
    return json.loads((run / "models" / name / "metrics.json").read_text())


def _std(run) -> float:
    return json.loads((run / "preprocess" / "labels.json").read_text())[REGRESSION]["std"]


def _expected_mean(per_task: dict, tasks=("digit", "speaker", REGRESSION)) -> float:
    return float(np.mean([per_task[t]["score"] for t in tasks]))


def _raw_mean(per_task: dict, tasks=("digit", "speaker", REGRESSION)) -> float:
    """The bug: each task's first raw metric averaged (MAE beside accuracies)."""
    return float(np.mean([per_task[t].get("accuracy", per_task[t].get("mae")) for t in tasks]))


def _table(text: str, first_header: str) -> list[dict]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    head = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(head, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def test_metrics_and_the_training_monitor_use_the_normalised_score(regression_run):
    std = _std(regression_run)
    test = _metrics(regression_run, "teacher")["splits"]["test"]
    assert test[REGRESSION]["score"] == pytest.approx(1 - test[REGRESSION]["mae"] / std)
    assert test["mean_score"] == pytest.approx(_expected_mean(test))
    # the monitor (val_mean_score) at every epoch: accuracies and 1 - MAE/std, never the raw MAE
    history = [json.loads(line) for line in
               (regression_run / "models" / "teacher" / "history.jsonl").read_text().splitlines()]
    for row in history:
        expected = np.mean([row["val_digit_accuracy"], row["val_speaker_accuracy"],
                            1 - row[f"val_{REGRESSION}_mae"] / std])
        assert row["val_mean_score"] == pytest.approx(expected, abs=1e-6)


def test_run_report_shows_the_mae_and_the_normalised_mean(regression_run):
    report = (regression_run / "report.md").read_text()
    test = _metrics(regression_run, "teacher")["splits"]["test"]
    rows = _table(report, "task")
    mae_row = next(r for r in rows if r["task"] == REGRESSION and r["metric"] == "mae")
    assert float(mae_row["multitask"]) == pytest.approx(test[REGRESSION]["mae"], abs=1e-4)
    mean = re.search(r"Multitask mean normalised score \(.*1 - MAE/std.*\): ([0-9]+\.[0-9]+)", report)
    assert mean and float(mean.group(1)) == pytest.approx(_expected_mean(test), abs=1e-4)
    assert f"{_raw_mean(test):.4f}" not in report


def test_compress_means_and_the_qat_verdict_use_the_normalised_score(regression_run):
    text = (regression_run / "compress.md").read_text()
    saved = json.loads((regression_run / "compress.json").read_text())
    rows = {r["model"]: r for r in _table(text, "model")}
    assert {"teacher", "student", "student-qat"} <= set(rows)
    for name in rows:
        test = _metrics(regression_run, name)["splits"]["test"]
        assert rows[name][REGRESSION] == f"MAE {test[REGRESSION]['mae']:.3g}"  # the raw metric is shown
        assert float(rows[name]["mean"]) == pytest.approx(_expected_mean(test), abs=1e-4)
        assert float(rows[name]["mean"]) != pytest.approx(_raw_mean(test), abs=1e-4)
    # QAT vs PTQ: the verdict and its points from the int8 artifacts' normalised scores
    ptq, qat = (_expected_mean(r["tasks"]) for r in saved["int8"])
    std = _std(regression_run)
    for r in saved["int8"]:
        task = r["tasks"][REGRESSION]
        assert task["score"] == pytest.approx(1 - task["mae"] / std)
    verdict = re.search(r"Quantization-aware int8 (beats|does NOT beat) post-training int8 on the mean normalised "
                        r"score: ([0-9.-]+) vs ([0-9.-]+) \(([+-][0-9.]+) points\)", text)
    assert verdict, text
    assert verdict.group(1) == ("beats" if qat > ptq else "does NOT beat")
    assert float(verdict.group(2)) == pytest.approx(qat, abs=1e-4)
    assert float(verdict.group(3)) == pytest.approx(ptq, abs=1e-4)
    assert float(verdict.group(4)) == pytest.approx((qat - ptq) * 100, abs=0.01)
    raw_delta = (_raw_mean(saved["int8"][1]["tasks"]) - _raw_mean(saved["int8"][0]["tasks"])) * 100
    assert f"({raw_delta:+.2f} points)" not in text or abs(raw_delta - (qat - ptq) * 100) < 0.01


def test_bench_means_and_comparisons_use_the_normalised_score(regression_run):
    results = json.loads((regression_run / "bench" / "results.json").read_text())
    report = (regression_run / "bench" / "report.md").read_text()
    for per_task in results["accuracy"].values():
        tasks = [t for t in per_task if t != "mean_score"]
        assert per_task["mean_score"] == pytest.approx(_expected_mean(per_task, tasks))
    rows = _table(report, "artifact")
    assert rows and all(r["backend"] == "litert" for r in rows)
    for r in rows:
        per_task = results["accuracy"][r["artifact"]]
        assert float(r["mean score"]) == pytest.approx(_expected_mean(per_task), abs=1e-4)
        assert r[REGRESSION] == f"MAE {per_task[REGRESSION]['mae']:.3g}"
    # the deployed int8 student: student-qat, or the post-training int8 model compress handed over to
    line = next(x for x in report.splitlines() if x.startswith("- **") and "-tflite-int8 vs teacher-tflite-fp32**" in x)
    name = line[len("- **"):line.index(" vs ")]
    teacher, student = results["accuracy"]["teacher-tflite-fp32"], results["accuracy"][name]
    assert "normalised score" in line and "accuracy change" not in line
    delta = (student[REGRESSION]["score"] - teacher[REGRESSION]["score"]) * 100
    assert f"{REGRESSION} {delta:+.2f} (MAE {teacher[REGRESSION]['mae']:.3g} -> " in line


def test_a_task_without_a_scorable_row_is_shown_and_left_out_of_the_mean():
    from edgemtl.recipe.schema import TaskSpec
    from edgemtl.reports.compress_report import _scores

    tasks = [TaskSpec(name="a", type="multiclass"), TaskSpec(name="b", type="regression")]
    row = {"tasks": {"a": {"accuracy": 0.5, "score": 0.5, "n": 10},
                     "b": {"mae": float("nan"), "score": float("nan"), "n": 0}}}
    notes = []
    assert _scores(row, tasks, notes) == ["0.5000", "— (no labelled row)", "0.5000"]
    assert notes == ["left out (no score): b"]
