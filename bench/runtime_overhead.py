"""The runtime's cost over a bare interpreter, and its import time (issue: overhead <= 20 % at batch 1, import < 1 s).

    python bench/runtime_overhead.py BUNDLE [BUNDLE ...] [--runs 2000]

Both paths get the same prepared arrays (preprocessing excluded): the bare path is set_tensor / invoke / get_tensor
on a LiteRT interpreter (or session.run for ONNX); the runtime path is BundleModel.run. Measured interleaved, in one
process, so machine noise hits both alike. Import time is measured in fresh interpreters.
"""
import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def import_seconds(repeats: int = 5) -> float:
    code = "import time; t = time.perf_counter(); import edgemtl.runtime; print(time.perf_counter() - t)"
    return statistics.median(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                  check=True).stdout) for _ in range(repeats))


def bare_call(model, feeds):
    runner = model.runner
    if hasattr(runner, "interpreter"):
        interpreter = runner.interpreter
        ins = [(runner.inputs[n]["index"], v) for n, v in feeds.items()]
        outs = [d["index"] for d in runner.outputs.values()]

        def call():
            for index, value in ins:
                interpreter.set_tensor(index, value)
            interpreter.invoke()
            return [interpreter.get_tensor(i) for i in outs]
        return call
    session = runner.session
    return lambda: session.run(None, feeds)


def main():
    from edgemtl.runtime import load
    from edgemtl.runtime.backends import _quantize

    ap = argparse.ArgumentParser()
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--runs", type=int, default=2000)
    args = ap.parse_args()
    print(f"import edgemtl.runtime: {import_seconds():.3f} s (median of 5 fresh interpreters)\n")
    print("| bundle | bare p50 µs | runtime p50 µs | overhead |")
    print("|---|---|---|---|")
    for bundle in args.bundles:
        model = load(bundle)
        feeds = {n: np.zeros((1, *p.shape), p.dtype) for n, p in model.inputs.items()}
        quantized = getattr(model.runner, "_quantized_in", set())  # int8-I/O bundles: the bare path gets int8
        bare_feeds = {n: _quantize(v.astype(np.float32), model.runner.inputs[n]) if n in quantized else v
                      for n, v in feeds.items()}
        bare, ours = bare_call(model, bare_feeds), (lambda model=model, feeds=feeds: model.run(feeds))
        for _ in range(50):
            bare(), ours()
        t_bare, t_ours = [], []
        for _ in range(args.runs):  # interleaved
            start = time.perf_counter()
            bare()
            t_bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            ours()
            t_ours.append(time.perf_counter() - start)
        b, o = statistics.median(t_bare) * 1e6, statistics.median(t_ours) * 1e6
        print(f"| {Path(bundle).name} | {b:.1f} | {o:.1f} | {(o / b - 1) * 100:+.1f} % |")


if __name__ == "__main__":
    main()
