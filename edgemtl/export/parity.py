"""The parity gate: an artifact is deployable only if it answers like the trained Keras model.

float (fp32) artifacts: every output within 1e-4 of Keras (relative to the value for regression outputs in label units);
reduced-precision artifacts: per task, the test metric may drop by at most the recipe's tolerance; top-1 agreement
with Keras is reported. An artifact that its runtime refuses to load fails the gate.
"""
import numpy as np

from ..metrics import decide, score_task
from ..runtime.backends import ModelLoadError, open_runner, run_batched

FLOAT_ATOL = 1e-4


def check(path, precision: str, x: dict, y: dict, reference: dict, tasks: list, labels: dict, tolerance: dict) -> dict:
    try:
        outputs = run_batched(open_runner(path), x)
    except ModelLoadError as e:
        return {"deployable": False, "reason": str(e), "tasks": {}}
    result, problems = {}, []
    for t in tasks:
        name = t.name
        ref, got = reference[name], outputs[name].reshape(reference[name].shape)
        std = labels[name].get("std", 1.0)
        ref_m = score_task(t.type, y[name], ref, t.threshold, std)
        got_m = score_task(t.type, y[name], got, t.threshold, std)
        diff = np.abs(got - ref) / np.maximum(1.0, np.abs(ref)) if t.type == "regression" else np.abs(got - ref)
        row = {"max_abs_diff": float(diff.max()), "metric": _metric_name(t), "keras": ref_m[_metric_name(t)],
               "artifact": got_m[_metric_name(t)], "drop": float(ref_m["score"] - got_m["score"]),
               "agreement": _agreement(t, ref, got)}
        if precision == "fp32":
            if row["max_abs_diff"] > FLOAT_ATOL:
                problems.append(f"{name}: max difference {row['max_abs_diff']:.2e} > {FLOAT_ATOL:g}")
        elif row["drop"] > tolerance.get(name, 0.01) + 1e-12:
            problems.append(f"{name}: {row['metric']} {row['artifact']:.4f} vs {row['keras']:.4f} "
                            f"(drop {row['drop']:.4f} > tolerance {tolerance.get(name, 0.01):g})")
        result[name] = row
    return {"deployable": not problems, "reason": "; ".join(problems), "tasks": result, "rows": len(y[tasks[0].name])}


def _metric_name(task) -> str:
    return "mae" if task.type == "regression" else "accuracy"


def _agreement(task, ref, got) -> float:
    if task.type == "regression":
        return float(np.mean(np.abs(got - ref) <= 0.01 * np.maximum(1.0, np.abs(ref))))
    return float(np.mean(decide(task.type, ref, task.threshold) == decide(task.type, got, task.threshold)))
