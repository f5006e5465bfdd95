"""Model-file runners for the runtime, parity checks and benchmarks: LiteRT and ONNX Runtime, never TensorFlow.

Inputs and outputs are always dicts keyed by feature and task names: positions of a converted model's tensors
are not the Keras order (a converted model may list text before image), so nothing here relies on them.
"""
import time
from pathlib import Path

import numpy as np


class ModelLoadError(RuntimeError):
    """The runtime refused the model file."""


class LiteRTRunner:
    """The interpreter driven through tensor indices (set, invoke, get): the signature runner's per-call
    bookkeeping costs more than a small model's whole invoke.

    kernels: xnnpack (LiteRT's default delegate) or builtin (its own kernels). On int8 graphs the two round
    differently, so a bundle names the set its gate verified (manifest `runtime`) and the runtime opens exactly that.
    auto (version-1 bundles only): time both at load and keep the faster, so answers depend on machine load.
    """

    def __init__(self, path, threads: int = 1, kernels: str = "xnnpack"):
        try:
            if kernels == "auto":
                self.interpreter, self.kernels = _fastest_interpreter(path, threads)
            else:
                self.interpreter, self.kernels = _interpreter(path, threads, kernels), kernels
            signature = self.interpreter.get_signature_runner()
            self.inputs = signature.get_input_details()
            self.outputs = signature.get_output_details()
            del signature  # it holds references to tensor buffers, which would block resizing
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(f"{path}: LiteRT cannot load this model ({str(e).splitlines()[0]})") from None
        self.batch = 1
        # a fixed batch dimension (micro files: batch 1, shapes folded into the graph) cannot be resized: row by row
        self.fixed_batch = any(int(d.get("shape_signature", d["shape"])[0]) > 0 for d in self.inputs.values())
        self._quantized_in = {n for n, d in self.inputs.items() if _is_quantized(d)}
        self._quantized_out = {n for n, d in self.outputs.items() if _is_quantized(d)}
        # what a call does per tensor, decided once: a small model's whole invoke is a few dict lookups long
        self._feeders = {n: (d["index"], _feeder(d, n in self._quantized_in)) for n, d in self.inputs.items()}
        self._fetchers = [(n, d["index"], d if n in self._quantized_out else None) for n, d in self.outputs.items()]

    def _resize(self, batch: int):
        for d in self.inputs.values():
            self.interpreter.resize_tensor_input(d["index"], [batch, *d["shape"][1:]])
        self.interpreter.allocate_tensors()
        self.batch = batch

    def run(self, feeds: dict) -> dict:
        batch = len(next(iter(feeds.values())))
        if self.fixed_batch and batch != self.batch:
            parts = [self.run({k: v[i:i + self.batch] for k, v in feeds.items()}) for i in range(0, batch, self.batch)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if batch != self.batch:
            self._resize(batch)
        interpreter = self.interpreter
        set_tensor, get_tensor, feeders = interpreter.set_tensor, interpreter.get_tensor, self._feeders
        for name, value in feeds.items():
            index, convert = feeders[name]
            set_tensor(index, convert(value))
        interpreter.invoke()
        return {name: get_tensor(index) if quantized is None else _dequantize(get_tensor(index), quantized)
                for name, index, quantized in self._fetchers}

    def input_names(self) -> list:
        return list(self.inputs)

    def output_names(self) -> list:
        return list(self.outputs)

    def input_shapes(self) -> dict:
        return {n: list(d["shape"]) for n, d in self.inputs.items()}

    def output_shapes(self) -> dict:
        return {n: list(d["shape"]) for n, d in self.outputs.items()}


def _load_gpu_libraries(ort):
    """CUDA and cuDNN from pip's nvidia-* packages, so that no LD_LIBRARY_PATH is needed."""
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()


ORT_LEVELS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


class OnnxRunner:
    def __init__(self, path, threads: int = 1, providers=None, graph_optimization: str = "all"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS[graph_optimization])
        options.log_severity_level = 3
        if providers and providers[0] != "CPUExecutionProvider":
            _load_gpu_libraries(ort)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own exception types for files it refuses
            raise ModelLoadError(f"{path}: ONNX Runtime cannot load this model ({str(e).splitlines()[0][:300]})") \
                from None
        self._outputs = [o.name for o in self.session.get_outputs()]
        self._inputs = {i.name: i for i in self.session.get_inputs()}

    def run(self, feeds: dict) -> dict:
        return dict(zip(self._outputs, self.session.run(self._outputs, feeds)))

    def input_names(self) -> list:
        return list(self._inputs)

    def output_names(self) -> list:
        return list(self._outputs)

    def input_shapes(self) -> dict:
        return {n: [d if isinstance(d, int) else None for d in i.shape] for n, i in self._inputs.items()}

    def output_shapes(self) -> dict:
        return {o.name: [d if isinstance(d, int) else None for d in o.shape] for o in self.session.get_outputs()}

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]


class OnnxCudaGraphRunner:
    """ONNX Runtime on CUDA with each batch size's graph captured once and replayed: one launch per call instead of
    one per node, which is most of a small model's GPU time at batch 1. Every node must run on CUDA (fp32 and fp16
    files; int8 files keep a few nodes on the CPU and are refused). Inputs are copied into fixed GPU buffers."""

    def __init__(self, path, threads: int = 1):
        self.path, self.threads = Path(path), threads
        self._graphs = {}  # batch size -> (session, io binding, input buffers, output buffers)
        self._dtypes = {}  # input name -> numpy dtype of its GPU buffer
        self._describe = OnnxRunner(path, threads)  # names and shapes, on the CPU provider
        self._unused = self._session()  # a file with nodes off CUDA is refused here, at load

    def _session(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.log_severity_level = 3
        _load_gpu_libraries(ort)
        try:
            return ort.InferenceSession(str(self.path), options,
                                        providers=[("CUDAExecutionProvider", {"enable_cuda_graph": "1"})])
        except Exception:  # ORT refuses a capture when any node would run on the CPU
            raise ModelLoadError(f"{self.path.name}: no CUDA graph: not every node runs on CUDA (int8 and "
                                 f"dynamic-range files keep some on the CPU; use device='cuda')") from None

    def _capture(self, feeds: dict):
        import onnxruntime as ort

        session, self._unused = self._unused or self._session(), None
        n = len(next(iter(feeds.values())))
        inputs = {k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v), "cuda", 0) for k, v in feeds.items()}
        self._dtypes = {k: v.dtype for k, v in feeds.items()}
        outputs = {o.name: ort.OrtValue.ortvalue_from_shape_and_type(
            [n, *o.shape[1:]], np.float16 if o.type == "tensor(float16)" else np.float32, "cuda", 0)
            for o in session.get_outputs()}
        binding = session.io_binding()
        for k, v in inputs.items():
            binding.bind_ortvalue_input(k, v)
        for k, v in outputs.items():
            binding.bind_ortvalue_output(k, v)
        return session, binding, inputs, outputs

    def run(self, feeds: dict) -> dict:
        n = len(next(iter(feeds.values())))
        if n not in self._graphs:
            self._graphs[n] = self._capture(feeds)
        session, binding, inputs, outputs = self._graphs[n]
        for k, v in feeds.items():
            inputs[k].update_inplace(np.ascontiguousarray(v, dtype=self._dtypes[k]))
        session.run_with_iobinding(binding)
        return {k: v.numpy() for k, v in outputs.items()}

    def input_names(self) -> list:
        return self._describe.input_names()

    def output_names(self) -> list:
        return self._describe.output_names()

    def input_shapes(self) -> dict:
        return self._describe.input_shapes()

    def output_shapes(self) -> dict:
        return self._describe.output_shapes()

    @property
    def provider(self) -> str:
        return "CUDAExecutionProvider"


def _interpreter(path, threads: int, kernels: str):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if kernels == "xnnpack" else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


def _invoke_seconds(interpreter, calls: int = 10) -> float:
    for d in interpreter.get_input_details():
        interpreter.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    interpreter.invoke()
    start = time.perf_counter()
    for _ in range(calls):
        interpreter.invoke()
    return time.perf_counter() - start


def _fastest_interpreter(path, threads: int):
    timed = [(_invoke_seconds(it), kernels, it) for kernels in ("xnnpack", "builtin")
             for it in [_interpreter(path, threads, kernels)]]
    _, kernels, interpreter = min(timed, key=lambda t: t[0])
    return interpreter, kernels


def measure_kernels(path, threads: int = 1, rounds: int = 7, calls: int = 5) -> dict[str, float]:
    """Median ms per batch-1 call of each LiteRT kernel set, over interleaved rounds (a burst of load on the machine
    hits both sets alike). Export calls this once per file and pins the faster set in the bundle."""
    interpreters = {k: _interpreter(path, threads, k) for k in ("xnnpack", "builtin")}
    times: dict[str, list] = {k: [] for k in interpreters}
    for _ in range(rounds):
        for kernels, interpreter in interpreters.items():
            times[kernels].append(_invoke_seconds(interpreter, calls) / calls * 1000)
    return {k: float(np.median(v)) for k, v in times.items()}


def _feeder(detail, quantized: bool):
    """value -> what set_tensor gets for this input: quantized (int8 inputs), int16 PCM (a micro file's audio from
    float samples), else cast to the tensor's dtype where it differs."""
    dtype = detail["dtype"]
    if quantized:
        return lambda value: _quantize(value, detail)

    def cast(value):
        if dtype == np.int16 and value.dtype.kind == "f":
            return np.clip(np.round(value * 32768.0), -32768, 32767).astype(np.int16)
        return value if value.dtype == dtype else value.astype(dtype)
    return cast


def _is_quantized(detail) -> bool:
    return detail["dtype"] in (np.int8, np.uint8) and bool(detail["quantization"][0])


def _quantize(value, detail):
    scale, zero = detail["quantization"]
    if value.dtype == np.float32 or value.dtype == np.uint8:  # uint8: pixels into a micro file's int8 image input
        info = np.iinfo(detail["dtype"])
        return np.clip(np.round(value / scale + zero), info.min, info.max).astype(detail["dtype"])
    return value.astype(detail["dtype"])


def _dequantize(value, detail):
    scale, zero = detail["quantization"]
    return (value.astype(np.float32) - zero) * scale


def cuda_available() -> bool:
    """ONNX Runtime's CUDA provider is listed by onnxruntime-gpu even without a GPU: also ask for a device."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    return Path("/dev/nvidia0").exists() or Path("/dev/nvidiactl").exists()


def open_runner(path, threads: int = 1, device: str = "cpu", kernels: str = "xnnpack",
                graph_optimization: str = "all"):
    """device: cpu, cuda, or cuda-graph (ONNX bundles; the graph captured per batch size and replayed, for files whose
    every node runs on CUDA). Both GPU devices fall back to cpu when no GPU is really present. kernels: the LiteRT
    kernel set (TFLite files); graph_optimization: ONNX Runtime's level (ONNX files on the CPU provider)."""
    if Path(path).suffix == ".tflite":
        return LiteRTRunner(path, threads, kernels)
    if device == "cuda-graph" and cuda_available():
        return OnnxCudaGraphRunner(path, threads)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device != "cpu" and cuda_available() else None
    return OnnxRunner(path, threads, providers, graph_optimization)


def outputs_digest(outputs: dict, order) -> str:
    """sha256 of the outputs (tasks in `order`, float32, C order): equal digests are bit-identical answers."""
    import hashlib

    digest = hashlib.sha256()
    for name in order:
        digest.update(np.ascontiguousarray(outputs[name], dtype=np.float32).tobytes())
    return digest.hexdigest()


def run_batched(runner, x: dict, batch: int = 64) -> dict:
    n = len(next(iter(x.values())))
    parts = [runner.run({k: v[i:i + batch] for k, v in x.items()}) for i in range(0, n, batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
