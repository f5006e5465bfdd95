"""Latency statistics, and the GEMM model the single-core peak is measured with (bench/interleave.py)."""
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


GEMM = (256, 1024, 1024)  # rows x depth x columns: large enough that call overhead does not count


def gemm_tflite(precision: str) -> bytes:
    """x @ W with a constant W as a TFLite model (one FULLY_CONNECTED op), float32 or full-integer int8."""
    from ..tfk import tf

    m, k, n = GEMM
    rng = np.random.default_rng(0)
    w = tf.constant(rng.standard_normal((k, n)).astype(np.float32) / 32)
    gemm = tf.function(lambda x: tf.matmul(x, w), input_signature=[tf.TensorSpec([m, k], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([gemm.get_concrete_function()], gemm)
    if precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.standard_normal((m, k)).astype(np.float32)] for _ in range(2))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()
