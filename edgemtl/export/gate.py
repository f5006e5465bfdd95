"""The parity gate around one model: the Keras reference outputs on the test split, the recipe's tolerances, the
verdict on a converted file (export/parity.py scores it), and the float-fallback search for a reduced precision
that fails it."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import kinds
from ..data.media import in_memory
from ..errors import EdgemtlError
from ..presence import has_patterns, patterns
from ..recipe.schema import Recipe, TaskSpec
from ..runtime.manifest import KERNELS, ParityReport, RuntimeConfig, TaskParity
from . import parity
from .formats import Format

_TASK_FIELDS = [f.name for f in dataclasses.fields(TaskParity)]
TFLM_NOTE = ("verified in TFLite Micro (the tflite-micro interpreter, one row per invoke); LiteRT opens the same file "
             "for desktop use, with answers the gate did not compare bit for bit")
_SHORT = {"tflite": "TFLite", "onnx": "ONNX"}  # how a "no fallback" note names the format converted as


@dataclass(frozen=True)
class GateData:
    """What every verdict on one model compares against."""
    x: Mapping
    y: Mapping
    reference: Mapping  # the Keras model's outputs on x, by task
    tasks: tuple[TaskSpec, ...]
    labels: Mapping  # preprocess/labels.json entries, by task
    tolerance: Mapping[str, float]  # allowed metric drop per task (reduced precisions)
    patterns: object = None  # the presence pattern of every test row (optional inputs), else None


def gate_data(model, recipe: Recipe, data) -> GateData:
    """Predict the test split once with the exported Keras model; tolerances from the recipe's export section."""
    tasks = tuple(t for t in recipe.tasks if t.name in model.output_names)
    test = data["test"]
    cfg = recipe.export
    x = in_memory(test.x)  # the converted files are fed arrays, row by row
    return GateData(x=x, y=test.y, reference=model.predict(x, batch_size=256, verbose=0), tasks=tasks,
                    labels=data.labels, tolerance={t.name: cfg.tolerance.get(t.name, cfg.default_tolerance)
                                                   for t in tasks},
                    patterns=patterns(x, [i.name for i in recipe.inputs]) if has_patterns(x) else None)


def judge(path: Path, precision: str, gate: GateData, io: dict | None = None, runtime: str | None = None,
          memory: dict | None = None) -> ParityReport:
    """The verdict on one converted file, run in a child process on the runtime configuration it records (the
    report's `runtime`). io: filled with the file's integer I/O parameters by name (TFLite), when given. runtime:
    "tflm" runs it in TFLite Micro; memory: filled with the arena it measured there."""
    verdict = parity.check(path, precision, gate.x, gate.y, gate.reference, list(gate.tasks), gate.labels,
                           dict(gate.tolerance), patterns=gate.patterns, runtime=runtime)
    if memory is not None and verdict.get("memory"):
        memory.update(verdict["memory"])
    tasks = {name: TaskParity(**{k: row.get(k) for k in _TASK_FIELDS}) for name, row in verdict["tasks"].items()}
    if io is not None and verdict.get("io"):
        io.update(verdict["io"])
    return ParityReport(deployable=bool(verdict["deployable"]), reason=verdict["reason"], tasks=tasks,
                        rows=verdict.get("rows"), outputs_digest=verdict.get("outputs_digest"),
                        runtime=runtime_config(verdict["runtime"]), null_reasons=verdict.get("null_reasons") or {},
                        patterns=verdict.get("patterns") or {})


def runtime_config(measured: dict) -> RuntimeConfig:
    """The configuration the gate ran on, as the manifest names it (with the CPU a kernel choice was timed on)."""
    from ..env_info import cpu_info, describe_cpu

    timings = measured.get("timings_ms")
    kernels = measured.get("kernels")
    return RuntimeConfig(kernels=kernels if kernels in KERNELS else None, threads=measured.get("threads", 1),
                         graph_optimization=measured.get("graph_optimization"), provider=measured.get("provider"),
                         chosen_by="measured" if timings else "default",
                         measured_on=describe_cpu(cpu_info()) if timings else None, timings_ms=timings,
                         note=TFLM_NOTE if measured.get("runtime") == "tflm" else "")


def fallback_candidates(fmt: Format, precision: str, inputs, float_fallback: bool, tasks=(),
                        weights: Mapping[str, int] | None = None, failing: tuple[str, ...] = ()
                        ) -> list[tuple[str, ...]]:
    """Parts to keep in float, tried in order: every input-side choice (nothing, an audio front-end, one encoder,
    all encoders) crossed with every output-side choice (nothing; the dense heads over tolerance, `failing`, when
    they are some of the dense heads; every dense head with its decoder and gate; everything after the encoders:
    fusion, trunk and every head), minus the one that keeps the whole model in float. Each is a conversion and a
    gate: at most (1 + input-side choices) x (1 + output-side choices) - 2, so 13 for one image and one audio input
    with dense heads (18 when some of them failed), 8 without. weights (layer name -> parameter count): ordered by
    the parameters kept in float, fewest first (ties in the order above), so the first that passes is the most
    integer one. None where the format cannot keep parts in float (TFLite fp16 and dynamic-range)."""
    if not float_fallback or not fmt.can_keep_float(precision):
        return []
    fronts = [parts for i in inputs if (parts := kinds.modality(i.type).float_parts(i))]
    encoders = [(f"{i.name}_",) for i in inputs]
    every_encoder = tuple(p for e in encoders for p in e)
    input_side = fronts + ([tuple(p for f in fronts for p in f)] if len(fronts) > 1 else []) + encoders
    input_side += [every_encoder] if len(inputs) > 1 else []
    output_side = []
    if tasks:
        dense = tuple(t.name for t in tasks if kinds.task_kind(t.type).dense)
        over = tuple(name for name in dense if name in failing)
        output_side = ([over] if over and over != dense else []) + ([dense] if dense else [])
        output_side += [("fusion_", "trunk_", *(t.name for t in tasks))]
    out: list[tuple[str, ...]] = []
    for t, tail in enumerate([(), *output_side]):
        for head in [(), *input_side]:
            keep = tuple(dict.fromkeys(head + tail))
            whole = t == len(output_side) > 0 and set(every_encoder) <= set(head)  # the whole model in float
            if keep and keep not in out and not whole:
                out.append(keep)
    if weights is not None:
        out.sort(key=lambda keep: float_parameters(keep, weights))  # stable: ties keep the order above
    return out


def over_tolerance(report: ParityReport, tolerance: Mapping[str, float]) -> tuple[str, ...]:
    """The tasks whose metric dropped by more than their tolerance in this verdict."""
    return tuple(name for name, t in report.tasks.items()
                 if t.drop is not None and t.drop > tolerance.get(name, 0.01) + 1e-12)


def float_parameters(keep: tuple[str, ...], weights: Mapping[str, int]) -> int:
    """The parameters of the layers a candidate keeps in float (names starting with one of its prefixes)."""
    return sum(n for name, n in weights.items() if name.startswith(keep))


@dataclass(frozen=True)
class Verdict:
    path: Path  # the converted file judged last (the one to bundle)
    report: ParityReport  # with kept_in_float and fallback_tried set
    keep: tuple[str, ...]  # the parts kept in float


def search(convert: Callable[[tuple], Path], judge_file: Callable[[Path], ParityReport], fmt: Format,
           precision: str, candidates: list[tuple[str, ...]] | Callable[[ParityReport], list[tuple[str, ...]]],
           start: tuple[str, ...] = (), float_fallback: bool = True,
           say: Callable[[str], None] | None = None) -> Verdict:
    """Judge the conversion keeping `start` in float; if it fails at a reduced precision, try each candidate in turn
    and keep the first that passes. candidates: a list, or made from the first verdict (which tasks failed). A
    candidate the converter cannot keep in float is skipped. say: one line per candidate tried (each is a
    conversion and a gate)."""
    keep = tuple(start)
    path = convert(keep)
    report, tried, skipped = judge_file(path), [keep] if keep else [], []
    if callable(candidates):
        candidates = candidates(report) if not report.deployable and precision != "fp32" else []
    if not report.deployable and precision != "fp32":
        todo = [c for c in candidates if c != keep]
        for i, keep_try in enumerate(todo, 1):
            if say is not None:
                say(f"not deployable; fallback {i}/{len(todo)}: {', '.join(keep_try)} in float")
            tried.append(keep_try)
            try:
                retry_path = convert(keep_try)
            except EdgemtlError as e:  # this part cannot stay in float for this format: try the next one
                skipped.append(e.messages[0] if e.messages else str(e))
                continue
            retry = judge_file(retry_path)
            if retry.deployable:
                path, report, keep = retry_path, retry, keep_try
                break
        if skipped and not report.deployable:  # say why a fallback that might have passed was not judged
            report = dataclasses.replace(report, reason=f"{report.reason} (fallback not tried: {'; '.join(skipped)})")
        if not candidates and float_fallback:
            report = dataclasses.replace(report, reason=f"{report.reason} ({_SHORT.get(fmt.converts_as, fmt.name)} "
                                                        f"{precision} cannot keep parts in float: no fallback to try)")
    return Verdict(path, dataclasses.replace(report, kept_in_float=keep, fallback_tried=tuple(tried)), keep)
