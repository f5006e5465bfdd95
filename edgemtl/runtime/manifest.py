"""The bundle's on-disk contract, typed: manifest.json (BundleManifest) and parity.json (ParityReport).

TF-free and yaml-free (the light install reads bundles with it): stdlib, edgemtl.names, errors, paths, jsonio. Every
reader error is an EdgemtlError naming the manifest file and the key (`.../manifest.json: inputs[1].shape: ...`).
Field names are the JSON keys. SCHEMA_VERSION changes whenever a key is added, removed or changes meaning; a
runtime refuses manifests newer than it reads.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from .. import jsonio
from ..artifacts import MANIFEST_FILE, PARITY_FILE, ArtifactId
from ..errors import EdgemtlError
from ..names import FORMAT_PRECISIONS, FORMATS, MODALITIES, PRECISIONS, TASK_TYPES
from ..paths import check_relative, resolve_inside

# the one place: export writes it, the runtime reads up to it (2: the `runtime` section; 3: inputs[].optional and
# inputs[].presence, the model input carrying an optional input's presence flag; 4: the `memory` section of micro
# bundles; 5: the `selection` section, the precision search's measured recommendation)
SCHEMA_VERSION = 5
KERNELS = ("xnnpack", "builtin")  # LiteRT kernel sets a bundle can be pinned to
GRAPH_OPTIMIZATIONS = ("disabled", "basic", "extended", "all")  # ONNX Runtime graph optimisation levels
DTYPES = ("uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")


def _task_kind(task_type: str):
    """The task type's kind (edgemtl.kinds, imported on first use: reading this module's types needs no numpy)."""
    from .. import kinds

    return kinds.task_kind(task_type)


# --- reading helpers -----------------------------------------------------------------------------------------
class _Fields:
    """One JSON object being read: typed getters whose errors name `file: where.key`, and a check for unknown keys."""

    def __init__(self, data: Any, where: str, file: str):
        self.file, self.where = file, where
        if not isinstance(data, dict):
            self.fail(f"expected an object, got {_kind(data)}")
        self.data, self.seen = data, set()

    def fail(self, message: str, key: str | None = None):
        place = f"{self.where}.{key}" if self.where and key else (key or self.where)
        raise EdgemtlError(f"{self.file}: {place + ': ' if place else ''}{message}")

    def get(self, key: str, check, required: bool = True, default=None):
        self.seen.add(key)
        if key not in self.data or (self.data[key] is None and not required):
            if required:
                self.fail(f"missing required key '{key}'")
            return default
        return check(self, key, self.data[key])

    def sub(self, key: str, value) -> _Fields:
        return _Fields(value, f"{self.where}.{key}" if self.where else key, self.file)

    def done(self):
        unknown = [k for k in self.data if k not in self.seen]
        if unknown:
            self.fail(f"unknown key '{unknown[0]}' (known: {', '.join(sorted(self.seen))})")


def _kind(value) -> str:
    return "null" if value is None else {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
                                         list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _string(f, key, v) -> str:
    if not isinstance(v, str):
        f.fail(f"expected a string, got {_kind(v)}", key)
    return v


def _name(f, key, v) -> str:
    if not _string(f, key, v).strip():
        f.fail("must not be empty", key)
    return v


def _boolean(f, key, v) -> bool:
    if not isinstance(v, bool):
        f.fail(f"expected true or false, got {_kind(v)}", key)
    return v


def _integer(f, key, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        f.fail(f"expected an integer, got {_kind(v)}", key)
    return v


def _positive(f, key, v) -> int:
    if _integer(f, key, v) <= 0:
        f.fail(f"must be a positive integer, got {v}", key)
    return v


def _number(f, key, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        f.fail(f"expected a number, got {_kind(v)}", key)
    return float(v)


def _optional_number(f, key, v) -> float | None:
    return None if v is None else _number(f, key, v)


def _list_of(check, min_len: int = 0, length: int | None = None):
    def read(f, key, v) -> tuple:
        if not isinstance(v, list):
            f.fail(f"expected a list, got {_kind(v)}", key)
        if length is not None and len(v) != length:
            f.fail(f"expected {length} items, got {len(v)}", key)
        if len(v) < min_len:
            f.fail(f"expected at least {min_len} item{'s' if min_len > 1 else ''}, got {len(v)}", key)
        return tuple(check(f, f"{key}[{i}]", x) for i, x in enumerate(v))
    return read


def _choice(choices, what: str):
    def read(f, key, v) -> str:
        if _string(f, key, v) not in choices:
            f.fail(f"unknown {what} '{v}' (one of {', '.join(choices)})", key)
        return v
    return read


# --- inputs ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImagePreprocess:
    size: tuple[int, int]  # (height, width) the image is resized to
    channels: int

    FIELDS: ClassVar[dict] = {"size": _list_of(_positive, length=2), "channels": _positive}

    def sample_shape(self) -> tuple:
        return (*self.size, self.channels)


@dataclass(frozen=True)
class TextPreprocess:
    vocab: str  # file name inside the bundle
    max_length: int
    lowercase: bool

    FIELDS: ClassVar[dict] = {"vocab": _name, "max_length": _positive, "lowercase": _boolean}

    def sample_shape(self) -> tuple:
        return (self.max_length,)


@dataclass(frozen=True)
class AudioPreprocess:
    sample_rate: int
    clip_samples: int

    FIELDS: ClassVar[dict] = {"sample_rate": _positive, "clip_samples": _positive}

    def sample_shape(self) -> tuple:
        return (self.clip_samples,)


@dataclass(frozen=True)
class NumericPreprocess:
    columns: tuple[str, ...]

    FIELDS: ClassVar[dict] = {"columns": _list_of(_name, min_len=1)}

    def sample_shape(self) -> tuple:
        return (len(self.columns),)


@dataclass(frozen=True)
class SequencePreprocess:
    length: int
    channels: int

    FIELDS: ClassVar[dict] = {"length": _positive, "channels": _positive}

    def sample_shape(self) -> tuple:
        return (self.length, self.channels)


# modality -> how its raw input becomes the model's array (one class per modality; kinds may register more)
PREPROCESS = {"image": ImagePreprocess, "text": TextPreprocess, "audio": AudioPreprocess,
              "numeric": NumericPreprocess, "sequence": SequencePreprocess}
Preprocess = ImagePreprocess | TextPreprocess | AudioPreprocess | NumericPreprocess | SequencePreprocess


def _read_preprocess(f: _Fields, modality: str):
    cls = PREPROCESS[modality]
    pre = f.get("preprocess", lambda f, key, v: f.sub(key, v))
    values = {name: pre.get(name, check) for name, check in cls.FIELDS.items()}
    pre.done()
    return cls(**values)


def _shape(f, key, v) -> tuple:
    """[batch, ...]: the batch dimension null (any) or positive; every other dimension a positive integer."""
    dims = _list_of(lambda f, k, x: x, min_len=1)(f, key, v)
    if dims[0] is not None:
        _positive(f, f"{key}[0]", dims[0])
    for i, d in enumerate(dims[1:], 1):
        if d is None:
            f.fail("only the batch dimension (the first) may be null", f"{key}[{i}]")
        _integer(f, f"{key}[{i}]", d)
        if d <= 0:
            f.fail(f"dimension {i} is {d}; every dimension after the batch must be positive, got {list(dims)}", key)
    return dims


@dataclass(frozen=True)
class InputEntry:
    name: str
    modality: str
    dtype: str
    shape: tuple  # (None, ...) : batch first
    column: str | None  # the manifest column it reads (None for numeric inputs, which read several)
    preprocess: Preprocess
    optional: bool = False  # a request may leave it out (schema 3; absent key: false): zeros and presence 0 fed
    presence: str | None = None  # the model input of its presence flag (float32 [batch, 1]), when optional

    @property
    def sample_shape(self) -> tuple:
        """The shape of one sample (no batch dimension)."""
        return tuple(self.shape[1:])

    def file_names(self) -> tuple[str, ...]:
        """Files inside the bundle this input needs (a text input's vocabulary)."""
        return (self.preprocess.vocab,) if isinstance(self.preprocess, TextPreprocess) else ()

    @classmethod
    def read(cls, f: _Fields) -> InputEntry:
        modality = f.get("modality", _choice(MODALITIES, "modality"))
        entry = cls(name=f.get("name", _name), modality=modality, dtype=f.get("dtype", _choice(DTYPES, "dtype")),
                    shape=f.get("shape", _shape), column=f.get("column", _string, required=False),
                    preprocess=_read_preprocess(f, modality),
                    optional=f.get("optional", _boolean, required=False, default=False),
                    presence=f.get("presence", _name, required=False))
        if entry.optional and not entry.presence:
            f.fail("an optional input names its presence input ('presence')", "presence")
        if entry.presence and not entry.optional:
            f.fail("only an optional input has a presence input", "presence")
        if entry.sample_shape != entry.preprocess.sample_shape():
            f.fail(f"{list(entry.shape)} does not match its preprocess (one sample is "
                   f"{list(entry.preprocess.sample_shape())})", "shape")
        f.done()
        return entry

    def to_dict(self) -> dict:
        out = {"name": self.name, "modality": self.modality, "dtype": self.dtype, "shape": list(self.shape),
               "column": self.column, "preprocess": _plain(self.preprocess)}
        # written only for an optional input (a required one reads as it did in schema 2)
        return {**out, "optional": True, "presence": self.presence} if self.optional else out


# --- outputs ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputEntry:
    task: str
    type: str  # task type (names.TASK_TYPES)
    decode: str  # argmax | threshold | value (the task kind's decode_rule)
    labels: tuple[str, ...] | None = None  # class names in output order; None for regression
    threshold: float | None = None  # binary and multilabel; boxes: the lowest score answered
    params: Mapping[str, float] | None = None  # dense kinds' decoding numbers (boxes: stride, top_k; mask: size)

    @classmethod
    def read(cls, f: _Fields) -> OutputEntry:
        kind = f.get("type", _choice(TASK_TYPES, "task type"))
        task_kind = _task_kind(kind)
        rules = sorted({_task_kind(t).decode_rule for t in TASK_TYPES})
        entry = cls(task=f.get("task", _name), type=kind, decode=f.get("decode", _choice(rules, "decode")),
                    labels=f.get("labels", _list_of(_string), required=task_kind.has_classes),
                    threshold=f.get("threshold", _number, required=task_kind.decode_rule == "threshold"),
                    params=f.get("params", _numbers, required=task_kind.dense))
        if entry.decode != task_kind.decode_rule:
            f.fail(f"a {kind} task decodes by '{task_kind.decode_rule}', not '{entry.decode}'", "decode")
        if task_kind.has_classes:
            low, high = task_kind.min_classes, task_kind.max_classes
            if len(entry.labels) < low or (high is not None and len(entry.labels) > high):
                wanted = f"exactly {low}" if high == low else f"at least {low}"
                f.fail(f"a {kind} task needs {wanted} labels, got {len(entry.labels)}", "labels")
        if entry.threshold is not None and not 0.0 <= entry.threshold <= 1.0:
            f.fail(f"must be between 0 and 1, got {entry.threshold}", "threshold")
        f.done()
        return entry

    def width(self) -> int:
        """How many numbers the model outputs per sample for this task."""
        return _task_kind(self.type).n_outputs({"classes": list(self.labels or ()), **_grid(self.params)})

    def to_dict(self) -> dict:
        out = {"task": self.task, "type": self.type, "decode": self.decode}
        if self.labels is not None:
            out["labels"] = list(self.labels)
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.params is not None:
            out["params"] = dict(self.params)
        return out


def _numbers(f: _Fields, key: str, v) -> Mapping[str, float]:
    """A mapping of names to numbers (a dense output's decoding parameters)."""
    if not isinstance(v, dict):
        f.fail(f"expected an object of numbers, got {_kind(v)}", key)
    return MappingProxyType({_name(f, key, k): _number(f, f"{key}.{k}", x) for k, x in v.items()})


def _grid(params) -> dict:
    """What a dense kind's n_outputs needs from its params: the output's grid (boxes) or size (mask)."""
    if not params:
        return {}
    if "height" in params:
        return {"size": [int(params["height"]), int(params["width"])]}
    return {}


# --- quantization and the gate's summary -----------------------------------------------------------------------
@dataclass(frozen=True)
class QuantParams:
    """One integer input or output tensor: real = (q - zero_point) * scale (scale 0: not quantized)."""
    dtype: str
    scale: float
    zero_point: int

    @classmethod
    def read(cls, f: _Fields) -> QuantParams:
        q = cls(f.get("dtype", _choice(DTYPES, "dtype")), f.get("scale", _number), f.get("zero_point", _integer))
        f.done()
        return q


@dataclass(frozen=True)
class Quantization:
    precision: str
    kept_in_float: tuple[str, ...] = ()  # layer-name prefixes the float fallback left unquantized
    calibration_rows: int | None = None  # full-int8 precisions
    io: Mapping[str, QuantParams] | None = None  # TFLite int8io: each input's and output's integer parameters
    wraps: str | None = None  # C arrays: the TFLite precision of the model held (int8io when deployable, else int8)

    @classmethod
    def read(cls, f: _Fields) -> Quantization:
        def io(f, key, v):
            sub = f.sub(key, v)
            sub.seen.update(v)
            return MappingProxyType({name: QuantParams.read(sub.sub(name, x)) for name, x in v.items()})

        q = cls(f.get("precision", _choice(PRECISIONS, "precision")), f.get("kept_in_float", _list_of(_name)),
                f.get("calibration_rows", _positive, required=False), f.get("io", io, required=False),
                f.get("wraps", _choice(("int8", "int8io"), "wrapped precision"), required=False))
        f.done()
        return q

    def to_dict(self) -> dict:
        out = {"precision": self.precision, "kept_in_float": list(self.kept_in_float)}
        if self.calibration_rows is not None:
            out["calibration_rows"] = self.calibration_rows
        if self.io is not None:
            out["io"] = {name: _plain(q) for name, q in self.io.items()}
        if self.wraps is not None:
            out["wraps"] = self.wraps
        return out


@dataclass(frozen=True)
class ParitySummary:
    """The gate's verdict, as the manifest carries it (the details are in parity.json)."""
    deployable: bool
    reason: str = ""

    @classmethod
    def read(cls, f: _Fields) -> ParitySummary:
        p = cls(f.get("deployable", _boolean), f.get("reason", _string))
        f.done()
        return p


# --- the runtime configuration the gate verified ----------------------------------------------------------------
UNPINNED_NOTE = ("schema version 1 bundle: its kernels were not pinned at export (LiteRT picked the faster kernel "
                 "set at every load), so its answers may differ from its parity.json; re-export to pin them")


@dataclass(frozen=True)
class RuntimeConfig:
    """How the runtime opens the model file: exactly the configuration the parity gate measured. Another one gives
    answers nobody verified (int8 kernels of XNNPACK and of LiteRT's builtin set round differently)."""
    kernels: str | None = None  # TFLite: xnnpack | builtin ("auto" only for version-1 bundles: chosen per load)
    threads: int = 1
    graph_optimization: str | None = None  # ONNX: ONNX Runtime's graph optimisation level
    provider: str | None = None  # ONNX: the execution provider
    chosen_by: str = "default"  # measured (the faster kernel set at export) | default | unpinned (version 1)
    measured_on: str | None = None  # the CPU the kernel sets were timed on
    timings_ms: Mapping[str, float] | None = None  # median ms per call of each kernel set, when measured
    note: str = ""

    @property
    def pinned(self) -> bool:
        return self.chosen_by != "unpinned"

    @classmethod
    def read(cls, f: _Fields) -> RuntimeConfig:
        def timings(f, key, v):
            sub = f.sub(key, v)
            return MappingProxyType({k: sub.get(k, _number) for k in v})

        r = cls(kernels=f.get("kernels", _choice(KERNELS, "kernel set"), required=False),
                threads=f.get("threads", _positive),
                graph_optimization=f.get("graph_optimization", _choice(GRAPH_OPTIMIZATIONS, "graph optimisation"),
                                         required=False),
                provider=f.get("provider", _name, required=False),
                chosen_by=f.get("chosen_by", _choice(("measured", "default"), "choice")),
                measured_on=f.get("measured_on", _string, required=False),
                timings_ms=f.get("timings_ms", timings, required=False),
                note=f.get("note", _string, required=False, default=""))
        f.done()
        return r

    @classmethod
    def unpinned(cls, fmt: str) -> RuntimeConfig:
        """What a version-1 bundle gets: today's defaults (LiteRT: the kernel set timed at load)."""
        if fmt == "onnx":
            return cls(graph_optimization="all", provider="CPUExecutionProvider", chosen_by="unpinned",
                       note=UNPINNED_NOTE)
        return cls(kernels="auto", chosen_by="unpinned", note=UNPINNED_NOTE)

    def to_dict(self) -> dict:
        out = {"kernels": self.kernels, "threads": self.threads, "graph_optimization": self.graph_optimization,
               "provider": self.provider, "chosen_by": self.chosen_by, "measured_on": self.measured_on,
               "timings_ms": dict(self.timings_ms) if self.timings_ms is not None else None, "note": self.note}
        return {k: v for k, v in out.items() if v is not None}


# --- memory figures (micro bundles) ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Memory:
    """What a microcontroller needs for the model, measured by the parity gate in TFLite Micro. The kernels' code
    size is not included: it depends on the firmware's toolchain and the op resolver, and is not measured."""
    arena_bytes: int  # the smallest tensor arena (16-byte steps) TFLite Micro allocated and ran the model in
    flash_bytes: int  # the model flatbuffer (the C array), which firmware keeps in flash
    ops: tuple[str, ...]  # the builtin ops the model uses: what the firmware's op resolver must add
    measured_by: str  # e.g. "tflite-micro 0.dev2026..."

    @classmethod
    def read(cls, f: _Fields) -> Memory:
        m = cls(f.get("arena_bytes", _positive), f.get("flash_bytes", _positive), f.get("ops", _list_of(_name)),
                f.get("measured_by", _string))
        f.done()
        return m

    def to_dict(self) -> dict:
        return _plain(self)


# --- the precision search's choice (schema 5) ---------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """Whether this bundle is its format's recommended artifact for the export's target, measured on one CPU: every
    deployable candidate of the format timed side by side (one thread, batch 1, interleaved rounds, medians)."""
    recommended: bool
    target: str  # latency | size
    measured_on: str  # the CPU model the candidates were timed on
    threads: int = 1
    latency_ms: float | None = None  # this bundle's median
    compared_ms: Mapping[str, float] = field(default_factory=dict)  # every candidate timed, by label
    tie_with: tuple[str, ...] = ()  # candidates within noise of the recommended one (the smaller was chosen)

    @classmethod
    def read(cls, f: _Fields) -> Selection:
        def compared(f, key, v):
            sub = f.sub(key, v)
            return MappingProxyType({k: sub.get(k, _number) for k in v})

        s = cls(recommended=f.get("recommended", _boolean), target=f.get("target", _choice(("latency", "size"),
                                                                                            "target")),
                measured_on=f.get("measured_on", _string), threads=f.get("threads", _positive),
                latency_ms=f.get("latency_ms", _optional_number, required=False),
                compared_ms=f.get("compared_ms", compared, required=False, default=MappingProxyType({})),
                tie_with=f.get("tie_with", _list_of(_string), required=False, default=()))
        f.done()
        return s

    def to_dict(self) -> dict:
        return {"recommended": self.recommended, "target": self.target, "measured_on": self.measured_on,
                "threads": self.threads, "latency_ms": self.latency_ms, "compared_ms": dict(self.compared_ms),
                "tie_with": list(self.tie_with)}


# --- the manifest ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BundleManifest:
    schema_version: int
    edgemtl_version: str
    recipe: str  # the recipe's name
    recipe_hash: str
    model: str
    format: str
    precision: str
    file: str  # the model file, inside the bundle
    inputs: tuple[InputEntry, ...]
    outputs: tuple[OutputEntry, ...]
    quantization: Quantization
    parity: ParitySummary
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)  # what the gate verified (version 1: unpinned)
    memory: Memory | None = None  # micro bundles (version 4): arena and flash measured in TFLite Micro
    selection: Selection | None = None  # (version 5) the precision search's measured recommendation
    bundle_dir: Path | None = field(default=None, compare=False)  # where it was read from; not written

    # --- reading ---
    @classmethod
    def read(cls, bundle) -> BundleManifest:
        """The manifest of a bundle folder (or of its manifest.json path)."""
        folder = Path(bundle)
        if folder.name == MANIFEST_FILE and folder.is_file():
            folder = folder.parent
        if not folder.exists():
            raise EdgemtlError(f"{folder}: bundle folder not found")
        if not folder.is_dir():
            raise EdgemtlError(f"{folder}: not a bundle folder (a bundle is a folder with {MANIFEST_FILE})")
        if not (folder / MANIFEST_FILE).exists():
            raise EdgemtlError(f"{folder}: no {MANIFEST_FILE}, so not an edgemtl bundle (make one with "
                               f"'edgemtl export')")
        return cls.from_json(folder / MANIFEST_FILE, folder)

    @classmethod
    def from_json(cls, source: str | Path, bundle_dir: Path | None = None) -> BundleManifest:
        """source: a manifest.json path (a Path, or a str naming an existing file) or its JSON text (str).
        bundle_dir: the folder its file names resolve in (default: the file's folder); without one, names are checked
        but not resolved."""
        if isinstance(source, str) and source.lstrip()[:1] not in ("{", "[", "") and Path(source).is_file():
            source = Path(source)  # a path given as a string, not JSON text
        if isinstance(source, Path):
            bundle_dir = source.parent if bundle_dir is None else Path(bundle_dir)
            data, file = jsonio.read(source, "bundle manifest"), str(source)
        else:
            file = str(Path(bundle_dir) / MANIFEST_FILE) if bundle_dir is not None else MANIFEST_FILE
            data = jsonio.loads(source, file)
        return cls.from_dict(data, bundle_dir, file)

    @classmethod
    def from_dict(cls, data: Any, bundle_dir: Path | None = None, file: str = MANIFEST_FILE) -> BundleManifest:
        f = _Fields(data, "", file)
        version = f.get("schema_version", _integer)
        if version < 1:
            f.fail(f"must be a positive integer, got {version}", "schema_version")
        if version > SCHEMA_VERSION:
            f.fail(f"bundle schema version {version} is newer than this runtime reads ({SCHEMA_VERSION}); "
                   f"upgrade edgemtl", "schema_version")
        fmt = f.get("format", _choice(FORMATS, "format"))
        manifest = cls(
            schema_version=version, edgemtl_version=f.get("edgemtl_version", _string),
            recipe=f.get("recipe", _string), recipe_hash=f.get("recipe_hash", _string), model=f.get("model", _name),
            format=fmt, precision=f.get("precision", _choice(FORMAT_PRECISIONS[fmt], f"{fmt} precision")),
            file=f.get("file", _name), inputs=f.get("inputs", _entries(InputEntry)),
            outputs=f.get("outputs", _entries(OutputEntry)),
            quantization=f.get("quantization", lambda f, k, v: Quantization.read(f.sub(k, v))),
            parity=f.get("parity", lambda f, k, v: ParitySummary.read(f.sub(k, v))),
            runtime=(f.get("runtime", lambda f, k, v: RuntimeConfig.read(f.sub(k, v))) if version >= 2
                     else RuntimeConfig.unpinned(fmt)),
            memory=(f.get("memory", lambda f, k, v: Memory.read(f.sub(k, v)), required=False)
                    if version >= 4 else None),
            selection=(f.get("selection", lambda f, k, v: Selection.read(f.sub(k, v)), required=False)
                       if version >= 5 else None),
            bundle_dir=Path(bundle_dir) if bundle_dir is not None else None)
        f.done()
        manifest._check(f)
        return manifest

    def _check(self, f: _Fields):
        for key, entries, attr in (("inputs", self.inputs, "name"), ("outputs", self.outputs, "task")):
            names = [getattr(e, attr) for e in entries]
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                f.fail(f"{attr} '{repeated[0]}' appears more than once", key)
        names = [e.name for e in self.inputs]
        for i, e in enumerate(self.inputs):
            if e.presence and e.presence in names:
                f.fail(f"'{e.presence}' is also an input's name", f"inputs[{i}].presence")
        if self.quantization.precision != self.precision:
            f.fail(f"'{self.quantization.precision}' but the bundle's precision is '{self.precision}'",
                   "quantization.precision")
        for where, name in self._named_files():
            self._resolve(name, f"{f.file}: {where}")

    def _named_files(self) -> list[tuple[str, str]]:
        files = [("file", self.file)]
        for i, entry in enumerate(self.inputs):
            files += [(f"inputs[{i}].preprocess.vocab", name) for name in entry.file_names()]
        return files

    def _resolve(self, name: str, where: str):
        if self.bundle_dir is None:  # no folder to resolve in: the name's form only
            check_relative(name, where)
        else:
            resolve_inside(self.bundle_dir, name, where)

    # --- use ---
    def path_of(self, name: str) -> Path:
        """A file the manifest names (model file, vocabulary), resolved inside the bundle folder."""
        if self.bundle_dir is None:
            raise EdgemtlError(f"{MANIFEST_FILE}: no bundle folder to resolve '{name}' in")
        return resolve_inside(self.bundle_dir, name, str(self.bundle_dir / MANIFEST_FILE))

    @property
    def model_path(self) -> Path:
        return self.path_of(self.file)

    @property
    def artifact(self) -> ArtifactId:
        return ArtifactId(self.model, self.format, self.precision)

    @property
    def deployable(self) -> bool:
        return self.parity.deployable

    @property
    def recommended(self) -> bool:
        return self.selection is not None and self.selection.recommended

    def input(self, name: str) -> InputEntry:
        return _one(self.inputs, "name", name, "input")

    @property
    def model_input_names(self) -> tuple[str, ...]:
        """Every input of the model file: the inputs, then the presence inputs of the optional ones."""
        return tuple(e.name for e in self.inputs) + tuple(e.presence for e in self.inputs if e.presence)

    def output(self, task: str) -> OutputEntry:
        return _one(self.outputs, "task", task, "output")

    def file_names(self) -> tuple[str, ...]:
        """Every file of the bundle the manifest names (model file first)."""
        return tuple(name for _, name in self._named_files())

    def require_files(self) -> None:
        """Every named file is present and a file (not a folder): what a runtime checks before opening anything."""
        for where, name in self._named_files():
            path = self.path_of(name)
            if not path.is_file():
                state = "is a folder, not a file" if path.is_dir() else "is missing"
                raise EdgemtlError(f"{self.bundle_dir}: '{name}' named by {MANIFEST_FILE} ({where}) {state}")

    def check_output_widths(self, widths: Mapping[str, int]) -> None:
        """Compare with the model file's output widths (numbers per sample): fewer labels than outputs is an error."""
        where = self.bundle_dir / MANIFEST_FILE if self.bundle_dir is not None else MANIFEST_FILE
        for i, entry in enumerate(self.outputs):
            want = widths.get(entry.task)
            if want is not None and entry.width() is not None and want != entry.width():
                what = "labels" if entry.labels is not None and entry.width() == len(entry.labels) else "values"
                raise EdgemtlError(f"{where}: outputs[{i}].labels: the model outputs {want} values for task "
                                   f"'{entry.task}', the manifest has {entry.width()} {what}")

    # --- writing ---
    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "bundle_dir"}
        out.update(inputs=[e.to_dict() for e in self.inputs], outputs=[e.to_dict() for e in self.outputs],
                   quantization=self.quantization.to_dict(), parity=_plain(self.parity))
        if self.schema_version >= 2:
            out["runtime"] = self.runtime.to_dict()
        else:
            out.pop("runtime")
        for key in ("memory", "selection"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key).to_dict()
            else:
                out.pop(key)
        return out

    def to_json(self) -> str:
        """Strict JSON (no NaN: non-finite numbers become null), indented, with a final newline."""
        return jsonio.dumps(self.to_dict())


def _entries(cls):
    def read(f, key, v):
        items = _list_of(lambda f, k, x: x, min_len=1)(f, key, v)
        return tuple(cls.read(_Fields(x, f"{key}[{i}]", f.file)) for i, x in enumerate(items))
    return read


def _one(entries, attr: str, name: str, what: str):
    for e in entries:
        if getattr(e, attr) == name:
            return e
    raise EdgemtlError(f"no {what} '{name}' (this bundle has {', '.join(getattr(e, attr) for e in entries)})")


def _plain(obj) -> dict:
    """A frozen part as JSON-ready values (tuples as lists)."""
    return {f.name: list(v) if isinstance(v := getattr(obj, f.name), tuple) else v for f in dataclasses.fields(obj)}


# --- parity.json -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskParity:
    """One task's comparison of the artifact with the Keras model on the test split (None: not measurable)."""
    metric: str  # accuracy | mae
    keras: float | None
    artifact: float | None
    drop: float | None  # keras score - artifact score (higher is worse)
    max_abs_diff: float | None
    agreement: float | None  # share of rows decided alike

    NUMBERS: ClassVar[tuple] = ("max_abs_diff", "keras", "artifact", "drop", "agreement")

    @classmethod
    def read(cls, f: _Fields) -> TaskParity:
        t = cls(metric=f.get("metric", _string), **{k: f.get(k, _optional_number) for k in cls.NUMBERS})
        f.done()
        return t

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "metric": self.metric, "keras": self.keras,
                "artifact": self.artifact, "drop": self.drop, "agreement": self.agreement}


def _patterns(f, key, v) -> Mapping:
    """parity.json `patterns`: {pattern: {"rows": n, "tasks": {task: {metric, keras, artifact, drop}}}}."""
    sub = f.sub(key, v)
    sub.seen.update(v)
    out = {}
    for pattern, entry in v.items():
        p = sub.sub(pattern, entry)
        rows = p.get("rows", _integer)

        def tasks(f, k, t):
            ts = f.sub(k, t)
            ts.seen.update(t)
            return {name: _pattern_task(ts.sub(name, m)) for name, m in t.items()}

        out[pattern] = MappingProxyType({"rows": rows, "tasks": MappingProxyType(p.get("tasks", tasks))})
        p.done()
    return MappingProxyType(out)


def _pattern_task(f: _Fields) -> Mapping:
    row = {"metric": f.get("metric", _string), **{k: f.get(k, _optional_number) for k in ("keras", "artifact", "drop")}}
    f.done()
    return MappingProxyType(row)


@dataclass(frozen=True)
class ParityReport:
    """parity.json: the gate's full verdict on one artifact."""
    deployable: bool
    reason: str
    tasks: Mapping[str, TaskParity]
    rows: int | None = None  # test rows compared
    kept_in_float: tuple[str, ...] = ()
    fallback_tried: tuple[tuple[str, ...], ...] = ()
    null_reasons: Mapping[str, str] = field(default_factory=dict)  # dotted key -> why its value is null
    # sha256 of the outputs the gate measured (every task in manifest order, float32, test split in batches of
    # export.parity.GATE_BATCH) on the bundle's runtime configuration: a load that answers alike reproduces it
    outputs_digest: str | None = None
    runtime: RuntimeConfig | None = None  # the configuration the gate ran the file on (the manifest's `runtime`)
    # optional inputs: per presence pattern of the test rows ('image+title', 'title'), its rows and per task the
    # Keras and artifact metric and the drop: {pattern: {"rows": n, "tasks": {task: {...}}}}
    patterns: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, bundle_dir: Path) -> ParityReport:
        path = Path(bundle_dir) / PARITY_FILE
        return cls.from_dict(jsonio.read(path, "parity report"), str(path))

    @classmethod
    def from_json(cls, text: str, where: str = PARITY_FILE) -> ParityReport:
        return cls.from_dict(jsonio.loads(text, where), where)

    @classmethod
    def from_dict(cls, data: Any, file: str = PARITY_FILE) -> ParityReport:
        f = _Fields(data, "", file)

        def tasks(f, key, v):
            sub = f.sub(key, v)
            sub.seen.update(v)
            return MappingProxyType({name: TaskParity.read(sub.sub(name, x)) for name, x in v.items()})

        def reasons(f, key, v):
            sub = f.sub(key, v)
            return MappingProxyType({k: sub.get(k, _string) for k in v})

        report = cls(deployable=f.get("deployable", _boolean), reason=f.get("reason", _string),
                     tasks=f.get("tasks", tasks), rows=f.get("rows", _integer, required=False),
                     kept_in_float=f.get("kept_in_float", _list_of(_name), required=False, default=()),
                     fallback_tried=f.get("fallback_tried", _list_of(_list_of(_name)), required=False, default=()),
                     null_reasons=f.get(jsonio.NULL_REASONS, reasons, required=False, default=MappingProxyType({})),
                     outputs_digest=f.get("outputs_digest", _string, required=False),
                     runtime=f.get("runtime", lambda f, k, v: RuntimeConfig.read(f.sub(k, v)), required=False),
                     patterns=f.get("patterns", _patterns, required=False, default=MappingProxyType({})))
        f.done()
        return report

    def to_dict(self) -> dict:
        out = {"deployable": self.deployable, "reason": self.reason,
               "tasks": {name: t.to_dict() for name, t in self.tasks.items()}, "rows": self.rows,
               "kept_in_float": list(self.kept_in_float), "fallback_tried": [list(t) for t in self.fallback_tried]}
        if self.outputs_digest is not None:
            out["outputs_digest"] = self.outputs_digest
        if self.runtime is not None:
            out["runtime"] = self.runtime.to_dict()
        if self.patterns:
            out["patterns"] = {p: {"rows": v["rows"], "tasks": {t: dict(m) for t, m in v["tasks"].items()}}
                               for p, v in self.patterns.items()}
        clean, found = jsonio.strict(out)
        reasons = {**found, **self.null_reasons}
        if reasons:
            clean[jsonio.NULL_REASONS] = reasons
        return clean

    def to_json(self) -> str:
        return jsonio.dumps(self.to_dict())
