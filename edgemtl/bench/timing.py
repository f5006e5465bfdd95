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


GEMM = (256, 1024, 1024)  # rows x depth x columns: large enough that call overhead does not count


def gemm_peaks(repeats: int = 10) -> dict:
    """This core's practical peak, one thread: the best GEMM rate of numpy (float32) and of LiteRT's XNNPACK
    (float32 and int8 fully-connected), as {"fp32" | "int8": {"gops": ..., "engine": ...}}. numpy alone understates
    a CPU whose BLAS build lacks kernels for it (measured: 137 vs 276 GFLOP/s on an AVX-512 EPYC core)."""
    rates = {("fp32", "numpy 1024x1024 matmul"): _numpy_gemm_gops(1024, repeats)}
    try:
        for precision in ("fp32", "int8"):
            rates[(precision, f"LiteRT XNNPACK fully-connected {'x'.join(map(str, GEMM))}")] = \
                _litert_gemm_gops(precision, repeats)
    except ImportError:  # a runtime-only install has no TensorFlow to build the GEMM model with
        pass
    peaks = {}
    for (precision, engine), gops in rates.items():
        if gops > peaks.get(precision, {}).get("gops", 0):
            peaks[precision] = {"gops": gops, "engine": engine}
    return peaks


def _numpy_gemm_gops(n: int, repeats: int) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    return 2.0 * n ** 3 / min(time_calls(lambda: a @ b, 0, repeats)) / 1e9


def _litert_gemm_gops(precision: str, repeats: int) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=_gemm_tflite(precision), num_threads=1)
    interpreter.allocate_tensors()
    d = interpreter.get_input_details()[0]
    interpreter.set_tensor(d["index"], np.ones(d["shape"], d["dtype"]))
    interpreter.invoke()
    m, k, n = GEMM
    return 2.0 * m * k * n / min(time_calls(interpreter.invoke, 0, repeats)) / 1e9


def _gemm_tflite(precision: str) -> bytes:
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
