"""RUN/report.md: per-task test metrics of the teacher, with single-task models side by side when trained, and the
teacher's mean normalised score."""
import math

from ..artifacts import single_task_name
from ..kinds import task_kind
from ..model_metrics import read_metrics
from ..recipe.schema import Recipe
from ..rundir import RunDir, atomic_write_text
from .markdown import table
from .scores import NO_SCORE, mean_cell, score_name


def _metrics(run: RunDir, name: str) -> dict:
    return read_metrics(run, name)


def write_report(run: RunDir, recipe: Recipe) -> str:
    teacher = _metrics(run, "teacher")
    tasks = [t for t in recipe.tasks if not t.auxiliary]
    singles = {t.name: _metrics(run, single_task_name(t.name)) for t in tasks}
    has_single = any(singles.values())
    test = teacher.get("splits", {}).get("test", {})
    n_test = test.get(tasks[0].name, {}).get("n", "?")
    lines = [f"# {recipe.name}: results", "",
             f"Test split, {n_test} rows. Multitask model: {teacher.get('params', 0):,} parameters, "
             f"{teacher.get('train_seconds', 0):.0f} s training, best epoch {teacher.get('best_epoch', '?')} "
             f"of {teacher.get('epochs_run', '?')}.", ""]
    header = ["task", "metric", "multitask"] + (["single-task", "single-task params", "single-task train s"]
                                                 if has_single else [])
    rows = []
    for t in tasks:
        s = singles[t.name]
        for i, metric in enumerate(t.metrics or task_kind(t.type).metric_names):
            row = [t.name, metric, _get(teacher, t.name, metric)]
            if has_single:
                first = i == 0 and s
                row += [_get(s, t.name, metric), f"{s['params']:,}" if first else "",
                        f"{s['train_seconds']:.0f}" if first else ""]
            rows.append(row)
    lines.append(table(header, rows))
    mean, note = mean_cell({t.name: test.get(t.name) for t in tasks})
    lines += ["", f"Multitask mean {score_name(tasks)}: {mean}" + (f" ({note})." if note else ".")]
    if has_single:
        params = sum(s.get("params", 0) for s in singles.values())
        seconds = sum(s.get("train_seconds", 0) for s in singles.values())
        lines += ["", f"Single-task models together: {params:,} parameters, {seconds:.0f} s training "
                      f"(multitask: {teacher.get('params', 0):,}, {teacher.get('train_seconds', 0):.0f} s)."]
    lines += _positive_classes(run, tasks)
    compressed = run.compress_md
    if compressed.exists():  # its own title dropped: it becomes a section of this report
        lines += ["", "## Compression", ""] + compressed.read_text().splitlines()[2:]
    if run.bench_report.exists():
        lines += ["", "Latency, size and memory of every artifact: [bench/report.md](bench/report.md)."]
    text = "\n".join(lines) + "\n"
    atomic_write_text(run.report, text)
    return text


def _get(metrics: dict, task: str, metric: str) -> str:
    value = metrics.get("splits", {}).get("test", {}).get(task, {}).get(metric)
    if value is None:
        return ""
    return f"{value:.4f}" if math.isfinite(value) else f"{NO_SCORE} (no labelled row)"


def _positive_classes(run: RunDir, tasks) -> list[str]:
    """Which class each binary task's output is the probability of (tasks[].positive, else the second class)."""
    binary = [t for t in tasks if t.type == "binary"]
    if not binary or not run.labels.is_file():
        return []
    from .. import jsonio

    labels = jsonio.read(run.labels, "label vocabulary")
    said = [f"{t.name}: '{labels[t.name]['classes'][-1]}' (threshold {t.threshold:g})" for t in binary
            if len(labels.get(t.name, {}).get("classes", [])) == 2]
    return ["", "Positive class of the binary tasks: " + ", ".join(said) + "."] if said else []
