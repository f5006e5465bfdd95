"""Side-by-side latency: several callables timed in interleaved rounds in one process (a burst of load on a shared
machine hits every candidate alike), medians over rounds. Used by the export's precision search (model files on
their pinned kernels), by bench's headline and by bench/fastest_artifact.py (bundles, raw-input end to end, the
floor's peaks and fixed cost).

Run in a child so that the timing process holds nothing else (no TensorFlow graph, one thread):
python -m edgemtl.bench.interleave JOB.json OUT.json
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

ROUNDS, CALLS, WARMUP = 15, 20, 10  # rounds x calls per round per candidate; untimed calls before the first round
TIE = 0.05  # medians closer than 5 % are a tie, never a ranking


def interleaved(calls: Mapping[str, Callable], rounds: int = ROUNDS, per_round: int = CALLS,
                warmup: int = WARMUP, fewer: Mapping[str, int] | None = None) -> dict[str, dict]:
    """{name: {"median_ms", "q1_ms", "q3_ms", "min_ms", "rounds"}}: ms per call of each callable, each round timing
    every callable in turn (the order rotates each round, so none is always first after another's cache traffic).
    fewer: calls per round (and warm-up calls) of slow callables (the GEMM peaks), by name."""
    names, fewer = list(calls), dict(fewer or {})
    for name in names:
        for _ in range(min(warmup, fewer.get(name, warmup))):
            calls[name]()
    times: dict[str, list] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, n = calls[name], fewer.get(name, per_round)
            start = time.perf_counter()
            for _ in range(n):
                fn()
            times[name].append((time.perf_counter() - start) / n * 1000.0)
    return {n: {"median_ms": float(np.median(t)), "q1_ms": float(np.percentile(t, 25)),
                "q3_ms": float(np.percentile(t, 75)), "min_ms": float(np.min(t)), "rounds": len(t)}
            for n, t in times.items()}


def tied(a: Mapping, b: Mapping) -> bool:
    """Two measurements whose medians differ by at most TIE of the faster. (Overlapping quartiles are no test on a
    loaded machine: a few preempted rounds widen them until everything ties.)"""
    lo, hi = sorted((a["median_ms"], b["median_ms"]))
    return hi - lo <= TIE * lo


# ---- what the child times -----------------------------------------------------------------------------------------
def _file_call(target: dict, feeds: dict) -> Callable:
    """A model file on the runtime configuration it ships with (LiteRT kernel set; ONNX Runtime level), through the
    runner's set / invoke / get (inputs quantized as the runtime does)."""
    from ..runtime.backends import open_runner

    runner = open_runner(target["path"], 1, kernels=target.get("kernels") or "xnnpack",
                         graph_optimization=target.get("graph_optimization") or "all")
    return lambda: runner.run(feeds)


def _bundle_calls(target: dict, feeds: dict, raw: dict | None) -> dict[str, Callable]:
    """A bundle through edgemtl.runtime on its pinned configuration: the model call on prepared arrays, and (raw
    given) predict() from raw inputs: decode + prepare + invoke + answers."""
    from ..runtime import load

    model = load(target["path"], threads=1)
    arrays = {k: v for k, v in feeds.items() if k in model.manifest.model_input_names}
    out = {target["name"]: lambda: model.run(arrays)}
    if raw is not None:
        out[f"{target['name']} end-to-end"] = lambda: model.predict(**raw)
    return out


def one_op_tflite() -> bytes:
    """The smallest model: one ADD of a [1, 1] float input. Its call time is the fixed cost of set / invoke / get."""
    from ..tfk import tf

    module = tf.Module()
    module.add = tf.function(lambda x: {"y": x + 1.0}, input_signature=[tf.TensorSpec([1, 1], tf.float32, name="x")])
    # the module as the trackable: the file gets a signature, which the runtime's runner reads its tensors from
    return tf.lite.TFLiteConverter.from_concrete_functions([module.add.get_concrete_function()], module).convert()


def _fixed_call(path: Path) -> Callable:
    """The 1-op model through the runtime's runner (the path every model call takes: set, invoke, get)."""
    from ..runtime.backends import LiteRTRunner

    runner = LiteRTRunner(path, 1)
    feeds = {next(iter(runner.inputs)): np.ones((1, 1), np.float32)}
    return lambda: runner.run(feeds)


def _gemm_call(path: Path) -> Callable:
    """A GEMM model's invoke alone on XNNPACK (its input set once): the compute peak, no call overhead."""
    from ..runtime.backends import _interpreter

    interpreter = _interpreter(path, 1, "xnnpack")
    d = interpreter.get_input_details()[0]
    interpreter.set_tensor(d["index"], np.ones(d["shape"], d["dtype"]))
    return interpreter.invoke


GEMM_CALLS = 2  # calls per round of a GEMM peak model (tens of ms each)


def main(job_path: str, out_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    with np.load(job["inputs"]) as z:
        feeds = {k: z[k][:1] for k in z.files}
    Path(out_path).write_text(json.dumps(run_job(job, feeds)))


def run_job(job: dict, feeds: dict) -> dict:
    calls: dict[str, Callable] = {}
    for target in job["targets"]:
        if target.get("bundle"):
            calls.update(_bundle_calls(target, feeds, job.get("raw")))
        else:
            calls[target["name"]] = _file_call(target, feeds)
    if job.get("fixed_model"):
        calls["1-op model"] = _fixed_call(Path(job["fixed_model"]))
    fewer = {}
    for precision, path in (job.get("gemm") or {}).items():
        calls[f"gemm {precision}"] = _gemm_call(Path(path))
        fewer[f"gemm {precision}"] = GEMM_CALLS
    result: dict = {"repeats": []}
    for _ in range(job.get("repeats", 1)):
        result["repeats"].append(interleaved(calls, job.get("rounds", ROUNDS), job.get("calls", CALLS),
                                             fewer=fewer))
    return result


def merged(repeats: list[dict]) -> dict[str, dict]:
    """Each name's median of its repeats' medians (and the widest quartiles), so one noisy repeat does not decide."""
    names = repeats[0]
    return {n: {"median_ms": float(np.median([r[n]["median_ms"] for r in repeats])),
                "q1_ms": min(r[n]["q1_ms"] for r in repeats), "q3_ms": max(r[n]["q3_ms"] for r in repeats),
                "min_ms": min(r[n]["min_ms"] for r in repeats), "repeats": [r[n]["median_ms"] for r in repeats]}
            for n in names}


def measure(targets: list[dict], feeds: dict, *, raw: dict | None = None, repeats: int = 1, rounds: int = ROUNDS,
            calls: int = CALLS, peaks: bool = False, fixed: bool = False, workdir: Path | None = None,
            inline: bool = False) -> dict:
    """Time targets side by side in a one-thread child. targets: {"name", "path", "kernels"?, "graph_optimization"?,
    "bundle"?: true}. Returns {"latency": {name: merged stats}}; fixed adds "1-op model" to it, peaks the GEMM
    models' rows and "peaks": {fp32 | int8: {"gops", "engine"}} (the best round). The 1-op and GEMM models are built
    here (they need TensorFlow's converter); the child needs LiteRT only. inline: time in this process (the export's
    search, whose process runs nothing else meanwhile: a child's start would cost more than its few timings)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        job = {"targets": targets, "raw": raw, "repeats": repeats, "rounds": rounds, "calls": calls}
        if fixed:
            (tmp / "one_op.tflite").write_bytes(one_op_tflite())
            job["fixed_model"] = str(tmp / "one_op.tflite")
        if peaks:
            from .timing import gemm_tflite

            for precision in ("fp32", "int8"):
                (tmp / f"gemm_{precision}.tflite").write_bytes(gemm_tflite(precision))
            job["gemm"] = {p: str(tmp / f"gemm_{p}.tflite") for p in ("fp32", "int8")}
        out = run_job(job, feeds) if inline else _in_child(job, feeds, tmp)
    latency = merged(out["repeats"])
    result = {"latency": latency, "repeats": repeats, "rounds": rounds, "calls": calls}
    if peaks:
        from .timing import GEMM

        m, k, n = GEMM
        result["peaks"] = {p: {"gops": 2.0 * m * k * n / (latency.pop(f"gemm {p}")["min_ms"] / 1000) / 1e9,
                               "engine": f"LiteRT XNNPACK fully-connected {m}x{k}x{n}, best round"}
                           for p in ("fp32", "int8")}
    return result


def _in_child(job: dict, feeds: dict, tmp: Path) -> dict:
    np.savez(tmp / "inputs.npz", **feeds)
    (tmp / "job.json").write_text(json.dumps({**job, "inputs": str(tmp / "inputs.npz")}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "edgemtl.bench.interleave", str(tmp / "job.json"),
                           str(tmp / "out.json")], env=env, capture_output=True, text=True)
    if done.returncode != 0 or not (tmp / "out.json").exists():
        from ..errors import EdgemtlError

        last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or [f"exit {done.returncode}"]
        raise EdgemtlError(f"side-by-side timing failed: {last[0][:300]}")
    return json.loads((tmp / "out.json").read_text())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
