"""ONNX export: tf2onnx fp32 with a named signature, fp16, ONNX Runtime dynamic int8 and static QDQ int8."""
import logging
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..runsafety import system_temp_prefix
from .signature import input_specs


def to_onnx(model, opset: int, metadata: dict):
    import onnx
    import tf2onnx

    proto, _ = tf2onnx.convert.from_keras(model, input_signature=list(input_specs(model).values()), opset=opset)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return proto


def to_fp16(proto, keep_float=()):
    """The graph's Casts stay in float32 (the uint8 -> float input scaling otherwise makes a model ORT refuses). They
    are blocked by name: blocking the Cast op type makes onnxconverter-common loop forever on a bool -> float Cast,
    wrapping each Cast it inserts in another."""
    import onnx
    from onnxconverter_common import float16

    block = [n.name for n in proto.graph.node if n.op_type == "Cast" or any(p in n.name for p in keep_float)]
    float_outputs = {o.name for o in proto.graph.output if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    with warnings.catch_warnings():  # one warning per tiny constant clamped to fp16's range; the gate judges it
        warnings.simplefilter("ignore", UserWarning)
        out = float16.convert_float_to_float16(proto, keep_io_types=True, node_block_list=block,
                                               op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST))
    return _float_outputs_kept(out, float_outputs)


def _float_outputs_kept(proto, names: set):
    """keep_io_types misses a graph output whose producer is blocked (a regression head kept in float): it casts
    that output to fp16 and declares it so, which rounds years to whole years. The cast is made a float32 one."""
    import onnx

    producer = {o: n for n in proto.graph.node for o in n.output}
    for out in proto.graph.output:
        cast = producer.get(out.name)
        if out.name in names and out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 and cast is not None \
                and cast.op_type == "Cast":
            for attr in cast.attribute:
                if attr.name == "to":
                    attr.i = onnx.TensorProto.FLOAT
            out.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return proto


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextmanager
def _root_notices_hidden():
    """onnxruntime.quantization writes its notices ("Please consider to run pre-processing before quantization", ...)
    through the root logger, as `WARNING:root:` lines: hidden during the call unless -v (edgemtl's logger at DEBUG).
    Scoped: a filter on the root logger's own records, and while root has no handler a stderr one for its errors (so
    logging.warning's implicit basicConfig installs no handler for good); both removed afterwards."""
    if logging.getLogger("edgemtl").isEnabledFor(logging.DEBUG):
        yield
        return
    root, hide, errors = logging.getLogger(), _BelowError(), logging.StreamHandler()
    bare = not root.handlers
    errors.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    root.addFilter(hide)
    if bare:
        root.addHandler(errors)
    try:
        yield
    finally:
        root.removeFilter(hide)
        if bare:
            root.removeHandler(errors)


def quantize_dynamic(src: Path, dst: Path, keep_float=()):
    """uint8 weights, MatMul/Gemm only: int8 weights lost accuracy on AVX2 CPUs (a regression MAE went 0.075 ->
    0.216) and ConvInteger ran 3-8x slower than float Conv."""
    from onnxruntime.quantization import QuantType, quantize_dynamic as ort_dynamic

    with _root_notices_hidden():
        ort_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8, op_types_to_quantize=["MatMul", "Gemm"],
                    nodes_to_exclude=_nodes(src, keep_float))


def quantize_static(src: Path, dst: Path, samples: list, keep_float=(), reuse: Path | None = None):
    """QDQ, per-channel int8, after ORT's pre-processing (run in a temporary directory: it writes files there).
    reuse: a folder for what does not depend on keep_float, the pre-processed graph and the calibrated tensor
    ranges (ORT's own calibration cache), so variants of one model on the same rows pre-process and calibrate once;
    the caller gives one folder per model and rows."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static as ort_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(samples)

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory(prefix=system_temp_prefix("onnx-int8")) as tmp, _root_notices_hidden():
        src, dst = Path(src).resolve(), Path(dst).resolve()  # the quantizer runs in tmp: paths must not be relative
        where = Path(reuse).resolve() if reuse is not None else Path(tmp)
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            pre, ranges = where / "pre.onnx", where / "int8-ranges.json"
            if not pre.exists():
                part = Path(tmp) / "pre.part.onnx"  # a killed pre-processing never looks done
                quant_pre_process(str(src), str(part), auto_merge=True)
                part.replace(pre)
            # reduce_range (7-bit weights): on x86 CPUs without VNNI, ORT's int8 GEMM (VPMADDUBSW) saturates
            # 8-bit products; a file verified on a VNNI machine would answer differently there. Measured on an AVX2
            # EPYC, a regression head's MAE moved 2.3 % of the label std with 8-bit weights, 0.07 % with 7-bit.
            ort_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                       weight_type=QuantType.QInt8, activation_type=QuantType.QInt8, reduce_range=True,
                       nodes_to_exclude=_nodes(pre, keep_float), calibration_cache_path=str(ranges))
        finally:
            os.chdir(cwd)


def _nodes(path: Path, prefixes) -> list:
    if not prefixes:
        return []
    import onnx

    graph = onnx.load(str(path)).graph
    return [n.name for n in graph.node if any(p in n.name for p in prefixes)]


def onnx_samples(samples: list) -> list:
    return [{k: np.asarray(v) for k, v in s.items()} for s in samples]
