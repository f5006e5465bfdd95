"""Model-file runners for the runtime, parity checks and benchmarks: LiteRT and ONNX Runtime, never TensorFlow.

Inputs and outputs are always dicts keyed by feature and task names: positions of a converted model's tensors
are not the Keras order (STACK_NOTES), so nothing here relies on them.
"""
from pathlib import Path

import numpy as np


class ModelLoadError(RuntimeError):
    """The runtime refused the model file."""


class LiteRTRunner:
    def __init__(self, path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self.runner = self.interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(f"{path}: LiteRT cannot load this model ({str(e).splitlines()[0]})") from None
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()

    def run(self, feeds: dict) -> dict:
        feeds = {k: _quantize(v, self.inputs[k]) for k, v in feeds.items()}
        out = self.runner(**feeds)
        return {k: _dequantize(v, self.outputs[k]) for k, v in out.items()}


class OnnxRunner:
    def __init__(self, path, threads: int = 1, providers=None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own exception types for files it refuses
            raise ModelLoadError(f"{path}: ONNX Runtime cannot load this model ({str(e).splitlines()[0][:300]})") \
                from None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict) -> dict:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))


def _quantize(value, detail):
    scale, zero = detail["quantization"]
    if detail["dtype"] in (np.int8, np.uint8) and scale and value.dtype == np.float32:
        info = np.iinfo(detail["dtype"])
        return np.clip(np.round(value / scale + zero), info.min, info.max).astype(detail["dtype"])
    return value.astype(detail["dtype"])


def _dequantize(value, detail):
    scale, zero = detail["quantization"]
    if detail["dtype"] in (np.int8, np.uint8) and scale:
        return (value.astype(np.float32) - zero) * scale
    return value


def open_runner(path, threads: int = 1):
    return (LiteRTRunner if Path(path).suffix == ".tflite" else OnnxRunner)(path, threads)


def run_batched(runner, x: dict, batch: int = 64) -> dict:
    n = len(next(iter(x.values())))
    parts = [runner.run({k: v[i:i + batch] for k, v in x.items()}) for i in range(0, n, batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
