"""RUN/report.md: per-task test metrics of the teacher, and of single-task models side by side when trained."""
import json

from .rundir import RunDir, atomic_write_text


def _metrics(run: RunDir, name: str) -> dict:
    path = run.model_dir(name) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_report(run: RunDir, recipe: dict) -> str:
    teacher = _metrics(run, "teacher")
    tasks = [t for t in recipe["tasks"] if not t["auxiliary"]]
    singles = {t["name"]: _metrics(run, f"single-{t['name']}") for t in tasks}
    lines = [f"# {recipe['name']}: results", "",
             f"Test split, {teacher.get('splits', {}).get('test', {}).get(tasks[0]['name'], {}).get('n', '?')} rows. "
             f"Multitask teacher: {teacher.get('params', '?'):,} parameters, "
             f"{teacher.get('train_seconds', 0):.0f} s training, best epoch {teacher.get('best_epoch', '?')}.", ""]
    has_single = any(singles.values())
    header = "| task | metric | multitask |" + (" single-task | single-task params | single-task train s |"
                                                 if has_single else "")
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for t in tasks:
        metric = "mae" if t["type"] == "regression" else "accuracy"
        row = f"| {t['name']} | {metric} | {_get(teacher, t['name'], metric)} |"
        if has_single:
            s = singles[t["name"]]
            row += f" {_get(s, t['name'], metric)} | {s.get('params', ''):,} | {s.get('train_seconds', 0):.0f} |" \
                if s else " | | |"
        lines.append(row)
        if metric == "accuracy":
            row = f"| {t['name']} | macro_f1 | {_get(teacher, t['name'], 'macro_f1')} |"
            if has_single:
                row += f" {_get(singles[t['name']], t['name'], 'macro_f1')} | | |"
            lines.append(row)
    if has_single:
        total_params = sum(s.get("params", 0) for s in singles.values())
        total_time = sum(s.get("train_seconds", 0) for s in singles.values())
        lines += ["", f"Single-task models together: {total_params:,} parameters, {total_time:.0f} s training "
                      f"(multitask: {teacher.get('params', 0):,}, {teacher.get('train_seconds', 0):.0f} s)."]
    text = "\n".join(lines) + "\n"
    atomic_write_text(run.report, text)
    return text


def _get(metrics: dict, task: str, metric: str) -> str:
    value = metrics.get("splits", {}).get("test", {}).get(task, {}).get(metric)
    return "" if value is None else f"{value:.4f}"
