"""Score cells shared by the reports: a task's RAW primary metric for display (MAE for regression), and means,
verdicts and deltas from the NORMALISED score only (edgemtl.kinds: accuracy for class tasks, 1 - MAE/std for
regression; higher is better). A raw MAE is never averaged with accuracies or differenced into "points"."""
import math
from collections.abc import Mapping

from ..kinds import mean_score, task_kind

NO_SCORE = "—"


def score_of(metrics: Mapping | None) -> float | None:
    """The normalised score of one task's metrics, None where it has none (not measured, no labelled row)."""
    value = None if metrics is None else metrics.get("score")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def why_no_score(metrics: Mapping | None) -> str:
    if metrics is None:
        return "not measured"
    if metrics.get("reason"):
        return metrics["reason"]
    return "no labelled row" if not metrics.get("n") else "no finite score"


def raw_cell(task, metrics: Mapping | None) -> str:
    """The task's primary raw metric ("0.9600", "MAE 3.1"), or "—" with the reason."""
    if score_of(metrics) is None:
        return f"{NO_SCORE} ({why_no_score(metrics)})"
    return task_kind(task.type).format_primary(metrics)


def mean_cell(per_task: Mapping) -> tuple[str, str]:
    """(the mean normalised score as a cell, the note naming the tasks left out)."""
    value, note = mean_score(per_task)
    return (NO_SCORE if value is None else f"{value:.4f}"), note


def score_name(tasks) -> str:
    """What "score" means for these tasks, for a report's legend."""
    meanings = dict.fromkeys(task_kind(t.type).score_meaning for t in tasks)
    return "normalised score (" + ", ".join(meanings) + "; higher is better)"
