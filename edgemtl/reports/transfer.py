"""Negative transfer: each task's multitask test metric against its single-task model's, and Δm.

Δm (Maninis et al. 2019) = mean over tasks of (-1)^l_t (M_mt - M_st) / M_st, l_t = 1 where lower is better: the
mean relative change a multitask model brings, positive when it helps. Each task also gets a verdict that takes the
run-to-run spread into account (RULE): a difference within two standard errors of the difference is neutral. The
standard error comes from the test split itself: binomial for a metric that is a proportion (accuracy; scores in
[0, 1] such as F1, mAP or IoU are treated as one, an approximation), sqrt(RMSE^2 - MAE^2) / sqrt(n) for an MAE,
each model's error combined as independent (sqrt(se_mt^2 + se_st^2)); or from a measured seed spread where one is
given (`spread`: task -> standard deviation of the metric over seeds, then the SE of the difference is
spread * sqrt(2)). TF-free.
"""
import math
from collections.abc import Mapping

from ..kinds import task_kind

RULE = ("neutral when |M_mt - M_st| <= 2 standard errors of the difference (binomial SE of each test accuracy, "
        "sqrt(RMSE^2 - MAE^2)/sqrt(n) of each MAE, or a measured seed spread); otherwise helped or hurt by the "
        "direction of the metric")
LEVERS = ("raise the hurt tasks' `weight`, or try `training.loss_combination.type: pcgrad | gradnorm | cagrad` "
          "(gradient methods against conflicting tasks), or task towers (`trunk.type: mmoe | ple`)")


def task_transfer(metric: str, lower_is_better: bool, mt: Mapping, st: Mapping, spread: float | None = None) -> dict:
    """One task: mt and st are its test metrics dicts (with "n"; "rmse" beside an "mae")."""
    m, s = mt.get(metric), st.get(metric)
    row = {"metric": metric, "lower_is_better": lower_is_better, "multitask": m, "single_task": s}
    if not _finite(m) or not _finite(s):
        return {**row, "relative_change": None, "se": None, "verdict": None}
    sign = -1.0 if lower_is_better else 1.0
    relative = sign * (m - s) / s if s else None
    se = spread * math.sqrt(2.0) if spread is not None else _se_difference(metric, mt, st)
    if se is not None and abs(m - s) <= 2.0 * se:
        verdict = "neutral"
    else:
        verdict = "helped" if sign * (m - s) > 0 else ("hurt" if m != s else "neutral")
    return {**row, "relative_change": relative, "se": se, "verdict": verdict}


def _se_difference(metric: str, mt: Mapping, st: Mapping) -> float | None:
    a, b = _se(metric, mt), _se(metric, st)
    return None if a is None or b is None else math.sqrt(a * a + b * b)


def _se(metric: str, values: Mapping) -> float | None:
    n, v = values.get("n"), values.get(metric)
    if not n or not _finite(v):
        return None
    if metric == "mae":
        rmse = values.get("rmse")
        return math.sqrt(max(rmse * rmse - v * v, 0.0) / n) if _finite(rmse) else None
    if 0.0 <= v <= 1.0:
        return math.sqrt(v * (1.0 - v) / n)
    return None


def transfer(tasks, teacher_test: Mapping, single_tests: Mapping, spread: Mapping | None = None) -> dict | None:
    """{"delta_m", "delta_m_tasks", "rule", "tasks": {task: task_transfer row}, "helped", "hurt", "neutral"} over
    the tasks (TaskSpecs) with a test score from both models; None when no task has a single-task model."""
    rows = {}
    for t in tasks:
        mt, st = teacher_test.get(t.name), single_tests.get(t.name)
        if not mt or not st:
            continue
        kind = task_kind(t.type)
        metric = kind.primary_metric
        rows[t.name] = task_transfer(metric, metric in kind.lower_is_better_metrics, mt, st,
                                     (spread or {}).get(t.name))
    if not rows:
        return None
    changes = [r["relative_change"] for r in rows.values() if r["relative_change"] is not None]
    return {"delta_m": sum(changes) / len(changes) if changes else None, "delta_m_tasks": len(changes),
            "split": "test", "rule": RULE, "tasks": rows,
            **{v: [n for n, r in rows.items() if r["verdict"] == v] for v in ("helped", "hurt", "neutral")}}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def update_transfer(run, recipe) -> dict | None:
    """Compute the teacher's transfer verdict from the run's metrics files and store it in the teacher's
    metrics.json under "transfer" (None, and nothing written, before the teacher and a single-task model are
    evaluated on the test split)."""
    from ..artifacts import single_task_name
    from ..model_metrics import read_metrics, update_metrics

    tasks = [t for t in recipe.tasks if not t.auxiliary]
    teacher = read_metrics(run, "teacher")
    test = teacher.get("splits", {}).get("test", {})
    singles = {t.name: read_metrics(run, single_task_name(t.name)).get("splits", {}).get("test", {}).get(t.name)
               for t in tasks}
    result = transfer(tasks, test, {k: v for k, v in singles.items() if v})
    if result is not None:
        update_metrics(run, "teacher", {"transfer": result})
    return result
