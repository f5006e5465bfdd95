"""The latency-aware student (compress.student.target_ms): before any training, a few students of the recipe's
student architecture at other widths (and stem strides) are built with random weights, converted to the TFLite
precision the student ships in, timed side by side on this machine, and the largest one whose latency is within the
budget becomes the student.

Random weights: latency depends on the graph (shapes and ops), not on the values. Full int8 still needs activation
ranges, so its calibration rows are a few real training rows. Timing is bench/interleave.py's, as the export's
precision search uses it: a one-thread child, batch 1, interleaved rounds, medians; each file on both LiteRT kernel
sets, and the faster counts, as the parity gate pins the faster set into the bundle.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import EdgemtlError
from ..recipe.derive import WIDTH_KEYS, scale_width
from ..recipe.load import recipe_hash
from ..recipe.schema import Recipe
from ..rundir import RunDir
from ..runsafety import atomic_write_json

log = logging.getLogger("edgemtl")

SCALES = (0.5, 0.75, 1.0, 1.5, 2.0)  # width multipliers over the recipe's student (1.0 is the student as written)
STRIDES = (1, 2)  # stem strides tried where an encoder has one (cnn image and audio encoders)
CALIBRATION_ROWS = 10  # int8 ranges of a random-weight model: a few real training rows are enough for timing
KERNELS = ("xnnpack", "builtin")


@dataclass
class StudentCandidate:
    name: str  # x1.5, or x1.5/s2 where a stem stride is chosen too
    scale: float
    stem_stride: int | None
    recipe: Recipe
    params: int = 0
    mflops: float = 0.0
    latency_ms: float | None = None
    kernels: str | None = None  # the faster LiteRT kernel set, whose median is latency_ms
    source: Path | None = None  # the random-weight model file the conversion reads (while measuring)

    @property
    def capacity(self) -> tuple:
        """What "largest" means: parameters, then MFLOPs (at equal parameters a stem stride of 1 sees more)."""
        return self.params, self.mflops

    def widths(self) -> str:
        parts = [f"{i.name} {_widths(i.encoder.to_dict())}" for i in self.recipe.inputs]
        sections = [("trunk", self.recipe.trunk)]
        if self.recipe.fusion.type != "concat":  # a concatenation has no width of its own
            sections.insert(0, ("fusion", self.recipe.fusion))
        parts += [f"{name} {w}" for name, section in sections if (w := _widths(section.to_dict()))]
        return "; ".join(parts)

    def row(self, chosen: bool) -> dict:
        return {"name": self.name, "scale": self.scale, "stem_stride": self.stem_stride, "widths": self.widths(),
                "params": self.params, "mflops": round(self.mflops, 3), "latency_ms": self.latency_ms,
                "kernels": self.kernels, "chosen": chosen}


def _widths(section: dict) -> str:
    keys = [k for k in (*WIDTH_KEYS, "stem_stride") if k in section]
    return " ".join(f"{k} {json.dumps(section[k]).replace(' ', '')}" for k in keys)


def shipped_precision(recipe: Recipe) -> str:
    """The TFLite precision the student is timed in: full int8 where the recipe exports it (the compressed student
    is deployed as int8; int8io runs the same kernels), else fp32."""
    exported = recipe.export
    int8 = "tflite" in exported.formats and {"int8", "int8io"} & set(exported.precisions)
    return "int8" if int8 else "fp32"


def _with_stride(encoder, stride: int | None):
    return encoder if stride is None or not hasattr(encoder, "stem_stride") else \
        dataclasses.replace(encoder, stem_stride=stride)


def _scaled(section, factor: float):
    return dataclasses.replace(section, **{k: scale_width(getattr(section, k), factor) for k in WIDTH_KEYS
                                           if hasattr(section, k)})


def candidate_recipe(student: Recipe, scale: float, stride: int | None) -> Recipe:
    """The student with every width (filters, units, embedding sizes) times scale and every stem stride set."""
    inputs = tuple(dataclasses.replace(i, encoder=_with_stride(_scaled(i.encoder, scale), stride))
                   for i in student.inputs)
    return dataclasses.replace(student, inputs=inputs, fusion=_scaled(student.fusion, scale),
                               trunk=_scaled(student.trunk, scale))


def candidates(student: Recipe, scales=None) -> list[StudentCandidate]:
    """One candidate per width multiplier (default SCALES) and per stem stride where an encoder has one; candidates
    whose widths round to the same model are listed once."""
    scales = SCALES if scales is None else scales
    has_stride = any(hasattr(i.encoder, "stem_stride") for i in student.inputs)
    strides = STRIDES if has_stride else (None,)
    out, seen = [], set()
    for stride in strides:
        for scale in scales:
            recipe = candidate_recipe(student, scale, stride)
            key = recipe_hash(recipe)
            if key not in seen:
                seen.add(key)
                name = f"x{scale:g}" + (f"/s{stride}" if stride is not None else "")
                out.append(StudentCandidate(name, scale, stride, recipe))
    return out


def choose(found: list[StudentCandidate], target_ms: float) -> StudentCandidate:
    """The candidate of most capacity whose measured latency is within target_ms; else one error saying what the
    fastest takes and what to change."""
    fits = [c for c in found if c.latency_ms is not None and c.latency_ms <= target_ms]
    if fits:
        return max(fits, key=lambda c: c.capacity)
    timed = [c for c in found if c.latency_ms is not None]
    fastest = min(timed, key=lambda c: c.latency_ms)
    raise EdgemtlError(f"compress.student.target_ms: no candidate student runs within {target_ms:g} ms on this "
                       f"machine; the fastest, {fastest.name} ({fastest.widths()}), takes {fastest.latency_ms:.4f} "
                       f"ms: raise target_ms to at least {fastest.latency_ms:.4f}, or make compress.student smaller "
                       "(preset tiny, fewer filters, stem_stride 2)")


@dataclass
class SearchResult:
    recipe: Recipe  # the chosen student's
    record: dict  # what RUN/student_search.json and compress.json hold
    candidates: list[StudentCandidate]  # the measured ones


def searched_student(run: RunDir, recipe: Recipe, data, student: Recipe, resume: bool = False,
                     teacher_params: Callable[[], int] | None = None) -> SearchResult | None:
    """The student compress trains: with compress.student.target_ms, the search's choice among the candidates
    smaller than the teacher; without it None (the recipe's student as it is, nothing measured)."""
    target = recipe.compress.student.target_ms
    if target is None:
        return None
    limit = teacher_params() if teacher_params is not None else None
    return StudentSearch(run, recipe, data, student).run_search(
        target, resume=resume, keep=lambda c: limit is None or c.params < limit)


class StudentSearch:
    """Builds, converts and times the candidates of one recipe's student on one run's data."""

    def __init__(self, run: RunDir, recipe: Recipe, data, student: Recipe, precision: str | None = None,
                 say: Callable[[str], None] | None = None):
        self.run, self.recipe, self.data, self.student = run, recipe, data, student
        self.precision = precision or shipped_precision(recipe)
        self.say = say or log.info

    def key(self, scales) -> str:
        """What decides the candidates: a stored search with the same key is the same search."""
        return recipe_hash({"student": self.student.to_dict(), "precision": self.precision, "scales": list(scales),
                            "strides": list(STRIDES), "target_ms": self.student.compress.student.target_ms})

    def measure(self, found: list[StudentCandidate], keep: Callable[[StudentCandidate], bool]) -> list:
        """Every kept candidate's parameters, MFLOPs and latency (median ms of its faster kernel set); returns the
        kept ones (keep sees the parameters: compress drops those not smaller than the teacher)."""
        from ..bench.interleave import measure
        from ..export.convert import calibration_samples

        tasks = list(self.student.tasks)
        samples = calibration_samples(self.data["train"], tasks, CALIBRATION_ROWS, self.recipe.seed)
        folder = self.run.scratch("student-search")
        try:
            built = [(c, self._build(c, folder / f"candidate-{i}.keras")) for i, c in enumerate(found)]
            dropped = [c.name for c, _ in built if not keep(c)]
            if dropped:
                self.say(f"compress: student search: {', '.join(dropped)} not smaller than the teacher: left out")
            built = [(c, model) for c, model in built if keep(c)]
            if not built:
                raise EdgemtlError("compress.student.target_ms: every candidate student has at least the teacher's "
                                   "parameters; make compress.student smaller (preset small or tiny)")
            paths = [self._convert(c, model, i, len(built), samples, folder) for i, (c, model) in enumerate(built, 1)]
            self.say(f"compress: student search: timing {len(built)} candidates side by side ({self.precision} "
                     "TFLite, one thread, batch 1, both LiteRT kernel sets)")
            targets = [{"name": f"{i} {k}", "path": str(p), "kernels": k} for i, p in enumerate(paths)
                       for k in KERNELS]
            latency = measure(targets, samples[0], workdir=folder)["latency"]
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        for i, (c, _) in enumerate(built):
            c.kernels = min(KERNELS, key=lambda k: latency[f"{i} {k}"]["median_ms"])
            c.latency_ms = round(latency[f"{i} {c.kernels}"]["median_ms"], 5)
        return [c for c, _ in built]

    def _build(self, c: StudentCandidate, source):
        """The candidate with random weights, saved to source (the conversion child reads it); sets its parameters
        and MFLOPs; returns the exported graph."""
        from ..bench.flops import model_flops
        from ..export.signature import exported_model
        from ..models.build import build_model, count_params, numeric_stats
        from ..models.files import save_model_file

        net = build_model(c.recipe, self.data.labels, self.data.tokenizers,
                          numeric_stats(c.recipe, self.data["train"].x), c.recipe.tasks, "student")
        model = exported_model(net, self.recipe)
        c.params, c.mflops = count_params(net), model_flops(model) / 1e6
        save_model_file(net, source)
        c.source = source
        return model

    def _convert(self, c: StudentCandidate, model, i: int, n: int, samples, folder):
        """The candidate's TFLite file in folder, converted as the export converts (full int8 in a child)."""
        from ..artifacts import ArtifactId
        from ..export.convert import Converter

        start = time.monotonic()
        with Converter(self.run, self.recipe, f"student {c.name}", model, samples, model_path=c.source,
                       cache=False) as converter:
            out = folder / f"candidate-{i}.tflite"
            shutil.copyfile(converter.convert(ArtifactId("student", "tflite", self.precision)), out)
        self.say(f"compress: student search {i}/{n}: {c.name} ({c.params:,} params, {c.mflops:.2f} MFLOPs): "
                 f"{self.precision} TFLite in {time.monotonic() - start:.1f} s")
        return out

    def run_search(self, target_ms: float, scales=None, resume: bool = False,
                   keep: Callable[[StudentCandidate], bool] = lambda c: True) -> SearchResult:
        """Measure (or, resuming, reuse the stored search of the same key), choose, store, and say the choice."""
        scales = SCALES if scales is None else scales
        found = candidates(self.student, scales)
        key = self.key(scales)
        stored = _stored(self.run, key) if resume else None
        if stored is not None:
            by_name = {c.name: c for c in found}
            found = [by_name[row["name"]] for row in stored["candidates"]]
            for c, row in zip(found, stored["candidates"]):
                c.params, c.mflops, c.latency_ms, c.kernels = (row["params"], row["mflops"], row["latency_ms"],
                                                               row["kernels"])
            self.say(f"compress: student search: reusing {self.run.student_search.name} (measured "
                     f"{stored['measured_at']})")
        else:
            found = self.measure(found, keep)
        chosen = choose(found, target_ms)
        record = self._record(found, chosen, target_ms, key, stored)
        atomic_write_json(self.run.student_search, record)
        bigger = [c for c in found if c.capacity > chosen.capacity]
        nxt = min(bigger, key=lambda c: c.capacity) if bigger else None
        self.say(f"compress: student search: {chosen.name} chosen, {chosen.latency_ms:.4f} ms <= {target_ms:g} ms"
                 + (f" (the next larger, {nxt.name}, takes {nxt.latency_ms:.4f} ms)" if nxt else
                    " (the largest candidate)"))
        return SearchResult(chosen.recipe, record, found)

    def _record(self, found, chosen, target_ms, key, stored) -> dict:
        from ..bench.machine import cpu_info

        return {"target_ms": target_ms, "precision": self.precision, "threads": 1, "batch": 1, "key": key,
                "measured_on": stored["measured_on"] if stored else cpu_info()["model"],
                "measured_at": stored["measured_at"] if stored else time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                                  time.gmtime()),
                "chosen": chosen.name,
                "candidates": [c.row(c is chosen) for c in sorted(found, key=lambda c: c.capacity)]}


def _stored(run: RunDir, key: str) -> dict | None:
    try:
        stored = json.loads(run.student_search.read_text())
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) and stored.get("key") == key else None


def search_table(record: dict) -> list[str]:
    """The compress.md lines of a search: what was measured and the table, smallest candidate first."""
    from ..reports.markdown import table

    rows = [[c["name"], c["widths"], f"{c['params']:,}", f"{c['mflops']:.2f}",
             "" if c["latency_ms"] is None else f"{c['latency_ms']:.4f}", c["kernels"] or "",
             "**chosen**" if c["chosen"] else ""] for c in record["candidates"]]
    return ["", f"**Student search** (compress.student.target_ms: {record['target_ms']:g} ms): candidate students "
                f"with random weights as {record['precision']} TFLite, timed on {record['measured_on']} (one thread, "
                f"batch 1, median of interleaved rounds, the faster LiteRT kernel set); the student is the one with "
                f"the most parameters within the budget: {record['chosen']}.", "",
            table(["candidate", "widths", "params", "MFLOPs", "ms", "kernels", "chosen"], rows)]
