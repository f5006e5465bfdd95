"""`edgemtl export`, the one entry point: every requested format x precision of one model, each converted
(convert.py, over the formats table), judged by the parity gate (gate.py) and written as a bundle (bundle.py).
compress and bench call the public functions here and in convert.py, never a converter's internals."""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass

from ..artifacts import ArtifactId
from ..errors import EdgemtlError
from ..names import INT8_PRECISIONS
from ..recipe.schema import Recipe
from ..reports.markdown import table
from ..rundir import RunDir, atomic_write_json
from ..runtime.manifest import Memory, ParityReport, Quantization, QuantParams
from . import gate
from .bundle import build_manifest, input_entry, output_entry, place_bundle
from .convert import (  # noqa: F401
    MIN_CALIBRATION_ROWS,
    Converter,
    calibration_rows,
    calibration_samples,
    conversion_error,
    convert_model,
    load_exported,
)
from .formats import FORMATS, plan  # noqa: F401  (plan: the CLI checks its flags with it)

log = logging.getLogger("edgemtl")


class ModelExport:
    """One model's export: its converter, its gate data, the verdict per converted file (the C array shares the
    int8 TFLite file already judged) and `worked` (format converted as -> the parts an int8 artifact needed in
    float), which the models of one export share. A context manager: the converter's scratch folder is removed."""

    def __init__(self, run: RunDir, recipe: Recipe, data, model_name: str, calibration_samples_n: int,
                 worked: dict | None = None):
        from .signature import input_specs

        self.run, self.recipe, self.data, self.model_name = run, recipe, data, model_name
        model = load_exported(run, recipe, model_name)
        self.gate = gate.gate_data(model, recipe, data)
        self.specs = input_specs(model)
        samples = calibration_samples(data["train"], list(self.gate.tasks), calibration_samples_n, recipe.seed)
        labels = json.dumps({t.name: data.labels[t.name].get("classes") for t in self.gate.tasks})
        self.reports: dict = {}  # converted file -> its ParityReport
        self.io: dict = {}  # converted TFLite file -> its I/O tensors' dtype and quantization, as the gate saw them
        self.memory: dict = {}  # converted micro file -> the arena and flash the gate measured in TFLite Micro
        self.worked = {} if worked is None else worked
        self.verdicts: dict = {}  # (artifact, the kept-in-float set its search started from) -> its verdict
        self.latest: dict = {}  # artifact -> its latest verdict, the one its bundle holds
        # (format, precision) -> the parts the precision search chose to keep in float for speed (search.py); unlike
        # `worked` (what accuracy needed) never handed to siblings: int8io needs its first op integer
        self.searched: dict[tuple[str, str], tuple[str, ...]] = {}
        self.selections: dict = {}  # format -> search.Recommendation
        # layer -> parameters: the float fallback tries the candidate keeping the fewest in float first
        self.weights = {x.name: int(x.count_params()) for x in model.layers}
        # last: its scratch folder exists from here on, and __exit__ (entered next) removes it even on a SIGTERM
        self.converter = Converter(run, recipe, model_name, model, samples, {"edgemtl.labels": labels})

    def __enter__(self) -> ModelExport:
        return self

    def __exit__(self, *exc) -> None:
        self.converter.close()

    def judge(self, path, precision: str, runtime: str | None = None) -> ParityReport:
        if path not in self.reports:
            self.reports[path] = gate.judge(path, precision, self.gate, self.io.setdefault(path, {}), runtime,
                                            self.memory.setdefault(path, {}))
        return self.reports[path]

    def verdict(self, aid: ArtifactId) -> gate.Verdict:
        """Convert and judge one artifact, with the float-fallback search; once per artifact and starting point
        (the C array then wraps the very file its int8io verdict judged)."""
        fmt = FORMATS[aid.format]
        # an int8 sibling that needed parts in float says the fully quantized model fails here too: start there
        start = self.worked.get(fmt.converts_as, ()) if aid.precision in INT8_PRECISIONS else ()
        searched = self.searched.get((aid.format, aid.precision))
        start = searched if searched is not None else start
        if (aid, start) not in self.verdicts:
            self.verdicts[aid, start] = self._verdict(aid, start, searched)
        self.latest[aid] = self.verdicts[aid, start]
        return self.latest[aid]

    def _verdict(self, aid: ArtifactId, start: tuple, searched) -> gate.Verdict:
        from ..models.layers import float_outputs

        fmt, cfg = FORMATS[aid.format], self.recipe.export
        # int8io promises integer outputs, and a label-unit (regression) output stays float32: no part kept in float
        # changes that, so no fallback is tried
        label_units = float_outputs(self.converter.model) if aid.precision == "int8io" else []

        def candidates(first):  # the dense heads over tolerance in the first verdict get candidates of their own
            return [] if label_units else gate.fallback_candidates(
                fmt, aid.precision, self.recipe.inputs, cfg.float_fallback, self.gate.tasks, self.weights,
                gate.over_tolerance(first, self.gate.tolerance))
        if fmt.gate_runtime:  # micro: judged in TFLite Micro
            def judge(path):
                return self.judge(path, aid.precision, fmt.gate_runtime)
        else:
            def judge(path):
                return self.judge(path, aid.precision)
        found = gate.search(lambda keep: self.converter.convert(aid, keep), judge, fmt, aid.precision, candidates,
                            start, cfg.float_fallback and not label_units,
                            lambda line: log.info(f"  {aid.name}: {line}"))
        if label_units and not found.report.deployable:
            found = dataclasses.replace(found, report=dataclasses.replace(found.report, reason=(
                f"{found.report.reason} (regression output {', '.join(label_units)} stays float32 in label units: "
                "export int8, with float I/O, for this model)")))
        if found.keep and found.report.deployable and aid.precision in INT8_PRECISIONS and searched is None:
            self.worked[fmt.converts_as] = found.keep
        return found

    def export_artifact(self, aid: ArtifactId) -> dict:
        """Convert, judge and bundle one artifact; its summary row. A C array wraps the int8io model when that one
        passes the gate (firmware feeds it integers), else the int8 one; its manifest says which."""
        wraps = None
        if FORMATS[aid.format].wraps:
            io_aid = ArtifactId(aid.model, FORMATS[aid.format].converts_as, "int8io")
            integer_io = self.latest.get(io_aid) or self.verdict(io_aid)  # the very file its bundle holds
            found, wraps = (integer_io, "int8io") if integer_io.report.deployable else (self.verdict(aid), "int8")
        else:
            found = self.verdict(aid)
        report = dataclasses.replace(found.report, reason=found.report.reason.replace(str(found.path), aid.name))
        chosen = self.selections.get(aid.format)
        selection = chosen.entry(aid, found.keep) if chosen is not None and not wraps else None
        where = self._bundle(aid, found.path, report, wraps, selection)
        memory = self._memory(aid, found.path)
        return {"artifact": aid.name, "size": found.path.stat().st_size, **report.to_dict(), "bundle": str(where),
                **({"memory": memory.to_dict()} if memory else {}),
                **({"recommended": selection["recommended"], "latency_ms": selection["latency_ms"],
                    "measured_on": selection["measured_on"]} if selection else {})}

    def search(self, artifacts: list[ArtifactId], walk: bool = True) -> None:
        """The precision search (search.py) over each searchable format's requested precisions, before any bundle
        is written: its choice of int8 variant is what the int8 bundle holds, its recommendation goes in every
        manifest of the format."""
        from .search import PrecisionSearch, searchable

        finder = PrecisionSearch(self, self.recipe.export.target)
        for fmt in dict.fromkeys(a.format for a in artifacts):
            if searchable(fmt):
                self.selections[fmt] = finder.run(fmt, [a.precision for a in artifacts if a.format == fmt],
                                                  walk and self.recipe.export.search)

    def _memory(self, aid: ArtifactId, path) -> Memory | None:
        """Micro bundles: the arena TFLite Micro ran the file in, the flash its model takes, the ops it needs."""
        measured = self.memory.get(path)
        if not measured:
            return None
        from .micro import ops_used

        return Memory(arena_bytes=measured["arena_bytes"], flash_bytes=measured["flash_bytes"],
                      ops=ops_used(path.read_bytes()), measured_by=measured["measured_by"])

    def _bundle(self, aid: ArtifactId, path, report: ParityReport, wraps: str | None = None,
                selection: dict | None = None):
        fmt = FORMATS[aid.format]
        model_bytes = path.read_bytes()
        files = {fmt.model_file: model_bytes}
        package = fmt.load_package()
        if package is not None:
            files.update(package(model_bytes, self.converter.workdir / f"package-{aid.name}"))
        inputs = {i.name: i for i in self.recipe.inputs}
        manifest = build_manifest(
            self.run, self.recipe, aid, fmt.model_file,
            [input_entry(inputs[name], spec) for name, spec in self.specs.items() if name in inputs],
            [output_entry(t, self.data.labels[t.name]) for t in self.gate.tasks],
            self._quantization(aid, path, report, wraps), report, self._memory(aid, path), selection)
        return place_bundle(self.run, aid, files, manifest, report)

    def _quantization(self, aid: ArtifactId, path, report: ParityReport, wraps: str | None) -> Quantization:
        io = None
        integer_io = "int8io" in (aid.precision, wraps) or FORMATS[aid.format].gate_runtime == "tflm"
        if integer_io and self.io.get(path):  # read by the gate's child, not loaded here
            io = {n: QuantParams(d["dtype"], d["scale"], d["zero_point"]) for n, d in self.io[path].items()}
        return Quantization(aid.precision, tuple(report.kept_in_float),
                            len(self.converter.samples) if aid.precision in INT8_PRECISIONS else None, io, wraps)


@dataclass(frozen=True)
class Trial:
    """A conversion judged by the gate, no bundle written (compress's PTQ-vs-QAT table)."""
    model_bytes: bytes
    report: ParityReport


def trial(run: RunDir, recipe: Recipe, data, aid: ArtifactId, keep_float: tuple[str, ...] = ()) -> Trial:
    """Convert one artifact keeping `keep_float` in float and judge it; full-int8 files go through RUN/cache/, so a
    later export of the same model reuses them."""
    with ModelExport(run, recipe, data, aid.model, recipe.export.calibration_samples) as session:
        path = session.converter.convert(aid, tuple(keep_float))
        return Trial(path.read_bytes(), session.judge(path, aid.precision))


def export_model(run: RunDir, recipe: Recipe, data, model_name: str, formats, precisions, calibration_samples,
                 worked=None) -> list:
    """Export one model; worked (format converted as -> parts kept in float) is shared by the models of one
    export. Writes RUN/exports/<model>-summary.json: one row per artifact, deployable or not."""
    from ..progress import Progress

    artifacts = plan(model_name, formats, precisions)
    if run.model_file(model_name) == run.qat_weights_file(model_name):  # quantization-aware: its target is int8
        dropped = [a for a in artifacts if a.precision not in INT8_PRECISIONS or a.format == "onnx"]
        artifacts = [a for a in artifacts if a not in dropped]
        if dropped:
            log.info(f"{model_name} is quantization-aware: exported as TFLite / C int8 only (its float graph "
                     f"carries fake-quant ops); skipped {', '.join(f'{a.format}-{a.precision}' for a in dropped)}")
    rows = []
    qat = run.model_file(model_name) == run.qat_weights_file(model_name)
    with ModelExport(run, recipe, data, model_name, calibration_samples, worked) as session:
        session.converter.prepare(artifacts, session.worked.get("tflite", ()))  # what int8 will start from
        if recipe.export.target != "none":
            try:
                session.search(artifacts, walk=not qat)  # a QAT graph's fake-quant ops decide its int8 ranges
            except EdgemtlError as e:  # the export still writes every bundle; the table says nothing was chosen
                log.warning(f"  {model_name}: precision search stopped: {e.messages[0]}")
        bar = Progress(len(artifacts), "export", min_interval=0.0)
        for aid in artifacts:
            try:
                rows.append(session.export_artifact(aid))
            except EdgemtlError as e:
                rows.append({"artifact": aid.name, "size": 0, "deployable": False, "reason": e.messages[0],
                             "tasks": {}, "kept_in_float": []})
            bar.update()
            log.info(f"  {rows[-1]['artifact']}: {'ok' if rows[-1]['deployable'] else 'NOT deployable'}")
    bar.close()
    atomic_write_json(run.export_summary(model_name), rows)
    return rows


def format_table(rows: list, tasks: list) -> str:
    names = [t.name for t in tasks if not t.auxiliary]
    memory = any(r.get("memory") for r in rows)  # micro artifacts: arena and flash measured in TFLite Micro
    timed = any(r.get("latency_ms") is not None for r in rows)  # the precision search's side-by-side medians
    body = []
    for r in rows:
        deltas = [_delta(r["tasks"][n].get("drop")) if n in r.get("tasks", {}) else "" for n in names]
        verdict = "pass" if r["deployable"] else f"FAIL: {r['reason'][:80]}"
        keep = ", ".join(r.get("kept_in_float") or []) or "-"
        mem = r.get("memory") or {}
        figures = [f"{mem['arena_bytes'] / 1024:.1f}" if mem else "-",
                   f"{mem['flash_bytes'] / 1024:.1f}" if mem else "-"] if memory else []
        speed = [f"{r['latency_ms']:.4f}" if r.get("latency_ms") is not None else "-",
                 "**recommended**" if r.get("recommended") else ""] if timed else []
        body.append([r["artifact"], f"{r['size'] / 1024:.1f}", *figures, *speed, verdict, keep, *deltas])
    head = ["artifact", "size KB", *(["arena KB", "flash KB"] if memory else []),
            *(["ms (1 thread)", "choice"] if timed else []), "parity", "kept in float"]
    text = table([*head, *(f"{n} Δ" for n in names)], body)
    cpu = next((r["measured_on"] for r in rows if r.get("measured_on")), None)
    if timed and cpu:
        text += (f"\n\nms: median per batch-1 call, one thread, every deployable candidate of a format timed side by "
                 f"side on {cpu}; choice: the format's recommended bundle (export.target)")
    return text


def _delta(drop) -> str:
    """The change of a task's metric in points (a drop not measured, written as null, shows as n/a)."""
    return "n/a" if drop is None else f"{0.0 - drop * 100 + 0.0:+.2f}"


def summary_rows(run: RunDir, models) -> dict[str, list]:
    """The last export's rows of each model (RUN/exports/<model>-summary.json); a model never exported has none."""
    from .. import jsonio

    out = {}
    for m in models:
        path = run.export_summary(m)
        out[m] = jsonio.read(path, "export summary") if path.exists() else []
    return out


def require_deployable(run: RunDir, models, table: str | None = None) -> None:
    """`edgemtl export`'s verdict: NotDeployableError (exit 3) listing every requested artifact that failed."""
    from ..errors import NotDeployableError

    failed = [r for rows in summary_rows(run, models).values() for r in rows if not r["deployable"]]
    if failed:
        raise NotDeployableError(*[f"{r['artifact']}: not deployable: {r['reason']} (kept apart in "
                                   f"{run.rejected.name}/)" if r.get("size") else
                                   f"{r['artifact']}: not deployable: {r['reason']}" for r in failed],
                                 output=table)


def deployable_summary(run: RunDir, models) -> tuple[str, list[str]]:
    """(one line naming what is deployable and what is not, the requested models without a deployable artifact)."""
    rows = summary_rows(run, models)
    good = [r["artifact"] for m in models for r in rows[m] if r["deployable"]]
    bad = [r["artifact"] for m in models for r in rows[m] if not r["deployable"]]
    missing = [m for m in models if not any(r["deployable"] for r in rows[m])]
    line = f"deployable: {', '.join(good) or 'none'}"
    if bad:
        line += f"; not deployable: {', '.join(bad)}"
    return line, missing
