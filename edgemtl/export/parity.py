"""The parity gate: an artifact is deployable only if it answers like the trained Keras model.

float (fp32) artifacts: every output within 1e-4 of Keras (relative to the value for regression outputs in label units);
reduced-precision artifacts: per task, the test metric may drop by at most the recipe's tolerance; top-1 agreement
with Keras is reported. An artifact that its runtime refuses to load fails the gate.
"""
from .. import kinds
from ..kinds.base import finite
from ..runtime.backends import ModelLoadError, open_runner, run_batched

FLOAT_ATOL = 1e-4


def check(path, precision: str, x: dict, y: dict, reference: dict, tasks: list, labels: dict, tolerance: dict) -> dict:
    try:
        outputs = run_batched(open_runner(path), x)
    except ModelLoadError as e:
        return {"deployable": False, "reason": str(e), "tasks": {}}
    result, problems, reasons = {}, [], {}
    for t in tasks:
        name = t.name
        ref, got = reference[name], outputs[name].reshape(reference[name].shape)
        std = labels[name].get("std", 1.0)
        tk = kinds.task_kind(t.type)
        ref_m = tk.score(y[name], ref, t.threshold, std)
        got_m = tk.score(y[name], got, t.threshold, std)
        diff = tk.float_diff(ref, got)
        scored = finite(ref_m["score"]) and finite(got_m["score"])  # None (or NaN): no scorable row
        row = {"max_abs_diff": float(diff.max()), "metric": tk.primary_metric, "keras": ref_m[tk.primary_metric],
               "artifact": got_m[tk.primary_metric], "drop": float(ref_m["score"] - got_m["score"]) if scored else None,
               "agreement": tk.agreement(ref, got, t.threshold)}
        if not scored:
            why = ref_m.get("reason") or got_m.get("reason") or "no score"
            reasons.update({f"tasks.{name}.{k}": why for k in ("drop", "keras", "artifact")})
        if precision == "fp32":
            if row["max_abs_diff"] > FLOAT_ATOL:
                problems.append(f"{name}: max difference {row['max_abs_diff']:.2e} > {FLOAT_ATOL:g}")
        elif not scored:  # no scorable test row (e.g. every class unseen in training): judge by agreement
            if 1.0 - row["agreement"] > tolerance.get(name, 0.01) + 1e-12:
                problems.append(f"{name}: no scorable test row ({ref_m.get('reason')}); decisions agree with Keras "
                                f"on {row['agreement']:.4f} of rows (tolerance {tolerance.get(name, 0.01):g})")
        elif row["drop"] > tolerance.get(name, 0.01) + 1e-12:
            problems.append(f"{name}: {row['metric']} {row['artifact']:.4f} vs {row['keras']:.4f} "
                            f"(drop {row['drop']:.4f} > tolerance {tolerance.get(name, 0.01):g})")
        result[name] = row
    return {"deployable": not problems, "reason": "; ".join(problems), "tasks": result, "rows": len(y[tasks[0].name]),
            "null_reasons": reasons}
