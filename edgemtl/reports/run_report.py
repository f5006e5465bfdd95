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
from .transfer import LEVERS, update_transfer


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
    lines += _transfer_lines(run, recipe)
    if has_single:
        params = sum(s.get("params", 0) for s in singles.values())
        seconds = sum(s.get("train_seconds", 0) for s in singles.values())
        lines += ["", f"Single-task models together: {params:,} parameters, {seconds:.0f} s training "
                      f"(multitask: {teacher.get('params', 0):,}, {teacher.get('train_seconds', 0):.0f} s)."]
    lines += _positive_classes(run, tasks)
    lines += pattern_section(teacher, tasks)
    compressed = run.compress_md
    if compressed.exists():  # its own title dropped: it becomes a section of this report
        lines += ["", "## Compression", ""] + compressed.read_text().splitlines()[2:]
    if run.bench_report.exists():
        lines += ["", "Latency, size and memory of every artifact: [bench/report.md](bench/report.md)."]
    text = "\n".join(lines) + "\n"
    atomic_write_text(run.report, text)
    return text


def pattern_section(metrics: dict, tasks: list) -> list[str]:
    """Optional inputs: the multitask model's test metrics per presence pattern beside all rows."""
    by_pattern = (metrics.get("patterns") or {}).get("test")
    if not by_pattern:
        return []
    test = metrics.get("splits", {}).get("test", {})
    columns = {**{f"{p} ({s.get('rows', '?')} rows)": s for p, s in by_pattern.items()},
               f"all ({test.get(tasks[0].name, {}).get('n', '?')} rows)": test}
    rows = []
    for t in tasks:
        for metric in t.metrics or task_kind(t.type).metric_names:
            rows.append([t.name, metric, *(_cell((s.get(t.name) or {}).get(metric)) for s in columns.values())])
    means = [mean_cell({t.name: s.get(t.name) for t in tasks})[0] for s in columns.values()]
    rows.append([f"mean {score_name(tasks)}", "", *means])
    return ["", "## Per presence pattern (optional inputs)", "",
            "Test rows grouped by which inputs they have (an optional input left empty is absent).", "",
            table(["task", "metric", *columns], rows)]


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if math.isfinite(value) else NO_SCORE


def _transfer_lines(run: RunDir, recipe: Recipe) -> list[str]:
    """Δm and the per-task verdict (reports/transfer.py), also stored in the teacher's metrics.json."""
    result = update_transfer(run, recipe)
    if result is None:
        return []
    rows = [[n, r["metric"], _num(r["multitask"]), _num(r["single_task"]), _pct(r["relative_change"]),
             _num(r["se"]), r["verdict"] or "—"] for n, r in result["tasks"].items()]
    lines = ["", "## Negative transfer", "",
             f"Δm (Maninis et al. 2019; mean relative change vs the single-task models, + = multitask better): "
             f"{_pct(result['delta_m'])} over {result['delta_m_tasks']} task(s).", "",
             table(["task", "metric", "multitask", "single-task", "relative change", "SE of the difference",
                    "verdict"], rows), "", f"Rule: {result['rule']}."]
    if result["hurt"]:
        lines += ["", f"Multitask training hurts: {', '.join(result['hurt'])}. Levers: {LEVERS}."]
    else:
        lines += ["", "No task is hurt beyond the spread."]
    return lines


def _num(v) -> str:
    return "" if v is None else f"{v:.4f}"


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:+.2f} %"


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
