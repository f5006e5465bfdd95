"""`edgemtl export`, the one entry point: every requested format x precision of one model, each converted
(convert.py, over the formats table), judged by the parity gate (gate.py) and written as a bundle (bundle.py).
compress and bench call the public functions here and in convert.py, never a converter's internals."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from ..artifacts import ArtifactId
from ..errors import EdgemtlError
from ..names import INT8_PRECISIONS
from ..reports.markdown import table
from ..recipe.schema import Recipe
from ..rundir import RunDir, atomic_write_json
from ..runtime.manifest import ParityReport, QuantParams, Quantization
from . import gate
from .bundle import build_manifest, input_entry, output_entry, write_bundle
from .convert import (MIN_CALIBRATION_ROWS, Converter, calibration_rows, calibration_samples,  # noqa: F401
                      conversion_error, convert_model, load_exported)
from .formats import FORMATS, plan  # noqa: F401  (plan: the CLI checks its flags with it)


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
        self.converter = Converter(run, recipe, model_name, model, samples, {"edgemtl.labels": labels})
        self.reports: dict = {}  # converted file -> its ParityReport
        self.worked = {} if worked is None else worked

    def __enter__(self) -> ModelExport:
        return self

    def __exit__(self, *exc) -> None:
        self.converter.close()

    def judge(self, path, precision: str) -> ParityReport:
        if path not in self.reports:
            self.reports[path] = gate.judge(path, precision, self.gate)
        return self.reports[path]

    def verdict(self, aid: ArtifactId) -> gate.Verdict:
        """Convert and judge one artifact, with the float-fallback search."""
        fmt, cfg = FORMATS[aid.format], self.recipe.export
        # an int8 sibling that needed parts in float says the fully quantized model fails here too: start there
        start = self.worked.get(fmt.converts_as, ()) if aid.precision in INT8_PRECISIONS else ()
        candidates = gate.fallback_candidates(fmt, aid.precision, self.recipe.inputs, cfg.float_fallback,
                                              self.gate.tasks)
        found = gate.search(lambda keep: self.converter.convert(aid, keep),
                            lambda path: self.judge(path, aid.precision), fmt, aid.precision, candidates, start,
                            cfg.float_fallback)
        if found.keep and found.report.deployable and aid.precision in INT8_PRECISIONS:
            self.worked[fmt.converts_as] = found.keep
        return found

    def export_artifact(self, aid: ArtifactId) -> dict:
        """Convert, judge and bundle one artifact; its summary row."""
        import dataclasses

        found = self.verdict(aid)
        report = dataclasses.replace(found.report, reason=found.report.reason.replace(str(found.path), aid.name))
        self._bundle(aid, found.path, report)
        return {"artifact": aid.name, "size": found.path.stat().st_size, **report.to_dict()}

    def _bundle(self, aid: ArtifactId, path, report: ParityReport) -> None:
        fmt = FORMATS[aid.format]
        model_bytes = path.read_bytes()
        files = {fmt.model_file: model_bytes}
        package = fmt.load_package()
        if package is not None:
            files.update(package(model_bytes, self.converter.workdir / f"package-{aid.name}"))
        inputs = {i.name: i for i in self.recipe.inputs}
        manifest = build_manifest(
            self.run, self.recipe, aid, fmt.model_file,
            [input_entry(inputs[name], spec) for name, spec in self.specs.items()],
            [output_entry(t, self.data.labels[t.name]) for t in self.gate.tasks],
            self._quantization(aid, path, report), report)
        write_bundle(self.run.bundle_dir(aid), files, manifest, report, self.run)

    def _quantization(self, aid: ArtifactId, path, report: ParityReport) -> Quantization:
        io = None
        if FORMATS[aid.format].converts_as == "tflite" and aid.precision == "int8io":
            from ..runtime.backends import LiteRTRunner

            runner = LiteRTRunner(path)
            io = {n: QuantParams(d["dtype"].__name__, float(d["quantization"][0]), int(d["quantization"][1]))
                  for n, d in {**runner.inputs, **runner.outputs}.items()}
        return Quantization(aid.precision, tuple(report.kept_in_float),
                            len(self.converter.samples) if aid.precision in INT8_PRECISIONS else None, io)


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
            print(f"{model_name} is quantization-aware: exported as TFLite / C int8 only (its float graph carries "
                  f"fake-quant ops); skipped {', '.join(f'{a.format}-{a.precision}' for a in dropped)}",
                  file=sys.stderr)
    rows = []
    bar = Progress(len(artifacts), "export", min_interval=0.0)
    with ModelExport(run, recipe, data, model_name, calibration_samples, worked) as session:
        for aid in artifacts:
            try:
                rows.append(session.export_artifact(aid))
            except EdgemtlError as e:
                rows.append({"artifact": aid.name, "size": 0, "deployable": False, "reason": e.messages[0],
                             "tasks": {}, "kept_in_float": []})
            bar.update()
            print(f"  {rows[-1]['artifact']}: {'ok' if rows[-1]['deployable'] else 'NOT deployable'}",
                  file=sys.stderr)
    bar.close()
    atomic_write_json(run.export_summary(model_name), rows)
    return rows


def format_table(rows: list, tasks: list) -> str:
    names = [t.name for t in tasks if not t.auxiliary]
    body = []
    for r in rows:
        deltas = [_delta(r["tasks"][n].get("drop")) if n in r.get("tasks", {}) else "" for n in names]
        verdict = "pass" if r["deployable"] else f"FAIL: {r['reason'][:80]}"
        keep = ", ".join(r.get("kept_in_float") or []) or "-"
        body.append([r["artifact"], f"{r['size'] / 1024:.1f}", verdict, keep, *deltas])
    return table(["artifact", "size KB", "parity", "kept in float", *(f"{n} Δ" for n in names)], body)


def _delta(drop) -> str:
    """The change of a task's metric in points (a drop not measured, written as null, shows as n/a)."""
    return "n/a" if drop is None else f"{0.0 - drop * 100 + 0.0:+.2f}"
