"""The latency-aware student (compress.student.target_ms or target_speedup): before any training, students of the
recipe's student architecture at other widths and stem strides, and with the other encoders compress.student.encoders
names, are built with random weights, converted to each TFLite precision the recipe exports, timed side by side on
this machine with the run's teacher's fp32 TFLite file, and the largest one whose fastest file is within the budget
(target_ms, or the teacher's time / target_speedup) becomes the student.

Random weights: latency depends on the graph (shapes and ops), not on the values. Full int8 still needs activation
ranges, so its calibration rows are a few real training rows. Timing is bench/interleave.py's, as the export's
precision search uses it: a one-thread child, batch 1, interleaved rounds, medians; each file on both LiteRT kernel
sets. A candidate's latency is its fastest file (precision and kernel set), as the export recommends the fastest
deployable file and the parity gate pins the faster kernel set into the bundle.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..env_info import cpu_info, describe_cpu
from ..errors import EdgemtlError
from ..export.child import ConversionChild
from ..recipe.derive import WIDTH_KEYS, encoder_alternatives, scale_width
from ..recipe.load import recipe_hash
from ..recipe.schema import Recipe
from ..rundir import RunDir
from ..runsafety import atomic_write_json

log = logging.getLogger("edgemtl")

SCALES = (0.5, 0.75, 1.0, 1.5, 2.0)  # width multipliers over the recipe's student (1.0 is the student as written)
STRIDES = (1, 2)  # stem strides tried where an encoder has one (cnn image and audio encoders)
CALIBRATION_ROWS = 10  # int8 ranges of a random-weight model: a few real training rows are enough for timing
KERNELS = ("xnnpack", "builtin")
# the precision a file is timed in: fp16 weights run in fp32 kernels; int8io runs int8's kernels
TIMED_AS = {"fp32": "fp32", "fp16": "fp32", "dynamic": "dynamic", "int8": "int8", "int8io": "int8"}


@dataclass
class StudentCandidate:
    name: str  # x1.5, x1.5/s2 where a stem stride is chosen too, "image cnn x1.5/s2" where encoders are too
    scale: float
    stem_stride: int | None
    recipe: Recipe
    params: int = 0
    mflops: float = 0.0
    latency_ms: float | None = None
    precision: str | None = None  # the fastest file's precision and kernel set, whose median is latency_ms
    kernels: str | None = None
    files: dict[str, float] = dataclasses.field(default_factory=dict)  # "precision kernels": median ms, each file
    source: Path | None = None  # the random-weight model file the conversions read (while measuring)

    @property
    def capacity(self) -> tuple:
        """What "largest" means: parameters, then MFLOPs (at equal parameters a stem stride of 1 sees more)."""
        return self.params, self.mflops

    def widths(self) -> str:
        parts = [f"{i.name} {i.encoder.type} {_widths(i.encoder.to_dict())}" for i in self.recipe.inputs]
        sections = [("trunk", self.recipe.trunk)]
        if self.recipe.fusion.type != "concat":  # a concatenation has no width of its own
            sections.insert(0, ("fusion", self.recipe.fusion))
        parts += [f"{name} {w}" for name, section in sections if (w := _widths(section.to_dict()))]
        return "; ".join(parts)

    def row(self, chosen: bool) -> dict:
        return {"name": self.name, "scale": self.scale, "stem_stride": self.stem_stride, "widths": self.widths(),
                "params": self.params, "mflops": round(self.mflops, 3), "latency_ms": self.latency_ms,
                "precision": self.precision, "kernels": self.kernels, "files": self.files, "chosen": chosen}


def _widths(section: dict) -> str:
    keys = [k for k in (*WIDTH_KEYS, "stem_stride") if k in section]
    return " ".join(f"{k} {json.dumps(section[k]).replace(' ', '')}" for k in keys)


def timed_precisions(recipe: Recipe) -> tuple[str, ...]:
    """The TFLite precisions a candidate is timed in: those the recipe exports, as their kernels run (fp32 where it
    exports no TFLite)."""
    exported = recipe.export
    timed = {TIMED_AS[p] for p in exported.precisions} if "tflite" in exported.formats else set()
    return tuple(p for p in ("fp32", "dynamic", "int8") if p in timed) or ("fp32",)


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


def encoder_variants(student: Recipe) -> list[tuple[str, Recipe]]:
    """(label, student) for the student as written and every combination of compress.student.encoders' entries
    (label "" without any: the names stay x1/s2); a label names each searched input's encoder type, #2 on for a
    type listed again."""
    alternatives = encoder_alternatives(student)
    if not alternatives:
        return [("", student)]
    per_input = []
    for name, encoders in alternatives.items():
        options, count = [], {}
        for encoder in (student.input(name).encoder, *encoders):
            count[encoder.type] = count.get(encoder.type, 0) + 1
            tag = encoder.type + (f"#{count[encoder.type]}" if count[encoder.type] > 1 else "")
            options.append((name, f"{name} {tag}", encoder))
        per_input.append(options)
    out = []
    for combo in itertools.product(*per_input):
        encoders = {name: encoder for name, _, encoder in combo}
        inputs = tuple(dataclasses.replace(i, encoder=encoders.get(i.name, i.encoder)) for i in student.inputs)
        out.append((", ".join(tag for _, tag, _ in combo), dataclasses.replace(student, inputs=inputs)))
    return out


def candidates(student: Recipe, scales=None) -> list[StudentCandidate]:
    """One candidate per encoder variant, width multiplier (default SCALES) and stem stride where an encoder has
    one; candidates that come out as the same model are listed once."""
    scales = SCALES if scales is None else scales
    out, seen = [], set()
    for label, variant in encoder_variants(student):
        has_stride = any(hasattr(i.encoder, "stem_stride") for i in variant.inputs)
        for stride in STRIDES if has_stride else (None,):
            for scale in scales:
                recipe = candidate_recipe(variant, scale, stride)
                key = recipe_hash(recipe)
                if key not in seen:
                    seen.add(key)
                    name = f"x{scale:g}" + (f"/s{stride}" if stride is not None else "")
                    out.append(StudentCandidate(f"{label} {name}" if label else name, scale, stride, recipe))
    return out


@dataclass(frozen=True)
class Budget:
    """The search's latency budget: target_ms as given, or (speedup) the teacher's measured time / speedup."""
    target_ms: float | None
    speedup: float | None = None
    teacher_ms: float | None = None

    @property
    def ms(self) -> float:
        return self.target_ms if self.speedup is None else self.teacher_ms / self.speedup

    @property
    def setting(self) -> str:
        return "target_ms" if self.speedup is None else "target_speedup"

    def __str__(self) -> str:
        if self.speedup is None:
            return f"{self.target_ms:g} ms"
        return f"{self.ms:.4f} ms (the teacher's fp32 TFLite {self.teacher_ms:.4f} ms / {self.speedup:g})"

    def raise_to(self, fastest_ms: float) -> str:
        """What the budget would have to be for the fastest candidate to fit."""
        if self.speedup is None:
            return f"raise target_ms to at least {fastest_ms:.4f}"
        return f"lower target_speedup to at most {self.teacher_ms / fastest_ms:.2f}"


def choose(found: list[StudentCandidate], budget: Budget | float, over_budget: str = "error") -> StudentCandidate:
    """The candidate of most capacity whose measured latency is within the budget (a Budget, or target_ms); else
    (over_budget "fastest") the fastest candidate, or ("error") one error saying what the fastest takes and what to
    change."""
    budget = budget if isinstance(budget, Budget) else Budget(budget)
    fits = [c for c in found if c.latency_ms is not None and c.latency_ms <= budget.ms]
    if fits:
        return max(fits, key=lambda c: c.capacity)
    timed = [c for c in found if c.latency_ms is not None]
    fastest = min(timed, key=lambda c: c.latency_ms)
    if over_budget == "fastest":
        return fastest
    raise EdgemtlError(f"compress.student.{budget.setting}: no candidate student runs within {budget} on this "
                       f"machine; the fastest, {fastest.name} ({fastest.widths()}), takes {fastest.latency_ms:.4f} "
                       f"ms: {budget.raise_to(fastest.latency_ms)}, or make compress.student smaller "
                       "(preset tiny, fewer filters, stem_stride 2); the measurements stay in RUN/student_search.json "
                       f"and a compress with another {budget.setting} on this CPU reuses them")


@dataclass
class SearchResult:
    recipe: Recipe  # the chosen student's
    record: dict  # what RUN/student_search.json and compress.json hold
    candidates: list[StudentCandidate]  # the measured ones


def searched_student(run: RunDir, recipe: Recipe, data, student: Recipe,
                     teacher_params: Callable[[], int] | None = None) -> SearchResult | None:
    """The student compress trains: with compress.student.target_ms or target_speedup, the search's choice among
    the candidates smaller than the teacher, the run's teacher timed beside them; without either None (the recipe's
    student as it is, nothing measured)."""
    spec = recipe.compress.student
    if spec.target_ms is None and spec.target_speedup is None:
        return None
    limit = teacher_params() if teacher_params is not None else None
    return StudentSearch(run, recipe, data, student, teacher=True).run_search(
        spec.target_ms, keep=lambda c: limit is None or c.params < limit, speedup=spec.target_speedup,
        over_budget=spec.over_budget)


class StudentSearch:
    """Builds, converts and times the candidates of one recipe's student on one run's data."""

    def __init__(self, run: RunDir, recipe: Recipe, data, student: Recipe, precisions: tuple[str, ...] = (),
                 say: Callable[[str], None] | None = None, teacher: bool = False):
        """teacher: also time the run's teacher's fp32 TFLite file, side by side with the candidates (what a
        target_speedup budget divides, and the table's "x the teacher")."""
        self.run, self.recipe, self.data, self.student = run, recipe, data, student
        self.precisions = tuple(precisions) or timed_precisions(recipe)
        self.say = say or log.info
        self.teacher = teacher
        self.teacher_ms: float | None = None  # its median ms on the faster kernel set, once measured or reused

    def key(self, scales) -> str:
        """What the measurements depend on (the student's every key but the budget, the precisions, the widths and
        strides tried, the CPU): a stored search with the same key holds this search's measurements."""
        student = self.student.to_dict()
        for budget in ("target_ms", "target_speedup", "over_budget"):
            student["compress"]["student"].pop(budget, None)
        return recipe_hash({"student": student, "precisions": list(self.precisions), "scales": list(scales),
                            "strides": list(STRIDES), "cpu": describe_cpu(cpu_info())})

    def measure(self, found: list[StudentCandidate], keep: Callable[[StudentCandidate], bool]) -> list:
        """Every kept candidate's parameters, MFLOPs and latency (median ms of its fastest precision and kernel set);
        returns the kept ones (keep sees the parameters: compress drops those not smaller than the teacher)."""
        from ..bench.interleave import measure
        from ..export.convert import calibration_samples

        tasks = list(self.student.tasks)
        samples = calibration_samples(self.data["train"], tasks, CALIBRATION_ROWS, self.recipe.seed)
        folder = self.run.scratch("student-search")
        child = ConversionChild(folder / "worker.log")  # one for every candidate's int8: TensorFlow imported once
        try:
            built = [(c, self._build(c, folder / f"candidate-{i}.keras")) for i, c in enumerate(found)]
            dropped = [c.name for c, _ in built if not keep(c)]
            if dropped:
                self.say(f"compress: student search: {', '.join(dropped)} not smaller than the teacher: left out")
            built = [(c, model) for c, model in built if keep(c)]
            if not built:
                raise EdgemtlError("compress.student: every candidate student of the latency search has at least "
                                   "the teacher's parameters; make compress.student smaller (preset small or tiny)")
            paths = [self._convert(c, model, i, len(built), samples, folder, child)
                     for i, (c, model) in enumerate(built, 1)]
            self.say(f"compress: student search: timing {len(built)} candidates side by side "
                     f"({', '.join(self.precisions)} TFLite, one thread, batch 1, both LiteRT kernel sets)")
            targets = [{"name": f"{i} {p} {k}", "path": str(path), "kernels": k} for i, files in enumerate(paths)
                       for p, path in files.items() for k in KERNELS]
            if self.teacher:
                teacher = self._teacher_file(folder)
                targets += [{"name": f"teacher fp32 {k}", "path": str(teacher), "kernels": k} for k in KERNELS]
            latency = measure(targets, samples[0], workdir=folder)["latency"]
        finally:
            child.close()
            shutil.rmtree(folder, ignore_errors=True)
        if self.teacher:
            self.teacher_ms = round(min(latency[f"teacher fp32 {k}"]["median_ms"] for k in KERNELS), 5)
        for i, (c, _) in enumerate(built):
            c.files = {f"{p} {k}": round(latency[f"{i} {p} {k}"]["median_ms"], 5) for p in self.precisions
                       for k in KERNELS}
            fastest = min(c.files, key=c.files.get)
            c.precision, c.kernels = fastest.split()
            c.latency_ms = c.files[fastest]
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

    def _teacher_file(self, folder: Path) -> Path:
        """The run's teacher as the export converts it to fp32 TFLite (through RUN/cache: export reuses it)."""
        from ..artifacts import ArtifactId
        from ..export.convert import Converter

        out = folder / "teacher-fp32.tflite"
        with Converter(self.run, self.recipe, "teacher") as converter:
            shutil.copyfile(converter.convert(ArtifactId("teacher", "tflite", "fp32")), out)
        return out

    def _convert(self, c: StudentCandidate, model, i: int, n: int, samples, folder,
                 child: ConversionChild) -> dict[str, Path]:
        """The candidate's TFLite file per precision in folder, converted as the export converts (full int8 in the
        child)."""
        from ..artifacts import ArtifactId
        from ..export.convert import Converter

        start = time.monotonic()
        with Converter(self.run, self.recipe, f"student {c.name}", model, samples, model_path=c.source,
                       cache=False, child=child) as converter:
            files = {p: folder / f"candidate-{i}-{p}.tflite" for p in self.precisions}
            # int8 is sent to the child first: its calibration runs beside this process's float conversions
            converter.prepare([ArtifactId("student", "tflite", p) for p in files])
            for p, out in files.items():
                shutil.copyfile(converter.convert(ArtifactId("student", "tflite", p)), out)
        self.say(f"compress: student search {i}/{n}: {c.name} ({c.params:,} params, {c.mflops:.2f} MFLOPs): "
                 f"{', '.join(self.precisions)} TFLite in {time.monotonic() - start:.1f} s")
        return files

    def run_search(self, target_ms: float | None, scales=None,
                   keep: Callable[[StudentCandidate], bool] = lambda c: True,
                   speedup: float | None = None, over_budget: str = "error") -> SearchResult:
        """Measure (or reuse the stored measurements of the same key: same candidates, precisions and CPU, any
        target), store, choose and say the choice. The budget: target_ms, or (speedup given, with teacher) the
        teacher's time / speedup; over_budget: what choose() does when nothing is within it."""
        if speedup is not None and not self.teacher:
            raise ValueError("a speedup budget needs the teacher timed (StudentSearch(..., teacher=True))")
        scales = SCALES if scales is None else scales
        found = candidates(self.student, scales)
        key = self.key(scales)
        stored = _stored(self.run, key)
        if stored is not None and speedup is not None and stored.get("teacher_ms") is None:
            stored = None  # measured without the teacher beside them: a budget relative to it needs it timed too
        if stored is not None:
            self.teacher_ms = stored.get("teacher_ms")
            by_name = {c.name: c for c in found}
            found = [by_name[row["name"]] for row in stored["candidates"]]
            for c, row in zip(found, stored["candidates"]):
                c.params, c.mflops, c.latency_ms, c.precision, c.kernels, c.files = (
                    row["params"], row["mflops"], row["latency_ms"], row["precision"], row["kernels"], row["files"])
            self.say(f"compress: student search: reusing the measurements in {self.run.student_search} (made "
                     f"{stored['measured_at']} on this CPU; delete the file to measure again)")
        else:
            found = self.measure(found, keep)
        budget = Budget(target_ms, speedup, self.teacher_ms)
        record = self._record(found, budget, key, stored)
        atomic_write_json(self.run.student_search, record)  # kept when nothing fits: another target reuses it
        chosen = choose(found, budget, over_budget)
        record["chosen"] = chosen.name
        record["within_budget"] = chosen.latency_ms <= budget.ms
        for row in record["candidates"]:
            row["chosen"] = row["name"] == chosen.name
        atomic_write_json(self.run.student_search, record)
        self.say(self._choice_line(found, chosen, budget))
        return SearchResult(chosen.recipe, record, found)

    def _choice_line(self, found, chosen: StudentCandidate, budget: Budget) -> str:
        if chosen.latency_ms > budget.ms:
            return (f"compress: student search: no candidate runs within {budget}; the fastest, {chosen.name}, "
                    f"takes {chosen.latency_ms:.4f} ms ({_versus(chosen.latency_ms, budget)}) and is trained "
                    "(compress.student.over_budget: fastest)")
        bigger = [c for c in found if c.capacity > chosen.capacity]
        nxt = min(bigger, key=lambda c: c.capacity) if bigger else None
        return (f"compress: student search: {chosen.name} chosen, {chosen.latency_ms:.4f} ms <= {budget}"
                + (f" (the next larger, {nxt.name}, takes {nxt.latency_ms:.4f} ms)" if nxt else
                   " (the largest candidate)"))

    def _record(self, found, budget: Budget, key, stored) -> dict:
        return {"target_ms": budget.ms, "target_speedup": budget.speedup, "teacher_ms": self.teacher_ms,
                "precisions": list(self.precisions), "threads": 1, "batch": 1, "key": key,
                "measured_on": stored["measured_on"] if stored else describe_cpu(cpu_info()),
                "measured_at": stored["measured_at"] if stored else time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                                  time.gmtime()),
                "chosen": None,
                "candidates": [c.row(False) for c in sorted(found, key=lambda c: c.capacity)]}


def _versus(ms: float, budget: Budget) -> str:
    """How far a time over the budget is from it: the speedup it gives, or its ratio to target_ms."""
    if budget.speedup is not None:
        return f"{budget.teacher_ms / ms:.2f}x the teacher, not the {budget.speedup:g}x asked"
    return f"{ms / budget.ms:.2f}x the {budget.ms:g} ms asked"


def _stored(run: RunDir, key: str) -> dict | None:
    try:
        stored = json.loads(run.student_search.read_text())
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) and stored.get("key") == key else None


def search_table(record: dict) -> list[str]:
    """The compress.md lines of a search: what was measured and the table, smallest candidate first."""
    from ..reports.markdown import table

    teacher_ms = record.get("teacher_ms")

    def faster(ms):
        return "" if ms is None or not teacher_ms else f"{teacher_ms / ms:.1f}x"

    rows = [[c["name"], c["widths"], f"{c['params']:,}", f"{c['mflops']:.2f}",
             "" if c["latency_ms"] is None else f"{c['latency_ms']:.4f}",
             *([faster(c["latency_ms"])] if teacher_ms else []), c["precision"] or "", c["kernels"] or "",
             "**chosen**" if c["chosen"] else ""] for c in record["candidates"]]
    speedup = record.get("target_speedup")
    budget = (f"compress.student.target_speedup: {speedup:g}, a budget of the teacher's fp32 TFLite {teacher_ms:.4f} "
              f"ms / {speedup:g} = {record['target_ms']:.4f} ms" if speedup else
              f"compress.student.target_ms: {record['target_ms']:g} ms")
    beside = f"; the teacher's fp32 TFLite beside them: {teacher_ms:.4f} ms" if teacher_ms and not speedup else ""
    return ["", f"**Student search** ({budget}): candidate students "
                f"with random weights as {', '.join(record['precisions'])} TFLite, timed on {record['measured_on']} "
                "(one thread, batch 1, median of interleaved rounds; a candidate's time is its fastest file's, "
                f"precision and LiteRT kernel set{beside}); {_chosen_sentence(record)}", "",
            table(["candidate", "widths", "params", "MFLOPs", "ms", *(["x the teacher"] if teacher_ms else []),
                   "precision", "kernels", "chosen"], rows)]


def _chosen_sentence(record: dict) -> str:
    """The search table's verdict: the largest within the budget, or the fastest with how far it misses it."""
    if record.get("within_budget", True):
        return f"the student is the one with the most parameters within the budget: {record['chosen']}."
    row = next(c for c in record["candidates"] if c["chosen"])
    budget = Budget(record["target_ms"], record.get("target_speedup"), record.get("teacher_ms"))
    return (f"**no candidate is within the budget on this CPU**; compress.student.over_budget: fastest trained the "
            f"fastest, {record['chosen']} ({row['latency_ms']:.4f} ms, {_versus(row['latency_ms'], budget)}).")
