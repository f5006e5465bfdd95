"""The compression table: teacher, student from scratch, distilled, pruned and QAT side by side, per task; and the
int8 TFLite accuracy of quantization-aware training against post-training quantization of the same model."""
import numpy as np

from ..recipe.schema import Recipe, TaskSpec
from ..artifacts import ArtifactId
from ..export.convert import convert_model
from ..model_metrics import read_metrics
from ..rundir import RunDir
from ..compress.prune import gzip_size


def _metrics(run: RunDir, name: str) -> dict:
    return read_metrics(run, name, missing_ok=False)


def _task_metric(task: TaskSpec) -> str:
    return task.metrics[0]


def model_row(run: RunDir, recipe: Recipe, name: str, tasks: list) -> dict:
    m = _metrics(run, name)
    test = m.get("splits", {}).get("test", {})
    row = {"model": name, "params": m["params"], "sparsity": m.get("sparsity", {}).get("overall"),
           "tasks": {t.name: test.get(t.name, {}).get(_task_metric(t)) for t in tasks}}
    if name != "student-qat":  # a QAT model's float graph carries fake-quant ops: its size is the int8 one
        content = convert_model(run, recipe, ArtifactId(name, "tflite", "fp32"))
        row.update(tflite_bytes=len(content), gzip_bytes=gzip_size(content))
    return row


def int8_rows(run: RunDir, recipe: Recipe, data, base: str) -> list:
    """Full-int8 TFLite of `base` (post-training quantization) and of student-qat, scored on the test split.

    Audio front-ends stay in float in both, as export's fallback keeps them (log-mel ranges do not fit int8).
    """
    from ..export.run import trial

    keep = tuple(f"{i.name}_logmel" for i in recipe.inputs if i.type == "audio")
    out = []
    for name, method in ((base, "post-training int8"), ("student-qat", "quantization-aware int8")):
        tried = trial(run, recipe, data, ArtifactId(name, "tflite", "int8"), keep)
        size, packed = len(tried.model_bytes), gzip_size(tried.model_bytes)
        out.append({"model": name, "method": method, "kept_in_float": list(keep), "tflite_bytes": size, "gzip_bytes": packed,
                    "tasks": {n: r.artifact for n, r in tried.report.tasks.items()}})
    return out


def compression_table(run: RunDir, recipe: Recipe, data, models: list, qat_base) -> tuple[dict, str]:
    tasks = [t for t in recipe.tasks if not t.auxiliary]
    rows = [model_row(run, recipe, name, tasks) for name in models]
    int8 = int8_rows(run, recipe, data, qat_base) if qat_base else []
    names = [t.name for t in tasks]
    teacher = rows[0]
    lines = [f"# {recipe.name}: compression", "",
             "Test split; per task its first metric (" + ", ".join(f"{t.name}: {_task_metric(t)}" for t in tasks)
             + "). Sizes are the fp32 TFLite file and its gzip.", "",
             "| model | params | x smaller | sparsity | TFLite KB | gzip KB | " + " | ".join(names) + " | mean |",
             "|" + "---|" * (7 + len(names))]
    for r in rows:
        cells = [r["model"], f"{r['params']:,}", f"{teacher['params'] / r['params']:.1f}",
                 "" if r["sparsity"] is None else f"{r['sparsity']:.1%}",
                 _kb(r.get("tflite_bytes")), _kb(r.get("gzip_bytes"))]
        lines.append("| " + " | ".join(cells + _scores(r, names)) + " |")
    if int8:
        lines += ["", "Full-int8 TFLite of the same model, post-training quantized vs quantization-aware trained:", "",
                  "| model | int8 method | TFLite KB | gzip KB | " + " | ".join(names) + " | mean |",
                  "|" + "---|" * (5 + len(names))]
        for r in int8:
            lines.append("| " + " | ".join([r["model"], r["method"], _kb(r["tflite_bytes"]), _kb(r["gzip_bytes"])]
                                           + _scores(r, names)) + " |")
        ptq, qat = (_mean(r, names) for r in int8)
        verdict = "beats" if qat > ptq else "does NOT beat"
        lines += ["", f"Quantization-aware int8 {verdict} post-training int8 on the mean: {qat:.4f} vs {ptq:.4f} "
                      f"({(qat - ptq) * 100:+.2f} points)."]
    return {"models": rows, "int8": int8}, "\n".join(lines) + "\n"


def _mean(row: dict, names: list) -> float:
    values = [row["tasks"][n] for n in names if row["tasks"].get(n) is not None]
    return float(np.mean(values)) if values else float("nan")


def _scores(row: dict, names: list) -> list:
    return [("" if row["tasks"].get(n) is None else f"{row['tasks'][n]:.4f}") for n in names] + \
        [f"{_mean(row, names):.4f}"]


def _kb(n) -> str:
    return "" if n is None else f"{n / 1024:.1f}"
