"""Bench backends, by name: what each runs on, whether it is present here (or why not), how it loads.

Each loads a target (a bundle folder or a Keras model file) and returns fn(feeds) -> outputs. GPU backends are
detected, never assumed: without a GPU they report the reason and are skipped.
"""
from pathlib import Path

from ..names import BENCH_BACKENDS


def _gpu_reason():
    from .machine import gpu_info

    gpu = gpu_info()
    return None if gpu["present"] else gpu["reason"]


def _ort_provider_reason(provider: str):
    import onnxruntime as ort

    if provider not in ort.get_available_providers():
        return f"onnxruntime has no {provider}"
    return _gpu_reason()


def _tf_gpu_reason():
    reason = _gpu_reason()
    if reason:
        return reason
    from ..tfk import tf

    return None if tf.config.list_physical_devices("GPU") else "TensorFlow sees no GPU"


def _runtime(target, threads, device="cpu"):
    from ..runtime import load

    model = load(target, threads, device)
    return model.run, model


def _ort(target, threads, provider):
    from ..runtime import load
    from ..runtime.backends import OnnxRunner

    model = load(target, threads)
    model.runner = OnnxRunner(model.manifest.model_path, threads, [provider, "CPUExecutionProvider"])
    if model.runner.provider != provider:
        raise RuntimeError(f"onnxruntime fell back to {model.runner.provider}")
    return model.run, model


def ort_node_placement(target, provider: str, feeds: dict) -> dict:
    """Nodes of a bundle's graph per execution provider, from one profiled call: ONNX Runtime quietly runs the nodes
    a GPU provider lacks on the CPU, paying a copy at every switch, so a slow GPU row often has its cause here."""
    import json
    import tempfile
    from collections import Counter

    import onnxruntime as ort

    from ..runsafety import system_temp_prefix
    from ..runtime.manifest import BundleManifest

    with tempfile.TemporaryDirectory(prefix=system_temp_prefix("ort-profile")) as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.log_severity_level = 3
        options.profile_file_prefix = str(Path(tmp) / "trace")
        session = ort.InferenceSession(str(BundleManifest.read(target).model_path), options,
                                       providers=list(dict.fromkeys([provider, "CPUExecutionProvider"])))
        session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    placed = {e["name"][:-len("_kernel_time")]: e["args"]["provider"] for e in events
              if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and "provider" in e.get("args", {})}
    return dict(Counter(placed.values()))


def _keras_predict(target, threads):
    from ..models.build import load_model

    model = load_model(target)
    return (lambda feeds: model.predict(feeds, verbose=0)), model


def _tf_function(target, threads, device="/CPU:0"):
    from ..models.build import load_model
    from ..tfk import tf

    model = load_model(target)

    @tf.function(jit_compile=False, reduce_retracing=True)
    def serve(feeds):
        return model(feeds, training=False)

    def call(feeds):
        with tf.device(device):
            return {k: v.numpy() for k, v in serve(feeds).items()}

    return call, model


ORT_GPU_PROVIDERS = {"ort-cuda": "CUDAExecutionProvider", "ort-cuda-graph": "CUDAExecutionProvider",
                     "ort-tensorrt": "TensorrtExecutionProvider"}
# name: (kind of target, reason it is unavailable here or None, loader)
BACKENDS = {
    "litert": ("tflite", lambda: None, lambda t, n: _runtime(t, n)),
    "ort-cpu": ("onnx", lambda: None, lambda t, n: _runtime(t, n)),
    "ort-cuda": ("onnx", lambda: _ort_provider_reason(ORT_GPU_PROVIDERS["ort-cuda"]),
                 lambda t, n: _ort(t, n, ORT_GPU_PROVIDERS["ort-cuda"])),
    "ort-cuda-graph": ("onnx", lambda: _ort_provider_reason(ORT_GPU_PROVIDERS["ort-cuda-graph"]),
                       lambda t, n: _runtime(t, n, "cuda-graph")),
    "ort-tensorrt": ("onnx", lambda: _ort_provider_reason(ORT_GPU_PROVIDERS["ort-tensorrt"]),
                     lambda t, n: _ort(t, n, ORT_GPU_PROVIDERS["ort-tensorrt"])),
    "keras": ("keras", lambda: None, _keras_predict),
    "tf-function": ("keras", lambda: None, _tf_function),
    "tf-gpu": ("keras", _tf_gpu_reason, lambda t, n: _tf_function(t, n, "/GPU:0")),
}
assert tuple(BACKENDS) == BENCH_BACKENDS, "every backend name of edgemtl.names has its loader here"


def unavailable(name: str):
    """Why a backend cannot run here, or None."""
    try:
        return BACKENDS[name][1]()
    except Exception as e:  # a missing library or driver is a reason, not a crash
        return f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
