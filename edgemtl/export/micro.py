"""The TFLite Micro (TFLM) target: a model TFLM can run (batch 1, static shapes, integer I/O, TFLM ops only), the op
check against the installed TFLM, and what its gate and bundle need (signature order, ops used).

The tflite-micro package (`pip install 'edgemtl[micro]'`) is read here without being imported: its flatbuffer
schema module is loaded by file, its kernel list read from its extension's symbols, so neither TFLM's C++ library
nor TensorFlow has to share a process with the other. Only the gate's child (micro_worker.py) runs TFLM.
"""
from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import EdgemtlError

RAW_DTYPE = "int8"  # inputs standardised in the graph take int8 raw values (int16 measured: docs/export.md)
MICRO_BATCH = 1  # firmware runs one sample per invoke; a fixed batch also folds the shape ops (FILL, REDUCE_PROD)
PACKAGE_HINT = "pip install 'edgemtl[micro]' (the tflite-micro package)"


def tflm_dir() -> Path | None:
    """The installed tflite_micro package folder (found, not imported), or None."""
    spec = importlib.util.find_spec("tflite_micro")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def require_tflm(what: str = "the micro format") -> Path:
    folder = tflm_dir()
    if folder is None:
        raise EdgemtlError(f"{what} needs TFLite Micro: {PACKAGE_HINT}")
    return folder


def tflm_version() -> str:
    text = (require_tflm() / "python" / "tflite_micro" / "_version.py").read_text()
    found = re.search(r"""__version__\s*=\s*['"]([^'"]+)""", text)
    return found.group(1) if found else "unknown"


@functools.cache
def _schema():
    """TFLM's generated flatbuffer schema module (pure Python over `flatbuffers`), loaded by its file path."""
    path = require_tflm() / "tensorflow" / "lite" / "micro" / "python" / "schema_py_generated.py"
    spec = importlib.util.spec_from_file_location("edgemtl_tflm_schema", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _builtin_names() -> dict[int, str]:
    ops = _schema().BuiltinOperator
    return {v: k for k, v in vars(ops).items() if k.isupper() and isinstance(v, int)}


@functools.cache
def tflm_ops() -> frozenset[str]:
    """The builtin ops the installed TFLM has a kernel for: every `tflite::Register_<OP>()` in its extension that
    names a builtin operator (the Python interpreter's resolver registers them all)."""
    library = next((require_tflm() / "python" / "tflite_micro").glob("_runtime*.so"), None)
    if library is None:
        raise EdgemtlError(f"the tflite-micro package has no _runtime library; reinstall it ({PACKAGE_HINT})")
    registered = {m.decode() for m in re.findall(rb"Register_([A-Z0-9_]+)Ev", library.read_bytes())}
    return frozenset(registered & set(_builtin_names().values()))


@dataclass(frozen=True)
class OpUse:
    op: str  # builtin operator name (or the custom op's code)
    tensor: str  # the name of its first output tensor (TensorFlow name scopes: model/<layer>/...)


def model_ops(model: bytes) -> list[OpUse]:
    """Every operator of every subgraph, in graph order."""
    schema = _schema()
    m = schema.Model.GetRootAsModel(model, 0)
    names, custom = _builtin_names(), schema.BuiltinOperator.CUSTOM
    out = []
    for s in range(m.SubgraphsLength()):
        graph = m.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = m.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = (code.CustomCode() or b"?").decode() if builtin == custom else names.get(builtin, str(builtin))
            tensor = graph.Tensors(op.Outputs(0)).Name().decode() if op.OutputsLength() else ""
            out.append(OpUse(name, tensor))
    return out


def ops_used(model: bytes) -> tuple[str, ...]:
    """The distinct ops, sorted: what a firmware's MicroMutableOpResolver must add."""
    return tuple(sorted({u.op for u in model_ops(model)}))


def layer_of(tensor: str, layers) -> str | None:
    """The Keras layer whose name scope made this tensor (`model/audio_logmel/Conv2D` -> `audio_logmel`)."""
    parts = re.split(r"[/;:]", tensor)
    return next((p for p in parts if p in layers), None)


def unsupported(model: bytes, layers=(), supported: frozenset | None = None) -> list[tuple[str, str | None]]:
    """(op, layer that made it) for each op TFLM cannot run, first use of each op."""
    supported = tflm_ops() if supported is None else supported
    seen, out = set(), []
    for use in model_ops(model):
        if use.op not in supported and use.op not in seen:
            seen.add(use.op)
            out.append((use.op, layer_of(use.tensor, set(layers))))
    return out


def check_ops(model: bytes, model_name: str, layers=(), supported: frozenset | None = None) -> None:
    """One EdgemtlError line naming every op the installed TFLM cannot run and the layer that produced it."""
    missing = unsupported(model, layers, supported)
    if missing:
        named = ", ".join(f"op {op} (layer '{layer}')" if layer else f"op {op}" for op, layer in missing)
        raise EdgemtlError(f"{model_name}: cannot convert to micro: TFLite Micro {tflm_version()} has no kernel for "
                           f"{named}")


def signature_order(model: bytes) -> tuple[list[str], list[str]]:
    """(input names, output names) in the order of the main subgraph's input and output tensors: the indices TFLM's
    set_input / get_output (and a firmware's interpreter.input(i)) take."""
    schema = _schema()
    m = schema.Model.GetRootAsModel(model, 0)
    graph = m.Subgraphs(0)
    by_tensor_in, by_tensor_out = {}, {}
    if m.SignatureDefsLength():
        sig = m.SignatureDefs(0)
        by_tensor_in = {sig.Inputs(j).TensorIndex(): sig.Inputs(j).Name().decode() for j in range(sig.InputsLength())}
        by_tensor_out = {sig.Outputs(j).TensorIndex(): sig.Outputs(j).Name().decode()
                         for j in range(sig.OutputsLength())}

    def name(index, table):
        return table.get(index) or graph.Tensors(index).Name().decode()

    return ([name(graph.Inputs(i), by_tensor_in) for i in range(graph.InputsLength())],
            [name(graph.Outputs(i), by_tensor_out) for i in range(graph.OutputsLength())])


# --- the TF half: the model the micro converter takes -----------------------------------------------------------
@dataclass(frozen=True)
class RawInput:
    """An input standardised in the graph (sequence windows, numeric columns) as the micro model takes it: int8 of
    the raw values, real = (q - zero_point) * scale, with the scale and zero point of the calibration rows' range.
    The standardisation runs in float after a CAST (its per-channel 1 / std, as one int8 constant, rounds the small
    factors to 0 when the channels' spreads differ), the network after it in int8 on the standardised values."""
    name: str  # the model input
    layer: str  # its Normalization layer, kept in float
    scale: float
    zero_point: int


def raw_inputs(model, samples=()) -> list[RawInput]:
    """The float inputs a Normalization layer reads directly, with int8 parameters covering the calibration rows
    (min and max over every row and channel, 0 included, as the converter's own input calibration does)."""
    import numpy as np

    from ..tfk import keras, tf

    inputs = {id(i): i.name.split(":")[0] for i in model.inputs if i.dtype == tf.float32}
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization) and id(layer.input) in inputs:
            name = inputs[id(layer.input)]
            values = np.concatenate([np.ravel(s[name]) for s in samples]) if samples else np.zeros(1)
            low, high = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
            info = np.iinfo(RAW_DTYPE)
            scale = (high - low) / (info.max - info.min) or 1.0
            zero = int(np.clip(round(info.min - low / scale), info.min, info.max))
            out.append(RawInput(name, layer.name, scale, zero))
    return out


def micro_model(model, raw: list[RawInput] = ()):
    """The exported model as TFLM runs it: uint8 pixel inputs become float32 inputs (the int8 I/O converter then
    quantizes them, so firmware feeds int8 `pixel - 128` and there is no uint8 CAST, which TFLM lacks); audio inputs
    become int16 PCM (8-bit audio loses the speaker: measured in docs/export.md), and each audio front-end computes
    its spectrum by a fixed DFT convolution (no RFFT2D); each raw input (RawInput) becomes int8, its Normalization
    layer taking the integers: mean and variance rescaled so (q - mean') / std' is the same standardised value.
    Same weights, same answers up to float and input rounding."""
    from ..models.layers import LogMelSpectrogram
    from ..tfk import keras, tf

    by_layer = {r.layer: r for r in raw}

    def clone(layer):  # the audio front-end in its DFT form, raw-input standardisation in integer units
        config = layer.get_config()
        if isinstance(layer, LogMelSpectrogram):
            config["dft"] = True
        if layer.name in by_layer:
            r = by_layer[layer.name]
            config["mean"] = [m / r.scale + r.zero_point for m in _flat(config["mean"])]
            config["variance"] = [v / r.scale ** 2 for v in _flat(config["variance"])]
        return layer.__class__.from_config(config)

    audio = {x.input.name.split(":")[0] for x in model.layers if isinstance(x, LogMelSpectrogram)
             and x.input in model.inputs}
    integer = {r.name for r in raw}

    def dtype(i):
        name = i.name.split(":")[0]
        if name in audio:
            return tf.int16
        if name in integer:
            return tf.as_dtype(RAW_DTYPE)
        return tf.float32 if i.dtype == tf.uint8 else i.dtype

    inputs = [keras.Input(shape=i.shape[1:], dtype=dtype(i), name=i.name.split(":")[0]) for i in model.inputs]
    with clone_scope(model):
        copy = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _flat(values) -> list[float]:
    import numpy as np

    return [float(v) for v in np.ravel(values)]


def label_inputs(model: bytes, raw: list[RawInput]) -> bytes:
    """Writes each raw input's scale and zero point on its int8 input tensor (the CAST ignores them; firmware, the
    gate and the runtimes read them there as for any quantized input)."""
    if not raw:
        return model
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names, _ = signature_order(model)
    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    graph = m.subgraphs[0]
    for r in raw:
        q = schema.QuantizationParametersT()
        q.scale, q.zeroPoint = [r.scale], [r.zero_point]
        graph.tensors[graph.inputs[names.index(r.name)]].quantization = q
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def clone_scope(model):
    """What rebuilding the model's layers from their configs needs: tfmot's quantize scope for a quantization-aware
    model (its wrappers name their quantize configs by class), else edgemtl's custom layers."""
    from ..models.layers import CUSTOM_OBJECTS
    from ..tfk import keras

    if any(type(x).__module__.startswith("tensorflow_model_optimization") for x in model.layers):
        import tensorflow_model_optimization as tfmot

        return tfmot.quantization.keras.quantize_scope(CUSTOM_OBJECTS)
    return keras.utils.custom_object_scope(CUSTOM_OBJECTS)


def _front_ends(model) -> list[str]:
    from ..models.layers import LogMelSpectrogram

    return [x.name for x in model.layers if isinstance(x, LogMelSpectrogram)]


def float_only(model) -> tuple[str, ...]:
    """Ops TFLM has only float kernels for, as keep-float name prefixes: each audio front-end's LOG (TFLM's
    elementwise LOG refuses int8), so TFLM runs DEQUANTIZE -> LOG -> QUANTIZE there."""
    return tuple(f"{name}/mel/Log" for name in _front_ends(model))


def micro_keep_float(model, keep_float: tuple[str, ...], raw: list[RawInput] = ()) -> tuple[str, ...]:
    """The parts kept in float, with the ops TFLM has only float kernels for and the raw inputs' standardisation.
    An audio front-end or a standardisation kept in float still has integer input (int16 PCM, int8 raw values),
    CAST to float in the graph."""
    return tuple(dict.fromkeys(keep_float + float_only(model) + tuple(r.layer for r in raw)))


def integer_io(model: bytes, keep_float: tuple[str, ...]) -> bytes:
    """Integer inputs and outputs for a model converted with parts kept in float (the selective converter leaves
    every I/O tensor float): each float input that feeds a QUANTIZE and each output after a DEQUANTIZE becomes int8.
    An input whose first consumer stays in float cannot: the EdgemtlError names the parts."""
    if not keep_float:
        return model
    from tensorflow.lite.python.util import modify_model_io_type

    from ..tfk import tf

    try:
        return bytes(modify_model_io_type(model, tf.int8, tf.int8))
    except (ValueError, RuntimeError) as e:
        raise EdgemtlError(f"micro: keeping {', '.join(keep_float)} in float leaves float I/O ({e})") from None


def pcm16(samples):
    """Float samples in [-1, 1] -> int16 PCM (q = round(x * 32768), clipped): the micro model's audio input."""
    import numpy as np

    from ..kinds.audio import PCM16_FULL_SCALE

    return np.clip(np.round(np.asarray(samples, np.float32) * PCM16_FULL_SCALE), -32768, 32767).astype(np.int16)


def micro_samples(samples, model, raw: list[RawInput] = ()) -> list[dict]:
    """Calibration rows as the micro model takes them: pixels as float32, audio as int16 PCM, raw inputs as int8."""
    import numpy as np

    dtypes = {i.name.split(":")[0]: i.dtype.name for i in model.inputs}
    by_name = {r.name: r for r in raw}

    def cast(name, v):
        if name in by_name:
            r, info = by_name[name], np.iinfo(RAW_DTYPE)
            return np.clip(np.round(v / r.scale + r.zero_point), info.min, info.max).astype(RAW_DTYPE)
        if dtypes.get(name) == "int16":
            return pcm16(v)
        return v.astype(np.float32) if v.dtype == np.uint8 else v

    return [{k: cast(k, v) for k, v in s.items()} for s in samples]
