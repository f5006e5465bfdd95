"""The converter: one model into any row of the formats table, memoised per (format converted as, precision, parts
kept in float). Full-int8 TFLite conversions run in a child process (calibration can crash its process) and go
through RUN/cache/, so compress's int8 comparison and the export of the same model convert once."""
from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np

from .. import __version__, kinds
from ..artifacts import ArtifactId
from ..errors import EdgemtlError
from ..presence import PRESENT_SUFFIX, has_patterns, patterns
from ..recipe import recipe_hash
from ..recipe.schema import Recipe
from ..rundir import RunDir
from ..runsafety import interrupted
from .child import ConversionChild
from .converters import ConversionJob
from .formats import FORMATS
from .pcm import float_front_ends

MIN_CALIBRATION_ROWS = 10
# how conversion errors name what failed (per format converted as, precision)
_WHAT = {("onnx", "fp16"): "onnx fp16", ("onnx", "dynamic"): "onnx dynamic int8", ("onnx", "int8"): "onnx static int8"}


def calibration_rows(split, tasks: list, n: int, seed: int) -> np.ndarray:
    """n training rows covering every class of every task as far as the data allows, then random rows."""
    if len(split) < MIN_CALIBRATION_ROWS:
        raise EdgemtlError(f"calibration split too small: the training split has {len(split)} rows, "
                           f"full-int8 calibration needs at least {MIN_CALIBRATION_ROWS}")
    chosen = _pattern_rows(split, seed)
    for t in tasks:
        chosen += kinds.task_kind(t.type).covering_rows(split.y[t.name])
    rng = np.random.default_rng(seed)
    rest = [i for i in rng.permutation(len(split)) if i not in set(chosen)]
    return np.array(list(dict.fromkeys(chosen + rest))[:max(n, MIN_CALIBRATION_ROWS)])


PATTERN_CALIBRATION_ROWS = 10  # rows of each presence pattern at least (optional inputs)


def _pattern_rows(split, seed: int) -> list[int]:
    """With optional inputs: a few rows of every presence pattern (e.g. with and without a photo), so int8 ranges
    are calibrated on both the encoder's vectors and the absent vector."""
    x = getattr(split, "x", None) or {}
    if not has_patterns(x):
        return []
    rows = patterns(x, [k for k in x if not k.endswith(PRESENT_SUFFIX)])
    rng = np.random.default_rng(seed)
    return [int(i) for p in sorted(set(rows))
            for i in rng.permutation(np.flatnonzero(rows == p))[:PATTERN_CALIBRATION_ROWS]]


def calibration_samples(split, tasks: list, n: int, seed: int) -> tuple[dict, ...]:
    """The calibration rows as input dicts of one row each (what the converters take)."""
    return tuple({k: v[i:i + 1] for k, v in split.x.items()} for i in calibration_rows(split, tasks, n, seed))


def load_exported(run: RunDir, recipe: Recipe, model_name: str):
    """The trained model with the serving signature every converter reads (export.signature.exported_model)."""
    from ..models.build import load_model
    from .signature import exported_model

    return exported_model(load_model(run.require_model(model_name)), recipe)


# what a converted file holds depends on: the converters, and the exported graph (signature.py's rebuild of the model,
# the custom layers' ops)
CONVERTING_CODE = tuple(f"export/{n}.py" for n in ("convert", "converters", "tflite", "micro", "onnx", "pcm",
                                                   "signature")) + ("models/fused_match.py", "models/layers.py")


@functools.cache
def converter_code() -> str:
    """A digest of the code that writes converted files: a RUN/cache filled by other edgemtl code (same version
    number, changed converter) is never served."""
    digest = hashlib.sha256()
    for name in CONVERTING_CODE:
        digest.update((Path(__file__).parent.parent / name).read_bytes())
    return digest.hexdigest()[:16]


class Converter:
    """One model's conversions. Use as a context manager: its scratch folder goes even on an exception or a kill of
    the conversion child."""

    def __init__(self, run: RunDir, recipe: Recipe, model_name: str, model=None, samples: tuple = (),
                 metadata: dict | None = None, model_path: Path | None = None, cache: bool = True,
                 child: ConversionChild | None = None):
        """model_path: a model file outside the run's models (the student search's random-weight candidates);
        cache: False keeps such one-off conversions out of RUN/cache; child: a conversion child shared with other
        converters, which this one leaves running (the student search's: TensorFlow imported once for all)."""
        self.run, self.recipe, self.model_name, self.cache = run, recipe, model_name, cache
        self.model_path = run.require_model(model_name) if model_path is None else Path(model_path)
        self.model = load_exported(run, recipe, model_name) if model is None else model
        self.samples = tuple(samples)
        self.metadata = {"edgemtl.recipe": recipe.name, "edgemtl.recipe_hash": run.recipe_hash(),
                         **(metadata or {})}
        self.memo: dict[tuple, Path] = {}  # (format converted as, precision, kept in float) -> converted file
        self.ahead: dict[tuple, tuple[Path, Path]] = {}  # (precision, kept in float, format) -> (job, file) sent ahead
        # last: from here on only close() removes it (in the run: a kill's leftovers go at the next start)
        self.workdir = run.scratch("export")
        # one child for all of this model's crash-prone conversions (export/worker.py): started on first use
        self.own_child = child is None
        self.child = ConversionChild(self.workdir / "worker.log") if child is None else child

    def __enter__(self) -> Converter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.own_child:
            self.child.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def convert(self, aid: ArtifactId, keep_float: tuple[str, ...] = ()) -> Path:
        """The model file of this artifact (the C format shares the int8 TFLite file it wraps)."""
        fmt = FORMATS[aid.format]
        key = (fmt.converts_as, aid.precision, tuple(keep_float))
        if key in self.memo:
            return self.memo[key]
        out = self.workdir / "out" / f"{fmt.converts_as}-{aid.precision}-{len(self.memo)}{fmt.suffix}"
        out.parent.mkdir(exist_ok=True)
        if fmt.converts_as == "tflite" and aid.precision == "int8io" and float_front_ends(self.model, keep_float):
            # an audio front-end in float reads its input directly: the audio input becomes int16 PCM (pcm.py)
            self._convert_in_child(aid.precision, tuple(keep_float), out, fmt.converts_as)
        elif fmt.converts_as == "tflite" and aid.precision == "int8io":
            # int8 I/O is the full-int8 model without its boundary QUANTIZE/DEQUANTIZE: one calibration, the same
            # quantization ranges in both files (the converter itself finishes int8 I/O this way)
            int8 = self.convert(ArtifactId(aid.model, "tflite", "int8"), keep_float)
            out.write_bytes(self._guard(lambda: integer_io(int8.read_bytes()), f"TFLite {aid.precision}"))
        elif fmt.converts_in_child(aid.precision):
            self._convert_in_child(aid.precision, tuple(keep_float), out, fmt.converts_as)
        else:
            job = self._job(aid.precision, tuple(keep_float))
            what = _WHAT.get((fmt.converts_as, aid.precision), aid.format)
            out.write_bytes(self._guard(lambda: fmt.load_converter()(job), what))
        if fmt.check:  # e.g. micro: every op must have a kernel in the target runtime (one line naming the layer)
            fmt.load_check()(out.read_bytes(), self.model_name, [x.name for x in self.model.layers])
        self.memo[key] = out
        return out

    def prepare(self, artifacts, keep_float: tuple[str, ...] = ()) -> None:
        """Before the first conversion of an export: when these artifacts need a full-int8 TFLite file (keeping
        keep_float in float) that RUN/cache lacks, send it to the child now, so its start-up and calibration run
        beside this process's own float conversions; convert() collects it. Another conversion only the child makes
        (micro) starts the child."""
        for aid in artifacts:
            fmt = FORMATS[aid.format]
            # int8io (and the C array, which wraps it) is made from the full-int8 file
            precision = "int8" if aid.precision == "int8io" and fmt.converts_as == "tflite" else aid.precision
            if not (FORMATS[fmt.converts_as].converts_in_child(precision) and self.samples):
                continue
            keep = tuple(keep_float) if fmt.can_keep_float(precision) else ()
            cached = self.cache_path(precision, keep, fmt.converts_as) if self.cache else None
            if cached is not None and cached.exists():
                continue
            if fmt.converts_as == "tflite" and precision == "int8" and not self.ahead:
                out = self.workdir / "out" / f"ahead-tflite-int8{fmt.suffix}"
                out.parent.mkdir(exist_ok=True)
                self.ahead[(precision, keep, "tflite")] = (self._job_file(precision, keep, out, "tflite"), out)
                self.child.submit(self.ahead[(precision, keep, "tflite")][0])
            else:
                self.child.start()

    def _job(self, precision: str, keep_float: tuple) -> ConversionJob:
        return ConversionJob(model=self.model, precision=precision, workdir=self.workdir, samples=self.samples,
                             keep_float=keep_float, opset=self.recipe.export.opset, metadata=self.metadata)

    def _guard(self, fn, what: str):
        try:
            return fn()
        except EdgemtlError:
            raise
        except Exception as e:  # converters raise many exception types
            if interrupted(e):
                raise KeyboardInterrupt from None
            raise EdgemtlError(conversion_error(e, what, self.model_name, self.model)) from None

    def cache_path(self, precision: str, keep_float: tuple[str, ...], fmt: str = "tflite") -> Path:
        """The same model, recipe, settings and calibration rows give the same file. The compress section is left
        out of the key: it never changes a conversion, and `compress --set` rewrites it in RUN/recipe.yaml after
        converting."""
        converting = recipe_hash({k: v for k, v in self.recipe.to_dict().items() if k != "compress"})
        key = [precision, list(keep_float), converting, __version__, converter_code()] + ([fmt] if fmt != "tflite"
                                                                                          else [])
        digest = hashlib.sha256(self.model_path.read_bytes() + json.dumps(key).encode())
        for sample in self.samples:
            for name in sorted(sample):
                digest.update(sample[name].tobytes())
        return self.run.cache_file(digest.hexdigest()[:24], FORMATS["tflite"].suffix)

    def _job_file(self, precision: str, keep_float: tuple, out: Path, fmt: str) -> Path:
        samples = self.workdir / "calibration.npz"
        if not samples.exists():
            np.savez(samples, **{k: np.concatenate([s[k] for s in self.samples]) for k in self.samples[0]})
        job = self.workdir / f"job-{out.stem}.json"
        job.write_text(json.dumps({"model": str(self.model_path), "recipe": str(self.run.recipe),
                                   "precision": precision, "samples": str(samples), "keep_float": list(keep_float),
                                   "out": str(out), "format": fmt}))
        return job

    def _convert_in_child(self, precision: str, keep_float: tuple, out: Path, fmt: str = "tflite") -> None:
        if not self.samples:
            raise EdgemtlError(f"{self.model_name}: TFLite {precision} needs calibration rows; none were given")
        cached = self.cache_path(precision, keep_float, fmt) if self.cache else None
        if cached is not None and cached.exists():
            shutil.copyfile(cached, out)
            return
        sent = self.ahead.pop((precision, tuple(keep_float), fmt), None)
        if sent is not None:  # sent to the child by prepare(): its answer, its file moved to where this one goes
            done = self.child.result(sent[0])
            if done.ok and sent[1].exists():
                sent[1].replace(out)
        else:
            done = self.child.run(self._job_file(precision, keep_float, out, fmt))
        if not done.ok or not out.exists():
            what = "TFLite Micro" if fmt == "micro" else f"TFLite {precision}"
            raise EdgemtlError(f"{self.model_name}: {what} conversion {done.how or 'failed'}: "
                               f"{(done.message or 'no output file')[:400]}")
        if cached is None:
            return
        cached.parent.mkdir(parents=True, exist_ok=True)
        part = cached.with_suffix(".part")  # a killed copy never looks like a cached file
        shutil.copyfile(out, part)
        part.replace(cached)


def integer_io(model: bytes) -> bytes:
    """int8 inputs and outputs where the full-int8 model quantizes an input or dequantizes an output; the rest (token
    ids, label-unit outputs left in float) keep their types, as the converter's own int8 I/O does."""
    import logging

    from tensorflow.lite.python.util import modify_model_io_type

    from ..tfk import tf

    # its warnings for inputs it leaves alone (int32 token ids, int16 PCM audio, a float input the gate then
    # refuses with the tensor's name) say nothing new here
    quiet = [logging.getLogger(name) for name in ("tensorflow", "absl")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        return bytes(modify_model_io_type(model, tf.int8, tf.int8))
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)


def convert_model(run: RunDir, recipe: Recipe, aid: ArtifactId, keep_float: tuple[str, ...] = (),
                  samples: tuple = ()) -> bytes:
    """The model file of one artifact, no gate and no bundle (compress's size column: fp32 needs no samples)."""
    with Converter(run, recipe, aid.model, samples=samples) as converter:
        return converter.convert(aid, keep_float).read_bytes()


def layer_of_op(model, op_type: str):
    """The layer whose name scope holds the first op of this type in the serving graph (ops are named layer/op)."""
    from .signature import serving_function

    layers = {x.name for x in model.layers}
    for op in serving_function(model).graph.get_operations():
        if op.type == op_type:
            return next((part for part in op.name.split("/") if part in layers), None)
    return None


def conversion_error(error: Exception, fmt: str, model_name: str, model) -> str:
    """One line naming the format and, where the converter's message shows it, the layer and op it cannot carry."""
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [type(error).__name__]
    op = re.search(r"'tf\.(\w+)' op is neither", text)
    if op:
        layer = layer_of_op(model, op.group(1))
        if layer:
            return f"{model_name}: cannot convert to {fmt}: layer '{layer}' uses op tf.{op.group(1)}, which " \
                   f"{fmt} builtin ops cannot carry"
        return f"{model_name}: cannot convert to {fmt}: op tf.{op.group(1)} is not a {fmt} builtin op"
    first = next((line for line in lines if "error" in line.lower()), lines[0])
    return f"{model_name}: cannot convert to {fmt}: {first[:400]}"
