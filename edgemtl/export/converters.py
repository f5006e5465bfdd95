"""Converters named by the formats table: one function per format, all with the same signature,
convert(job: ConversionJob) -> bytes of the model file. TensorFlow, tf2onnx and ONNX Runtime are imported inside
them, so the table (export/formats.py) loads without any of them."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ConversionJob:
    model: Any  # the exported tf_keras model (export.signature.exported_model)
    precision: str
    workdir: Path  # scratch folder shared by one model's conversions (ONNX keeps its fp32 graph there)
    samples: tuple = ()  # calibration input dicts, one row each (full-int8 and ONNX static int8)
    keep_float: tuple[str, ...] = ()  # layer-name prefixes left in float
    opset: int = 17  # ONNX opset (export.opset)
    metadata: Mapping[str, str] = field(default_factory=dict)  # ONNX metadata_props


def tflite(job: ConversionJob) -> bytes:
    """Full-int8 calibration can crash its process: the caller runs int8 precisions in a child (export/worker.py).
    int8io comes here only when an audio front-end stays in float (Converter.convert): int16 PCM audio (pcm.py)."""
    from .tflite import convert

    if job.precision == "int8io":
        from .pcm import convert_int8io

        return convert_int8io(job.model, list(job.samples), job.keep_float)
    return convert(job.model, job.precision, list(job.samples), job.keep_float)


def micro(job: ConversionJob) -> bytes:
    """The TFLite Micro model: full int8 with integer I/O at batch 1 (export/micro.py's model), in a child as tflite
    int8 is; the op check against the installed TFLM runs on the result (Converter.convert)."""
    from .micro import MICRO_BATCH, integer_io, label_inputs, micro_keep_float, micro_model, micro_samples, raw_inputs
    from .tflite import convert

    raw = raw_inputs(job.model, job.samples)
    model = micro_model(job.model, raw)
    keep = micro_keep_float(model, job.keep_float, raw)
    converted = convert(model, "int8io", micro_samples(job.samples, model, raw), keep, batch=MICRO_BATCH)
    return label_inputs(integer_io(converted, keep), raw)


def onnx(job: ConversionJob) -> bytes:
    """tf2onnx fp32 once per model (kept in workdir), then fp16 / dynamic / static int8 from it."""
    import onnx as onnx_lib

    from . import onnx as onnx_export

    fp32 = job.workdir / "fp32.onnx"
    if not fp32.exists():
        onnx_lib.save(onnx_export.to_onnx(job.model, job.opset, dict(job.metadata)), str(fp32))
    if job.precision == "fp32":
        return fp32.read_bytes()
    from ..models.layers import float_outputs

    # label-unit outputs (regression: x * std + mean, clipped) stay in float; fp16 or int8 steps are years there
    keep = job.keep_float + tuple(f"/{name}/" for name in float_outputs(job.model))
    if job.precision == "fp16":
        return onnx_export.to_fp16(onnx_lib.load(str(fp32)), keep).SerializeToString()
    out = job.workdir / f"{job.precision}-{len(list(job.workdir.glob('*.onnx')))}.onnx"
    if job.precision == "dynamic":
        onnx_export.quantize_dynamic(fp32, out, keep)
    else:
        reuse = job.workdir / "onnx-int8"  # pre-processed graph and calibrated ranges, shared by the variants
        reuse.mkdir(exist_ok=True)
        onnx_export.quantize_static(fp32, out, onnx_export.onnx_samples(list(job.samples)), keep, reuse)
    return out.read_bytes()


def c_array(model_file: bytes, folder: Path) -> dict[str, bytes]:
    """The C bundle's extra files: the TFLite model it holds as model_data.h / model_data.cc (C11 and C++11)."""
    from ..artifacts import C_ARRAY_NAME
    from .c_array import write_c_array

    folder.mkdir(parents=True, exist_ok=True)
    return {p.name: p.read_bytes() for p in write_c_array(model_file, folder, C_ARRAY_NAME)}
