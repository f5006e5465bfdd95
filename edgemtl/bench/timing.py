"""Latency statistics and the single-core compute peak that achieved speed is compared with."""
import time

import numpy as np


def percentiles(seconds) -> dict:
    """p50 / p90 / p99 / mean / min in milliseconds (linear interpolation between order statistics)."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean()), "min": float(ms.min()), "n": int(ms.size)}


def time_calls(fn, warmup: int, runs: int, max_seconds: float = float("inf"), min_runs: int = 1) -> list:
    """Seconds of each of `runs` timed calls after `warmup` untimed ones; stops early once the timed calls pass
    max_seconds and at least min_runs are done."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
        if len(out) >= min_runs and sum(out) > max_seconds:
            break
    return out


def matmul_peak_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of an n x n matmul: run with one BLAS thread it is this core's practical peak."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    best = min(time_calls(lambda: a @ b, 0, repeats))
    return 2.0 * n ** 3 / best / 1e9
