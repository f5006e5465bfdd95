"""Reports on a recipe WITH A REGRESSION TASK: every mean, monitor and comparison in report.md, compress.md and
bench/ uses each task's normalised score (accuracy; 1 - MAE/std for regression), while the regression column
shows its raw MAE. The demo recipe gets a third task: the digit's value as a regression (pairs.csv `digit`)."""
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
import yaml

from conftest import AV_RECIPE, TINY_AV, set_args
from edgemtl.runtime.manifest import BundleManifest

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
    # the headline: the fastest deployable student artifact measured side by side, against the teacher's fp32
    line = next(x for x in report.splitlines() if x.startswith("- **") and " vs teacher-tflite-fp32**" in x)
    name = line[len("- **"):line.index(" vs ")]
    head = results["side_by_side"]["headline"]
    assert name == head["student"]
    if head["chosen_by"] == "export":  # the manifest's recommendation, confirmed by bench's own timing
        assert "export's recommended bundle for this CPU" in line
        assert BundleManifest.read(regression_run / "exports" / name).recommended
    else:
        assert "the fastest deployable student artifact on this CPU" in line
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


# --- RUN/report.html ------------------------------------------------------------------------------------------------
class _Page(HTMLParser):
    """What a reader sees of report.html: headings, tables (attributes and rows of (tag, text) cells), the SVGs with
    their polylines' point counts, and every address the page would load."""

    def __init__(self):
        super().__init__()
        self.headings, self.tables, self.svgs, self.loads = [], [], [], []
        self._heading = self._cell = None
        self._model = None  # the model of the curves block being read

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("h1", "h2", "h3"):
            self._heading = [tag, ""]
        elif tag == "table":
            self.tables.append({"attrs": a, "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th") and self.tables:
            self._cell = [tag, ""]
        elif tag == "div" and "data-model" in a:
            self._model = a["data-model"]
        elif tag == "svg":
            self.svgs.append({"model": self._model, "label": a.get("aria-label", ""), "polylines": []})
        elif tag == "polyline" and self.svgs:
            self.svgs[-1]["polylines"].append(len(a["points"].split()))
        for key in ("src", "href"):
            if key in a and not a[key].startswith(("#", "data:")):
                self.loads.append(a[key])
        if tag in ("link", "script", "iframe"):
            self.loads.append(tag)

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3") and self._heading:
            self.headings.append(tuple(self._heading))
            self._heading = None
        elif tag in ("td", "th") and self._cell:
            self.tables[-1]["rows"][-1].append((self._cell[0], self._cell[1].strip()))
            self._cell = None

    def handle_data(self, data):
        if self._heading:
            self._heading[1] += data
        if self._cell:
            self._cell[1] += data

    def table_after(self, first_header: str) -> list[list[str]]:
        """The body rows (texts) of the first table whose first header cell is first_header."""
        for t in self.tables:
            rows = [r for r in t["rows"] if r]
            if rows and rows[0][0] == ("th", first_header):
                return [[text for _, text in r] for r in rows[1:]]
        raise AssertionError(f"no table starting with {first_header!r}")


def _page(run) -> _Page:
    page = _Page()
    page.feed((run / "report.html").read_text())
    return page


def _confusion(page: _Page, task: str) -> np.ndarray:
    table = next(t for t in page.tables if t["attrs"].get("class") == "confusion" and t["attrs"]["data-task"] == task)
    rows = [r for r in table["rows"] if r and r[0][0] == "th" and len(r) > 2 and r[1][0] == "td"]
    return np.array([[int(text or 0) for _, text in r[1:-1]] for r in rows])


def test_report_html_has_every_artifact_the_confusion_matrices_and_the_curves(tiny_run):
    page = _page(tiny_run)
    assert page.loads == []  # self-contained: nothing fetched, no script
    titles = [text for tag, text in page.headings if tag == "h2"]
    assert titles == ["Results per task", "Per-class results", "Training curves", "Export and parity"]
    # every artifact of the export stage, with its verdict
    summary = json.loads((tiny_run / "exports" / "teacher-summary.json").read_text())
    rows = {r[0]: r for r in page.table_after("artifact")}
    assert set(rows) == {s["artifact"] for s in summary}
    for s in summary:
        assert rows[s["artifact"]][2].startswith("deployable" if s["deployable"] else "rejected")
    # confusion matrices: every labelled test row once, the diagonal is the accuracy metrics.json holds
    test = _metrics(tiny_run, "teacher")["splits"]["test"]
    labels = json.loads((tiny_run / "preprocess" / "labels.json").read_text())
    for task in ("digit", "speaker"):
        matrix = _confusion(page, task)
        assert matrix.shape == (len(labels[task]["classes"]),) * 2
        assert matrix.sum() == test[task]["n"]
        assert np.trace(matrix) / matrix.sum() == pytest.approx(test[task]["accuracy"])
    # curves: a loss and a metric chart per trained model, one point per epoch of its history.jsonl
    for model in ("teacher", "single-digit", "single-speaker"):
        epochs = len((tiny_run / "models" / model / "history.jsonl").read_text().splitlines())
        charts = [s for s in page.svgs if s["model"] == model]
        assert [c["label"] for c in charts] == [f"{model}: loss", f"{model}: validation accuracy"]
        assert all(c["polylines"] and set(c["polylines"]) == {epochs} for c in charts)
    # single-task baselines beside the multitask metrics
    results = page.table_after("task")
    assert "single-task" in next(t for t in page.tables if t["rows"][0][0] == ("th", "task"))["rows"][0][4]
    digit = next(r for r in results if r[0] == "digit")
    single = _metrics(tiny_run, "single-digit")["splits"]["test"]["digit"]["accuracy"]
    assert float(digit[4]) == pytest.approx(single, abs=1e-4)


def test_report_html_is_readable_by_others_and_run_ends_with_where_it_is(tiny_run, tmp_path, capsys):
    from edgemtl.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("cache", "exports"))
    umask = os.umask(0o022)
    try:
        assert main(["report", str(run)]) == 0
    finally:
        os.umask(umask)
    out = capsys.readouterr().out.splitlines()
    assert f"report: {run / 'report.html'}" in out
    assert f"training curves: tensorboard --logdir {run / 'models'}" in out
    assert (run / "report.html").stat().st_mode & 0o777 == 0o644


def test_report_html_bench_table_flags_noise_and_the_pareto_plot_numbers_every_point(regression_run):
    from edgemtl.reports.bench_report import pareto_points
    from edgemtl.reports.html_report import NOISY_P99_OVER_P50

    page = _page(regression_run)
    titles = [text for tag, text in page.headings if tag == "h2"]
    assert {"Compression", "Benchmark", "Score vs latency (Pareto)"} <= set(titles)
    results = json.loads((regression_run / "bench" / "results.json").read_text())
    rows = page.table_after("artifact")  # the export table comes first; the speed table has a backend column
    speed = next([[t for _, t in r] for r in t["rows"][1:]] for t in page.tables
                 if [c for _, c in t["rows"][0][:2]] == ["artifact", "backend"])
    assert rows and len(speed) == len(results["rows"])
    for cells, r in zip(speed, results["rows"]):
        ratio = r["latency_ms"]["p99"] / r["latency_ms"]["p50"]
        assert cells[-1] == ("noisy" if ratio > NOISY_P99_OVER_P50 else "ok")
        assert float(cells[4]) == pytest.approx(r["latency_ms"]["p50"], abs=1e-3)
    pts, front = pareto_points(results)
    legend = next([[t for _, t in r] for r in t["rows"][1:]] for t in page.tables if t["rows"][0][0] == ("th", "#"))
    assert [int(r[0]) for r in legend] == list(range(1, len(pts) + 1))
    assert {r[1] for r in legend} == {p[0] for p in pts}
    assert sum(r[-1] == "yes" for r in legend) == len(front)
    assert any(s["label"].startswith("mean normalised score vs latency") for s in page.svgs)
    # without matplotlib's plot, bench/report.md links no image
    md = (regression_run / "bench" / "report.md").read_text()
    assert ("![score vs latency](pareto.png)" in md) == (regression_run / "bench" / "pareto.png").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (CI installs it with apt: .ci/run)")
def test_report_html_renders_in_headless_chromium(tiny_run, tmp_path):
    """The DOM after Chromium rendered the page: headings and tables are there (not raw Markdown)."""
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
                           "--dump-dom", (tiny_run / "report.html").as_uri()], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    page = _Page()
    page.feed(done.stdout)
    assert [text for tag, text in page.headings if tag == "h2"][:2] == ["Results per task", "Per-class results"]
    assert len(page.tables) >= 5 and len(page.svgs) >= 6
    assert "| task |" not in done.stdout and "**" not in done.stdout  # Markdown was rendered


def test_onnx_quantizer_notices_are_hidden_unless_verbose(capfd):
    import logging

    from edgemtl.export.onnx import _root_notices_hidden

    root, ours = logging.getLogger(), logging.getLogger("edgemtl")
    handlers, level = list(root.handlers), ours.level
    try:
        root.handlers[:] = []  # as under the CLI: the root logger has no handler of its own
        ours.setLevel(logging.INFO)
        with _root_notices_hidden():
            logging.warning("Please consider to run pre-processing before quantization")
            logging.error("a real error")
        assert root.handlers == []  # no handler left behind by logging's implicit basicConfig
        err = capfd.readouterr().err
        assert "pre-processing" not in err and "a real error" in err
        ours.setLevel(logging.DEBUG)
        with _root_notices_hidden():
            logging.warning("Please consider to run pre-processing before quantization")
        assert "pre-processing" in capfd.readouterr().err
    finally:
        ours.setLevel(level)
        root.handlers[:] = handlers


def test_report_html_shows_the_delta_m_verdict_stored_with_the_teacher(tiny_run, tmp_path):
    """Δm is read from the teacher's metrics.json ("transfer", written by the negative-transfer report), never
    computed by the page."""
    from edgemtl.model_metrics import update_metrics
    from edgemtl.reports.html_report import write_html_report
    from edgemtl.stages import open_run

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir, ignore=shutil.ignore_patterns("cache", "exports", "saved_model", "*.keras"))
    run, recipe = open_run(run_dir)
    transfer = {"delta_m": -0.0123, "delta_m_tasks": 2, "rule": "a stated rule", "hurt": ["speaker"],
                "tasks": {"digit": {"relative_change": 0.0456, "verdict": "neutral"},
                          "speaker": {"relative_change": -0.0702, "verdict": "hurt"}}}
    update_metrics(run, "teacher", {"transfer": transfer})
    write_html_report(run, recipe)
    page = _page(run_dir)
    rows = {r[0]: r for r in page.table_after("task") if r[0]}
    assert rows["digit"][5:] == ["+4.56 %", "neutral"] and rows["speaker"][5:] == ["-7.02 %", "hurt"]
    text = (run_dir / "report.html").read_text()
    assert "-1.23 %</strong> over 2 task(s)" in text and "Hurt by multitask training: speaker" in text


def test_confusion_counts_unseen_classes_apart_and_leaves_out_missing_labels():
    from edgemtl.kinds.base import MISSING, UNSEEN
    from edgemtl.reports.classes import UNSEEN_LABEL, class_results

    true = np.array([0, 0, 1, 2, UNSEEN, MISSING, 1])
    pred = np.array([0, 1, 1, 2, 2, 0, 0])
    res = class_results("t", ["a", "b", "c"], true, pred)
    assert res.classes[-1] == UNSEEN_LABEL and res.n == 6 and res.matrix.sum() == 6
    assert res.matrix.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 1]]
    per = {r["class"]: r for r in res.per_class()}
    assert per["a"]["precision"] == pytest.approx(1 / 2) and per["a"]["recall"] == pytest.approx(1 / 2)
    assert per["c"]["precision"] == pytest.approx(1 / 2) and per["c"]["recall"] == 1.0  # the unseen row counts
    assert per[UNSEEN_LABEL]["recall"] == 0.0
    assert res.top_confusions()[0][2] == 1


def test_bench_report_without_matplotlib_links_no_image(regression_run, tmp_path, monkeypatch):
    from edgemtl.reports import bench_report
    from edgemtl.stages import open_run

    run_dir = tmp_path / "run"
    shutil.copytree(regression_run, run_dir, ignore=shutil.ignore_patterns("cache", "exports", "models"))
    run, recipe = open_run(run_dir)
    monkeypatch.setattr(bench_report, "pareto_png", lambda results, path: False)  # as without matplotlib
    results = json.loads(run.bench_results.read_text())
    text = bench_report.write_reports(run, recipe, results, None)
    assert "](pareto.png)" not in text and "needs matplotlib" in text
    assert not run.pareto_png.exists()
    page = run.bench_html.read_text()
    assert "<img" not in page and "<table>" in page and "| artifact |" not in page  # rendered, not raw Markdown
