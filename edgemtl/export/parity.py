"""The parity gate: an artifact is deployable only if it answers like the trained Keras model.

float (fp32) artifacts: every output within 1e-4 of Keras (relative to the value for regression outputs in label units);
reduced-precision artifacts: per task, the test metric may drop by at most the recipe's tolerance; top-1 agreement
with Keras is reported. An artifact that its runtime refuses to load, or that crashes it, fails the gate.

The candidate runs in a child process (gate_worker.py) on the runtime configuration the bundle will name: LiteRT's
faster kernel set measured there (median of interleaved rounds) at GATE_THREADS threads, ONNX Runtime with every
graph optimisation on the CPU provider. The outputs' digest goes into parity.json, so a load can prove it answers
exactly as the gate measured.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .. import kinds
from ..kinds.base import finite
from ..presence import PRESENT_SUFFIX
from ..runsafety import system_temp_prefix
from ..runtime.backends import outputs_digest

FLOAT_ATOL = 1e-4
GATE_BATCH = 64  # rows per call on the test split (run_batched's default): the digest depends on it
GATE_THREADS = 1
ORT_LEVEL, ORT_PROVIDER = "all", "CPUExecutionProvider"


def runtime_choice(path, runtime: str | None = None) -> dict:
    """What the child is asked to run the file on: LiteRT files measure their kernel sets, ONNX files are fixed,
    micro files run in TFLite Micro (runtime "tflm")."""
    if runtime == "tflm":
        return {"runtime": "tflm", "threads": 1}
    if Path(path).suffix == ".tflite":
        return {"kernels": "measure", "threads": GATE_THREADS}
    return {"graph_optimization": ORT_LEVEL, "provider": ORT_PROVIDER, "threads": GATE_THREADS}


def worker_command(job: Path, runtime: str | None = None) -> list[str]:
    """The child that opens and runs one candidate (a test swaps it for one that crashes)."""
    module = "edgemtl.export.micro_worker" if runtime == "tflm" else "edgemtl.export.gate_worker"
    return [sys.executable, "-m", module, str(job)]


def run_candidate(path, x: dict, timeout: float | None = None,
                  runtime: str | None = None) -> tuple[dict | None, dict]:
    """(outputs or None, facts) of one file run in a child: facts carry the runtime config it ran on, and `error`
    when the runtime refused or crashed on the file."""
    choice = runtime_choice(path, runtime)
    with tempfile.TemporaryDirectory(prefix=system_temp_prefix("gate")) as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "x.npz", **x)
        job = {"model": str(path), "inputs": str(tmp / "x.npz"), "outputs": str(tmp / "out.npz"),
               "result": str(tmp / "result.json"), "batch": GATE_BATCH, **choice}
        (tmp / "job.json").write_text(json.dumps(job))
        try:
            done = subprocess.run(worker_command(tmp / "job.json", runtime), capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, {**choice, "error": f"{Path(path).name}: the runtime did not answer within {timeout:g} s"}
        result_file = tmp / "result.json"
        if done.returncode != 0 or not result_file.exists():
            how = f"crashed (signal {-done.returncode})" if done.returncode < 0 else f"failed (exit {done.returncode})"
            last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["no message"]
            return None, {**choice, "error": f"{Path(path).name}: the runtime {how} loading or running this model: "
                                            f"{last[0][:300]}"}
        facts = {**choice, **json.loads(result_file.read_text())}
        if "load_error" in facts:
            return None, {**facts, "error": facts.pop("load_error")}
        with np.load(tmp / "out.npz") as z:
            return {k: z[k] for k in z.files}, facts


def int8io_problems(facts: dict) -> list[str]:
    """An int8io file has integer inputs and outputs: the converter silently keeps float I/O when a part stays in
    float, and such a file is not what int8io promises (the C array and firmware feed it integers). An optional
    input's presence flag is one of those integer inputs: its 0 and 1 must each be one exact integer."""
    io = facts.get("io") or {}
    problems = [f"int8io: {'input' if name in facts.get('inputs', ()) else 'output'} '{name}' is {d['dtype']}, not "
                f"integer (the converter kept float I/O)" for name, d in io.items() if d["dtype"].startswith("float")]
    presence = [presence_problem(name, d) for name, d in io.items()
                if name.endswith(PRESENT_SUFFIX) and name in facts.get("inputs", ())]
    return problems + [p for p in presence if p]


def presence_problem(name: str, d: dict) -> str:
    """'' where an integer presence input carries 0 and 1 exactly (calibration saw both: scale 1/255, zero point
    -128 for int8 gives -128 and 127), else why not."""
    if d["dtype"].startswith("float") or not d["scale"]:
        return ""
    info = np.iinfo(np.dtype(d["dtype"]))
    wrong = [v for v in (0.0, 1.0)
             if abs((np.clip(np.round(v / d["scale"] + d["zero_point"]), info.min, info.max) - d["zero_point"])
                    * d["scale"] - v) > 1e-6]
    return (f"int8io: presence input '{name}' ({d['dtype']}, scale {d['scale']:.4g}, zero point {d['zero_point']}) "
            f"does not carry {' and '.join(f'{v:g}' for v in wrong)} exactly" if wrong else "")


def check(path, precision: str, x: dict, y: dict, reference: dict, tasks: list, labels: dict, tolerance: dict,
          timeout: float | None = None, patterns=None, runtime: str | None = None) -> dict:
    """patterns: one presence pattern per test row (optional inputs, presence.patterns), or None: a reduced
    precision must then keep every task within its tolerance on the rows of each pattern too. runtime: "tflm" runs
    the file in TFLite Micro (the micro format: integer I/O required, its arena measured)."""
    outputs, facts = run_candidate(path, x, timeout, runtime)
    integer_io = precision == "int8io" or runtime == "tflm"
    runtime = {k: v for k, v in facts.items() if k in ("kernels", "threads", "graph_optimization", "provider",
                                                       "timings_ms", "runtime")}
    if outputs is None:
        return {"deployable": False, "reason": facts["error"], "tasks": {}, "runtime": runtime}
    result, problems, reasons = {}, int8io_problems(facts) if integer_io else [], {}
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
    by_pattern = {}
    if patterns is not None and len(set(patterns)) > 1:
        by_pattern, pattern_problems = _pattern_parity(outputs, y, reference, tasks, labels, tolerance, patterns,
                                                       judged=precision != "fp32")
        problems += pattern_problems
    return {"deployable": not problems, "reason": "; ".join(problems), "tasks": result, "rows": len(y[tasks[0].name]),
            "patterns": by_pattern, "runtime": runtime, "io": facts.get("io"),
            "outputs_digest": outputs_digest(outputs, [t.name for t in tasks]), "null_reasons": reasons,
            "memory": facts.get("memory")}


def _pattern_parity(outputs: dict, y: dict, reference: dict, tasks: list, labels: dict, tolerance: dict, patterns,
                    judged: bool) -> tuple[dict, list[str]]:
    """Per presence pattern: rows, and per task the Keras and artifact metric and the drop; with `judged`, a drop
    beyond the task's tolerance on any pattern's rows is a problem (fp32 is judged on every output already)."""
    out, problems = {}, []
    for pattern in sorted(set(patterns)):
        mask = np.asarray(patterns) == pattern
        rows = {}
        for t in tasks:
            tk, std = kinds.task_kind(t.type), labels[t.name].get("std", 1.0)
            ref = reference[t.name][mask]
            got = outputs[t.name].reshape(reference[t.name].shape)[mask]
            ref_m, got_m = tk.score(y[t.name][mask], ref, t.threshold, std), tk.score(y[t.name][mask], got,
                                                                                      t.threshold, std)
            drop = (float(ref_m["score"] - got_m["score"]) if finite(ref_m["score"]) and finite(got_m["score"])
                    else None)
            rows[t.name] = {"metric": tk.primary_metric, "keras": ref_m[tk.primary_metric],
                            "artifact": got_m[tk.primary_metric], "drop": drop}
            if judged and drop is not None and drop > tolerance.get(t.name, 0.01) + 1e-12:
                problems.append(f"{t.name} on '{pattern}' rows: {tk.primary_metric} {rows[t.name]['artifact']:.4f} vs "
                                f"{rows[t.name]['keras']:.4f} (drop {drop:.4f} > tolerance "
                                f"{tolerance.get(t.name, 0.01):g})")
        out[pattern] = {"rows": int(mask.sum()), "tasks": rows}
    return out, problems
