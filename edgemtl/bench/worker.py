"""One measurement in a fresh process, so that cold start and peak memory belong to this artifact and backend alone:
python -m edgemtl.bench.worker JOB.json OUT.json."""
import json
import resource
import sys
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child of
    a big process would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(job_path: str, out_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    import numpy as np

    from ..errors import EdgemtlError
    from ..names import GPU_BACKENDS
    from .backends import BACKENDS, ORT_GPU_PROVIDERS, ort_node_placement
    from .machine import gpu_memory_mb
    from .timing import percentiles, time_calls

    with np.load(job["inputs"]) as z:
        x = {k: z[k] for k in z.files}
    one = {k: v[:1] for k, v in x.items()}
    try:
        call, _ = BACKENDS[job["backend"]][2](job["target"], job["threads"])
    except (EdgemtlError, RuntimeError) as e:  # the backend refused this file: a finding for the report
        Path(out_path).write_text(json.dumps({"error": str(e).splitlines()[0]}))
        return
    call(one)
    first_answer = time.time()  # the parent subtracts its launch time: cold start = process start to first answer
    limit = job["max_seconds"]
    latency = percentiles(time_calls(lambda: call(one), job["warmup"], job["runs"], limit, job["warmup"]))
    batch = {k: v[:job["batch"]] for k, v in x.items()}
    n = len(next(iter(batch.values())))
    big = percentiles(time_calls(lambda: call(batch), 2, max(3, job["runs"] // 10), limit, 3))
    result = {"first_answer_at": first_answer, "latency_ms": latency, "batch": n, "batch_latency_ms": big,
              "throughput_per_s": n / (big["p50"] / 1000.0),
              "peak_rss_mb": peak_rss_mb()}
    if job["backend"] in GPU_BACKENDS:
        result["gpu_memory_mb"] = gpu_memory_mb()
    if job["backend"] in ORT_GPU_PROVIDERS:
        result["nodes_by_provider"] = ort_node_placement(job["target"], ORT_GPU_PROVIDERS[job["backend"]], one)
    Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
