"""The compression table: teacher, student from scratch, distilled, pruned and QAT side by side, per task; and the
int8 TFLite accuracy of quantization-aware training against post-training quantization of the same model."""
from .. import kinds
from ..artifacts import ArtifactId
from ..compress.prune import gzip_size
from ..export.convert import convert_model
from ..kinds import mean_score, task_kind
from ..model_metrics import read_metrics
from ..recipe.schema import Recipe
from ..rundir import RunDir
from .markdown import table
from .scores import mean_cell, raw_cell, score_name


def _metrics(run: RunDir, name: str) -> dict:
    return read_metrics(run, name, missing_ok=False)


def model_row(run: RunDir, recipe: Recipe, name: str, tasks: list) -> dict:
    m = _metrics(run, name)
    test = m.get("splits", {}).get("test", {})
    row = {"model": name, "params": m["params"], "sparsity": m.get("sparsity", {}).get("overall"),
           "tasks": {t.name: test.get(t.name) for t in tasks}}  # each task's metrics: raw values and "score"
    by_pattern = (m.get("patterns") or {}).get("test")
    if by_pattern:  # optional inputs: each presence pattern's test rows and per-task metrics
        row["patterns"] = {p: {"rows": v.get("rows"), "tasks": {t.name: v.get(t.name) for t in tasks}}
                           for p, v in by_pattern.items()}
    if name != "student-qat":  # a QAT model's float graph carries fake-quant ops: its size is the int8 one
        content = convert_model(run, recipe, ArtifactId(name, "tflite", "fp32"))
        row.update(tflite_bytes=len(content), gzip_bytes=gzip_size(content))
    return row


def int8_rows(run: RunDir, recipe: Recipe, data, base: str) -> list:
    """Full-int8 TFLite of `base` (post-training quantization) and of student-qat, scored on the test split.

    Audio front-ends stay in float in both, as export's fallback keeps them (log-mel ranges do not fit int8).
    """
    from ..export.run import trial

    keep = tuple(p for i in recipe.inputs for p in kinds.modality(i.type).float_parts(i))
    out = []
    for name, method in ((base, "post-training int8"), ("student-qat", "quantization-aware int8")):
        tried = trial(run, recipe, data, ArtifactId(name, "tflite", "int8"), keep)
        size, packed = len(tried.model_bytes), gzip_size(tried.model_bytes)
        out.append({"model": name, "method": method, "kept_in_float": list(keep), "tflite_bytes": size,
                    "gzip_bytes": packed, "deployable": tried.report.deployable, "reason": tried.report.reason,
                    "tasks": {n: _artifact_metrics(recipe.task(n), r, data.labels[n], tried.report.rows)
                              for n, r in tried.report.tasks.items()}})
    return out


def _artifact_metrics(task, row, label_info: dict, rows: int | None) -> dict:
    """A parity row (TaskParity) as a task's metrics: its raw metric and the normalised score by the task's kind
    (None where the artifact's metric was not measurable)."""
    if row.artifact is None:
        return {row.metric: None, "score": None, "n": rows}
    score = task_kind(task.type).normalised({row.metric: row.artifact}, label_info.get("std", 1.0))
    return {row.metric: row.artifact, "score": score, "n": rows}


def int8_verdict(int8: list) -> dict:
    """Which int8 student is handed on: quantization-aware int8 when it passes the gate and scores at least as well
    as post-training int8 of its base; else the base (post-training quantized), so the deployed student is never
    worse than PTQ. {"model", "method", "why"}."""
    (ptq, _), (qat, _) = (mean_score(r["tasks"]) for r in int8)
    ptq_row, qat_row = int8
    if not qat_row["deployable"]:
        why = f"quantization-aware int8 fails the gate ({qat_row['reason']})"
    elif qat is None or ptq is None:
        why = None if ptq is None else "quantization-aware int8 has no scored task"
    elif qat < ptq:
        why = f"quantization-aware int8 loses to post-training int8 ({qat:.4f} vs {ptq:.4f})"
    else:
        why = None
    if why is None:
        return {"model": qat_row["model"], "method": qat_row["method"], "why": "it passes the gate and is not worse "
                "than post-training int8" + (f" ({qat:.4f} vs {ptq:.4f})" if qat is not None and ptq is not None
                                             else "")}
    if not ptq_row["deployable"]:
        why += f"; post-training int8 fails the gate too ({ptq_row['reason']})"
    return {"model": ptq_row["model"], "method": ptq_row["method"], "why": why}


def compression_table(run: RunDir, recipe: Recipe, data, models: list, qat_base) -> tuple[dict, str]:
    """The comparison of the compressed models: each task shows its raw primary metric (MAE for regression); the
    mean column, the QAT-vs-PTQ verdict and its delta use the normalised scores only."""
    tasks = [t for t in recipe.tasks if not t.auxiliary]
    rows = [model_row(run, recipe, name, tasks) for name in models]
    int8 = int8_rows(run, recipe, data, qat_base) if qat_base else []
    names = [t.name for t in tasks]
    teacher = rows[0]
    notes = []
    body = []
    for r in rows:
        cells = [r["model"], f"{r['params']:,}", f"{teacher['params'] / r['params']:.1f}",
                 "" if r["sparsity"] is None else f"{r['sparsity']:.1%}",
                 _kb(r.get("tflite_bytes")), _kb(r.get("gzip_bytes"))]
        body.append(cells + _scores(r, tasks, notes))
    lines = [f"# {recipe.name}: compression", "",
             "Test split; per task its primary metric (" + ", ".join(
                 f"{t.name}: {task_kind(t.type).primary_metric}" for t in tasks)
             + f"); mean: the mean {score_name(tasks)}. Sizes are the fp32 TFLite file and its gzip.", "",
             table(["model", "params", "x smaller", "sparsity", "TFLite KB", "gzip KB", *names, "mean"], body)]
    lines += _pattern_lines(rows, tasks)
    if int8:
        body = [[r["model"], r["method"], _kb(r["tflite_bytes"]), _kb(r["gzip_bytes"])] + _scores(r, tasks, notes)
                for r in int8]
        lines += ["", "Full-int8 TFLite of the same model, post-training quantized vs quantization-aware trained:", "",
                  table(["model", "int8 method", "TFLite KB", "gzip KB", *names, "mean"], body)]
        (ptq, _), (qat, _) = (mean_score(r["tasks"]) for r in int8)
        if ptq is None or qat is None:
            lines += ["", "Quantization-aware vs post-training int8: no comparison, a side has no scored task."]
        else:
            verdict = "beats" if qat > ptq else "does NOT beat"
            lines += ["", f"Quantization-aware int8 {verdict} post-training int8 on the mean normalised score: "
                          f"{qat:.4f} vs {ptq:.4f} ({(qat - ptq) * 100:+.2f} points)."]
        for r in int8:
            if not r["deployable"]:
                lines += ["", f"{r['model']} {r['method']} is NOT deployable: {r['reason']}"]
        handed = int8_verdict(int8)
        handed["instead_of"] = None if handed["model"] == int8[1]["model"] else int8[1]["model"]
        if handed["instead_of"]:
            lines += ["", f"**Hand-over:** the deployed int8 student is {handed['model']} ({handed['method']}), not "
                          f"{handed['instead_of']}: {handed['why']}. Export and bench use {handed['model']} where "
                          f"export.model names {handed['instead_of']}."]
        else:
            lines += ["", f"The deployed int8 student is {handed['model']}: {handed['why']}."]
        lost = _lost_sparsity(rows)
        if lost:
            lines += ["", lost]
    else:
        handed = None
    lines += [f"\nMean: {note}." for note in dict.fromkeys(notes)]
    return {"models": rows, "int8": int8, "deployed_int8": handed}, "\n".join(lines) + "\n"


def _pattern_lines(rows: list, tasks: list) -> list[str]:
    """Optional inputs: every model's mean score on the test rows of each presence pattern (e.g. with and without
    the photo), so a student that only learned the rows with a photo shows."""
    patterns = list(dict.fromkeys(p for r in rows for p in r.get("patterns") or {}))
    if not patterns:
        return []
    counts = {p: next(r["patterns"][p]["rows"] for r in rows if p in (r.get("patterns") or {})) for p in patterns}
    body = [[r["model"], *(mean_cell((r.get("patterns") or {}).get(p, {}).get("tasks") or {})[0] for p in patterns)]
            for r in rows]
    return ["", f"Per presence pattern (optional inputs), the mean {score_name(tasks)} on the test rows of each:", "",
            table(["model", *(f"{p} ({counts[p]} rows)" for p in patterns)], body)]


def _lost_sparsity(rows: list) -> str:
    """A sentence where quantization-aware training lost sparsity its pruned base had (more than 1 point)."""
    by_name = {r["model"]: r for r in rows}
    pruned, qat = by_name.get("student-pruned"), by_name.get("student-qat")
    if not pruned or not qat or pruned["sparsity"] is None:
        return ""
    kept = qat["sparsity"] or 0.0
    if kept >= pruned["sparsity"] - 0.01:
        return f"Quantization-aware training kept the pruned sparsity ({kept:.1%} of {pruned['sparsity']:.1%})."
    return f"Quantization-aware training LOST sparsity: {kept:.1%} left of the pruned {pruned['sparsity']:.1%}."


def _scores(row: dict, tasks: list, notes: list) -> list:
    """The task cells (raw) and the mean cell (normalised); a note where a task was left out of the mean."""
    mean, note = mean_cell(row["tasks"])
    if note:
        notes.append(note)
    return [raw_cell(t, row["tasks"].get(t.name)) for t in tasks] + [mean]


def _kb(n) -> str:
    return "" if n is None else f"{n / 1024:.1f}"
