"""The formats table: one row per export format drives planning, checks and dispatch (after ultralytics'
export_formats(): the table, not a switch in every function). Loads without TensorFlow: converters and runners are
dotted paths imported when used.

Adding a format is one row here, its converter in converters.py and its runner in runtime/backends.py.
"""
from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from ..artifacts import ArtifactId, check_model_name
from ..errors import EdgemtlError
from ..names import FORMAT_PRECISIONS, INT8_PRECISIONS, PRECISIONS


@dataclass(frozen=True)
class Format:
    name: str  # as in recipes, CLI flags and bundle names (names.FORMATS)
    title: str  # for people
    suffix: str  # the bundle's model file: "model" + suffix
    precisions: tuple[str, ...]  # names.FORMAT_PRECISIONS[name]
    keeps_float: tuple[str, ...]  # precisions whose converter can leave named parts in float (the float fallback)
    in_child: tuple[str, ...]  # precisions converted in a child process (int8 calibration can crash it)
    converter: str  # "module:function" taking a converters.ConversionJob, returning the model file's bytes
    runner: str  # "module:class" the runtime opens the model file with
    wraps: str | None = None  # converts as this format, then packages (c: the int8 TFLite model as a C array)
    package: str | None = None  # "module:function"(model bytes, folder) -> {file name: bytes} added to the bundle
    benched: bool = True  # False: its model file is another format's again (bench would measure it twice)
    check: str | None = None  # "module:function"(model bytes, model name, layer names): raises if it cannot run
    gate_runtime: str | None = None  # the runtime the parity gate runs it in, when not its runner's (micro: tflm)

    @property
    def model_file(self) -> str:
        return f"model{self.suffix}"

    @property
    def converts_as(self) -> str:
        """The format whose conversion (and cache entry, and parity verdict) this one shares."""
        return self.wraps or self.name

    def supports(self, precision: str) -> bool:
        return precision in self.precisions

    def can_keep_float(self, precision: str) -> bool:
        return precision in self.keeps_float

    def converts_in_child(self, precision: str) -> bool:
        return precision in self.in_child

    def load_converter(self) -> Callable:
        return _load(FORMATS[self.converts_as].converter)

    def load_runner(self) -> Callable:
        return _load(self.runner)

    def load_package(self) -> Callable | None:
        return _load(self.package) if self.package else None

    def load_check(self) -> Callable:
        return _load(self.check)


def _load(dotted: str):
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("tflite", "TensorFlow Lite (LiteRT)", ".tflite", FORMAT_PRECISIONS["tflite"],
           keeps_float=INT8_PRECISIONS, in_child=INT8_PRECISIONS,
           converter="edgemtl.export.converters:tflite", runner="edgemtl.runtime.backends:LiteRTRunner"),
    Format("onnx", "ONNX (ONNX Runtime)", ".onnx", FORMAT_PRECISIONS["onnx"],
           keeps_float=("fp16", "dynamic", "int8"), in_child=(),
           converter="edgemtl.export.converters:onnx", runner="edgemtl.runtime.backends:OnnxRunner"),
    Format("c", "C array (TFLite Micro)", ".tflite", FORMAT_PRECISIONS["c"],
           keeps_float=("int8",), in_child=("int8",),
           converter="edgemtl.export.converters:tflite", runner="edgemtl.runtime.backends:LiteRTRunner",
           wraps="tflite", package="edgemtl.export.converters:c_array", benched=False),
    # batch 1, integer I/O, only ops the installed TFLite Micro has kernels for; the gate runs it in TFLM
    Format("micro", "TFLite Micro (model + C array)", ".tflite", FORMAT_PRECISIONS["micro"],
           keeps_float=("int8",), in_child=("int8",),
           converter="edgemtl.export.converters:micro", runner="edgemtl.runtime.backends:LiteRTRunner",
           package="edgemtl.export.converters:c_array", check="edgemtl.export.micro:check_ops",
           gate_runtime="tflm"),
)}


def _did_you_mean(word, options) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unknown_format(name, where: str) -> str:
    return f"{where}: unknown format '{name}' (one of {', '.join(FORMATS)}){_did_you_mean(name, FORMATS)}"


def _unknown_precision(name, where: str) -> str:
    return f"{where}: unknown precision '{name}' (one of {', '.join(PRECISIONS)}){_did_you_mean(name, PRECISIONS)}"


def get_format(name: str, where: str = "format") -> Format:
    if name not in FORMATS:
        raise EdgemtlError(_unknown_format(name, where))
    return FORMATS[name]


def format_of_file(suffix: str) -> Format:
    """The (first) format whose model file has this suffix: how a bare model file is opened."""
    for f in FORMATS.values():
        if f.suffix == suffix:
            return f
    raise EdgemtlError(f"no export format writes '{suffix}' files (known: "
                       f"{', '.join(sorted({f.suffix for f in FORMATS.values()}))})")


def plan(model: str, formats, precisions, where_formats: str = "--format",
         where_precisions: str = "--precision") -> list[ArtifactId]:
    """Every (format, precision) pair a format supports, as artifacts of `model`, in the order asked. Every unknown
    name is one line of the EdgemtlError, naming where it came from (the recipe validates its own names first;
    this guards CLI flags): `--format: unknown format 'tflit' (one of tflite, onnx, c) (did you mean 'tflite'?)`."""
    check_model_name(model, "model")
    problems = [_unknown_format(f, where_formats) for f in formats if f not in FORMATS]
    problems += [_unknown_precision(p, where_precisions) for p in precisions if p not in PRECISIONS]
    if problems:
        raise EdgemtlError(*problems)
    return [ArtifactId(model, f, p) for f in formats for p in precisions if FORMATS[f].supports(p)]


def table() -> str:
    """The table as markdown (docs, `edgemtl export --help`)."""
    lines = ["| format | file | precisions | parts kept in float | converted in a child |", "|---|---|---|---|---|"]
    for f in FORMATS.values():
        lines.append(f"| {f.name} ({f.title}) | {f.model_file} | {', '.join(f.precisions)} | "
                     f"{', '.join(f.keeps_float) or '-'} | {', '.join(f.in_child) or '-'} |")
    return "\n".join(lines)
