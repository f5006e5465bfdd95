"""Child process of the parity gate: python -m edgemtl.export.gate_worker JOB.json.

Opens one candidate file in its runtime (LiteRT or ONNX Runtime, never TensorFlow), times LiteRT's kernel sets when
asked, and writes the outputs on the test rows. A file that aborts its runtime (SIGABRT, a segfault) kills this
process only: the gate turns the exit into a failed verdict with the reason.
"""
import json
import sys
from pathlib import Path

import numpy as np


def main(job_path: str) -> None:
    from ..runtime.backends import ModelLoadError, measure_kernels, open_runner, run_batched

    job = json.loads(Path(job_path).read_text())
    path, threads = Path(job["model"]), int(job["threads"])
    result: dict = {"kernels": job.get("kernels"), "timings_ms": None}
    try:
        if result["kernels"] == "measure":
            result["timings_ms"] = measure_kernels(path, threads)
            result["kernels"] = min(result["timings_ms"], key=result["timings_ms"].get)
        runner = open_runner(path, threads, kernels=result["kernels"] or "xnnpack",
                             graph_optimization=job.get("graph_optimization") or "all")
        with np.load(job["inputs"]) as z:
            x = {k: z[k] for k in z.files}
        outputs = run_batched(runner, x, int(job["batch"]))
    except ModelLoadError as e:
        result["load_error"] = str(e)
        Path(job["result"]).write_text(json.dumps(result))
        return
    if hasattr(runner, "inputs"):  # LiteRT: the file's I/O tensors (int8io is checked on them)
        result["io"] = {n: {"dtype": np.dtype(d["dtype"]).name, "scale": float(d["quantization"][0]),
                            "zero_point": int(d["quantization"][1])}
                        for n, d in {**runner.inputs, **runner.outputs}.items()}
        result["inputs"] = list(runner.inputs)
    np.savez(job["outputs"], **outputs)
    Path(job["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
