"""RUN/report.html: the one page of a run. Results per task (with the single-task models and Δm where present),
confusion matrices and per-class metrics, training curves, the compression table, every exported artifact with its
parity verdict, the benchmark and the Pareto plot; CSS and plots inline (SVG), nothing fetched.

It reads only the run directory's files (metrics.json, history.jsonl, test_predictions.npz, compress.md,
exports/*-summary.json, bench/results.json): TF-free, so `edgemtl report` can rewrite it anywhere.
"""
import datetime
import json
import math
import time
from collections.abc import Mapping
from html import escape

from .. import __version__
from ..artifacts import ArtifactId, single_task_name
from ..kinds import task_kind
from ..model_metrics import read_history, read_metrics
from ..recipe.schema import Recipe
from ..rundir import RunDir, atomic_write_text
from . import classes as cls, svg
from .markdown import table
from .page import Section, render
from .scores import NO_SCORE, mean_cell, raw_cell, score_name

NOISY_P99_OVER_P50 = 3.0  # a timing whose p99 is this many times its p50 is flagged as noisy
MODEL_ORDER = ("teacher", "student-scratch", "student", "student-pruned", "student-qat")


def write_html_report(run: RunDir, recipe: Recipe) -> dict:
    """Write RUN/report.html; returns {"path", "bytes", "seconds"}."""
    start = time.perf_counter()
    tasks = [t for t in recipe.tasks if not t.auxiliary]
    labels = _labels(run)
    sections = [s for s in (results_section(run, tasks), classes_section(run, tasks, labels),
                            curves_section(run, recipe), compression_section(run), export_section(run, recipe),
                            bench_section(run, recipe), pareto_section(run)) if s is not None]
    env = _json(run.env) or {}
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = ", ".join(str(x) for x in (env.get("cpu"), f"{env.get('cpu_count')} cores" if env.get("cpu_count")
                                         else None, f"TensorFlow {env['tensorflow']}" if env.get("tensorflow")
                                         else None) if x)
    meta = f"Run directory {run.root} · written {when}" + (f" · trained on {machine}" if machine else "")
    page = render(f"{recipe.name}: run report", meta, sections, str(run.root), __version__)
    atomic_write_text(run.report_html, page)
    return {"path": str(run.report_html), "bytes": len(page.encode()), "seconds": time.perf_counter() - start}


def pointers(run: RunDir) -> list[str]:
    """The lines `edgemtl run` ends with: where the report is, and how to open the training logs."""
    out = []
    if run.report_html.exists():
        out.append(f"report: {run.report_html}")
    if any(run.tensorboard(m).is_dir() for m in _models_with_files(run)):
        out.append(f"training curves: tensorboard --logdir {run.models_dir}")
    return out


# --- sections -------------------------------------------------------------------------------------------------------
def results_section(run: RunDir, tasks: list) -> Section | None:
    teacher = read_metrics(run, "teacher")
    test = teacher.get("splits", {}).get("test", {})
    if not test:
        return None
    singles = {t.name: read_metrics(run, single_task_name(t.name)) for t in tasks}
    has_single = any(singles.values())
    transfer = teacher.get("transfer") or {}  # the negative-transfer verdict (reports.run_report), when computed
    per_task = transfer.get("tasks") or {}
    n = test.get(tasks[0].name, {}).get("n", "?")
    s = Section("Results per task", "results")
    s.md(f"Test split, {n} rows. Multitask model: {teacher.get('params', 0):,} parameters, "
         f"{teacher.get('train_seconds', 0):.0f} s training, best epoch {teacher.get('best_epoch', '?')} of "
         f"{teacher.get('epochs_run', '?')}.")
    head = ["task", "type", "metric", "multitask"]
    if has_single:
        head += ["single-task"] + (["relative change (Δ)", "verdict"] if per_task else [])
    rows = []
    for t in tasks:
        kind = task_kind(t.type)
        for i, metric in enumerate(t.metrics or kind.metric_names):
            row = [t.name if i == 0 else "", t.type if i == 0 else "", metric, _value(test.get(t.name), metric)]
            if has_single:
                single = singles[t.name].get("splits", {}).get("test", {}).get(t.name)
                verdict = per_task.get(t.name) if metric == kind.primary_metric else None
                row.append(_value(single, metric))
                if per_task:
                    row += [_pct(verdict.get("relative_change")) if verdict else "",
                            (verdict.get("verdict") or NO_SCORE) if verdict else ""]
            rows.append(row)
    s.md(table(head, rows))
    mean, note = mean_cell({t.name: test.get(t.name) for t in tasks})
    s.md(f"Multitask mean {score_name(tasks)}: **{mean}**" + (f" ({note})." if note else "."))
    if transfer.get("delta_m") is not None or per_task:
        hurt = transfer.get("hurt") or []
        s.md(f"**Δm** (mean relative change of the primary metric vs the single-task models, + = multitask better): "
             f"**{_pct(transfer.get('delta_m'))}** over {transfer.get('delta_m_tasks', len(per_task))} task(s). "
             + (f"Hurt by multitask training: {', '.join(hurt)}. " if hurt else "No task is hurt beyond the spread. ")
             + (f"Rule: {transfer['rule']}." if transfer.get("rule") else ""))
    elif has_single:
        s.md("Δm: not computed for this run (the negative-transfer verdict is written by the report stage into the "
             "teacher's metrics.json as `transfer`).")
    else:
        s.md("No single-task models in this run (stage `single_task`): no baseline, no Δm.")
    return s


def classes_section(run: RunDir, tasks: list, labels: Mapping) -> Section | None:
    """Confusion matrices and per-class precision / recall / F1 of the teacher's class tasks on the test split."""
    class_tasks = [t for t in tasks if task_kind(t.type).has_classes and not task_kind(t.type).dense
                   and labels.get(t.name, {}).get("classes")]  # dense kinds (boxes, mask): no per-row class
    if not class_tasks:
        return None
    s = Section("Per-class results", "classes")
    preds = cls.load_predictions(run.test_predictions("teacher"))
    if not preds:
        s.md("No saved test decisions (`models/teacher/test_predictions.npz`): run `edgemtl evaluate RUN` and then "
             "`edgemtl report RUN` to add the confusion matrices.")
        return s
    s.md("The multitask model (teacher) on the test split, from its saved decisions. Precision: share of the rows "
         "predicted as the class that are the class; recall: share of the class's rows found; F1: their harmonic "
         "mean.")
    for t in class_tasks:
        true, pred = preds.get(f"{t.name}.true"), preds.get(f"{t.name}.pred")
        if true is None or pred is None:
            continue
        names = labels[t.name]["classes"]
        s.html(f"<h3>{escape(t.name)} ({escape(t.type)})</h3>")
        if pred.ndim == 2:  # multilabel: one decision per label
            s.html(cls.per_class_table(cls.label_results(t.name, names, true, pred)))
            continue
        res = cls.class_results(t.name, names, true, pred)
        if len(names) <= cls.MAX_MATRIX_CLASSES:
            s.html(f'<div class="grid"><div>{cls.confusion_table(res)}</div>'
                   f"<div>{cls.per_class_table(res.per_class())}</div></div>")
        else:
            s.md(f"{len(names)} classes: the most frequent confusions instead of the {len(names)}x{len(names)} "
                 f"matrix (every class is in the table below).")
            s.html(cls.confusions_list(res))
            s.html(f"<details><summary>per-class precision / recall / F1 ({len(names)} classes)</summary>"
                   f"{cls.per_class_table(sorted(res.per_class(), key=lambda r: -r['support']))}</details>")
    return s


def curves_section(run: RunDir, recipe: Recipe) -> Section | None:
    models = [m for m in _models_with_files(run) if read_history(run, m)]
    if not models:
        return None
    tasks = [t for t in recipe.tasks if not t.auxiliary]
    s = Section("Training curves", "curves")
    s.md("Per epoch, from each model's `history.jsonl`: each task's loss (solid: training batches, dashed: validation "
         "split) and its validation metric. Students' training losses include distillation terms.")
    for model in models:
        rows = read_history(run, model)
        epochs = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
        model_tasks = [t for t in tasks if any(f"val_{t.name}_loss" in r or f"{t.name}_loss" in r for r in rows)]
        loss = []
        for t in model_tasks:
            loss += [svg.Series(f"{t.name} train", epochs, [r.get(f"{t.name}_loss") for r in rows]),
                     svg.Series(f"{t.name} val", epochs, [r.get(f"val_{t.name}_loss") for r in rows], dashed=True)]
        if not model_tasks:
            loss = [svg.Series("train", epochs, [r.get("loss") for r in rows]),
                    svg.Series("val", epochs, [r.get("val_loss") for r in rows], dashed=True)]
        charts = [svg.line_chart(f"{model}: loss", [x for x in loss if any(v is not None for v in x.y)],
                                 "epoch", "loss")]
        by_metric = {}
        for t in model_tasks:
            by_metric.setdefault(task_kind(t.type).primary_metric, []).append(t)
        for metric, group in by_metric.items():
            series = [svg.Series(t.name, epochs, [r.get(f"val_{t.name}_{metric}") for r in rows]) for t in group]
            charts.append(svg.line_chart(f"{model}: validation {metric}", series, "epoch", metric))
        s.html(f"<h3>{escape(model)}</h3><div class='grid curves' data-model='{escape(model)}'>"
               + "".join(f"<figure>{c}</figure>" for c in charts if c) + "</div>")
    return s


def compression_section(run: RunDir) -> Section | None:
    if not run.compress_md.exists():
        return None
    body = run.compress_md.read_text().splitlines()[2:]  # its own title dropped
    return Section("Compression", "compression").md("\n".join(body))


def export_section(run: RunDir, recipe: Recipe) -> Section | None:
    summaries = sorted(run.exports.glob("*-summary.json")) if run.exports.exists() else []
    rows = [r for p in summaries for r in (_json(p) or []) if isinstance(r, dict) and r.get("artifact")]
    if not rows:
        return None
    tasks = [t for t in recipe.tasks if not t.auxiliary]
    s = Section("Export and parity", "export")
    s.md("Every artifact the export stage made, checked against its Keras model on the test split by the parity "
         "gate. Δ: the artifact's metric minus the Keras model's (accuracy in points; MAE in label units). "
         "Rejected bundles sit in `exports/rejected/`; they are never benched or deployed.")
    head = ["artifact", "size (KB)", "verdict", "kept in float"] + [f"{t.name} Δ" for t in tasks] + \
           ["max abs diff vs Keras"]
    body, reasons = [], []
    for r in rows:
        per = r.get("tasks") or {}
        diffs = [v.get("max_abs_diff") for v in per.values() if isinstance(v, dict)]
        diff = max((d for d in diffs if isinstance(d, (int, float))), default=None)
        if not r.get("deployable"):
            reasons.append(f"- `{r['artifact']}`: {r.get('reason') or 'no reason recorded'}")
        body.append([r["artifact"], f"{r.get('size', 0) / 1024:.0f}",
                     "deployable" if r.get("deployable") else f"**rejected** ({len(reasons)})",
                     ", ".join(r.get("kept_in_float") or []) or "–"]
                    + [_parity_delta(t, per.get(t.name)) for t in tasks] + ["" if diff is None else f"{diff:.1e}"])
    s.md(table(head, body))
    ok = sum(1 for r in rows if r.get("deployable"))
    s.md(f"{ok} of {len(rows)} artifacts deployable." + (" Why the others were rejected:" if reasons else ""))
    if reasons:
        s.md("\n".join(f"{i}. {line[2:]}" for i, line in enumerate(reasons, 1)))
    return s


def bench_section(run: RunDir, recipe: Recipe) -> Section | None:
    results = _json(run.bench_results)
    if not results or not results.get("rows"):
        return None
    from .bench_report import BASELINE, machine_line

    s = Section("Benchmark", "bench")
    s.md(f"Machine: {machine_line(results)}")
    n_runs, warm = results.get("runs"), results.get("warmup")
    s.md(f"Latency: one sample per call (batch 1), {warm} warm-up calls then up to {n_runs} timed calls, each "
         f"artifact in a fresh process. Throughput: rows per second at batch {results.get('batch')}. Cold start: "
         f"process start to the first answer. Peak memory: the process's peak resident set. Speed-up: p50 against "
         f"{BASELINE} on LiteRT, 1 thread. **Noisy** marks a timing whose p99 is more than "
         f"{NOISY_P99_OVER_P50:g}x its p50 (other work on the machine, or a cold cache): compare its p50 only.")
    base = next((r for r in results["rows"] if (r["artifact"], r["backend"], r["threads"]) == (BASELINE, "litert", 1)
                 and "error" not in r), None)
    head = ["artifact", "backend", "threads", "size (KB)", "p50 latency (ms)", "p90 (ms)", "p99 (ms)", "p99 / p50",
            f"throughput (rows/s, batch {results.get('batch')})", "cold start (s)", "peak memory (MB)",
            "speed-up vs teacher fp32", "timing"]
    body, noisy = [], 0
    for r in results["rows"]:
        size = results["sizes"].get(r["artifact"], 0)
        cells = [r["artifact"], r["backend"], str(r["threads"]), f"{size / 1024:.0f}"]
        if "error" in r:
            body.append(cells + [f"error: {r['error'][:80]}"] + [""] * (len(head) - 5))
            continue
        lat = r["latency_ms"]
        ratio = lat["p99"] / lat["p50"] if lat["p50"] else float("inf")
        flag = ratio > NOISY_P99_OVER_P50
        noisy += flag
        cells += [f"{lat['p50']:.3f}", f"{lat['p90']:.3f}", f"{lat['p99']:.3f}", f"{ratio:.1f}",
                  f"{r['throughput_per_s']:,.0f}", f"{r['cold_start_s']:.2f}", f"{r['peak_rss_mb']:.0f}",
                  _speedup(base, r), "**noisy**" if flag else "ok"]
        body.append(cells)
    s.html("<h3>Speed, size and memory</h3>")
    s.md(table(head, body))
    s.md(f"{noisy} of {len(body)} timings flagged noisy (p99 / p50 > {NOISY_P99_OVER_P50:g})." if noisy
         else f"No timing is noisy (every p99 / p50 ≤ {NOISY_P99_OVER_P50:g}).")
    s.html("<h3>Scores per artifact</h3>")
    tasks = [t for t in recipe.tasks if not t.auxiliary]
    names = [t.name for t in tasks]
    base_size = results["sizes"].get(BASELINE)
    body = []
    for artifact, acc in results["accuracy"].items():
        size = results["sizes"].get(artifact, 0)
        per = {k: v for k, v in acc.items() if isinstance(v, Mapping)}
        body.append([artifact, f"{size / 1024:.0f}", f"{base_size / size:.1f}" if base_size and size else ""]
                    + [raw_cell(t, per.get(t.name)) if t.name in per else "" for t in tasks] + [mean_cell(per)[0]])
    s.md("The whole test split through the runtime (Keras rows: `keras.Model.predict`); each task's raw metric, and "
         f"the mean {score_name(tasks)}.")
    s.md(table(["artifact", "size (KB)", "x smaller than teacher fp32", *names, "mean score"], body))
    comparisons = _comparison_lines(run)
    if comparisons:
        s.html("<h3>Comparisons</h3>")
        s.md("\n".join(comparisons))
    return s


def pareto_section(run: RunDir) -> Section | None:
    results = _json(run.bench_results)
    if not results or not results.get("rows"):
        return None
    from .bench_report import pareto_points

    pts, front = pareto_points(results)
    s = Section("Score vs latency (Pareto)", "pareto")
    if not pts:
        return s.md("No artifact answering every task has a mean score: nothing to plot.")
    pts = sorted(pts, key=lambda p: (p[3], -p[4]))
    n_test = max((v.get("n") or 0 for acc in results["accuracy"].values() for v in acc.values()
                  if isinstance(v, Mapping)), default=0)
    resolution = 1 / n_test if n_test else 0.01
    on_front = {(p[0], p[1], p[2]) for p in front}
    points = [svg.Point(i, p[3], p[4], _group(p[0], p[1]), (p[0], p[1], p[2]) in on_front)
              for i, p in enumerate(pts, 1)]
    chart = svg.scatter("mean normalised score vs latency (batch 1)", points, "p50 latency at batch 1 (ms, log scale)",
                        "mean normalised score (test)", resolution)
    s.html(f"<figure class='pareto'>{chart}<figcaption>Each point is one artifact × backend × thread count, numbered "
           f"as in the table below and coloured by format and precision; ringed red and joined: the Pareto front "
           f"(no other point is both faster and better). The y-range is padded by at least one test row of the score "
           f"(1/{n_test} = {resolution:.4f}), so points one row apart do not look far apart.</figcaption></figure>")
    body = [[str(i), p[0], p[1], str(p[2]), f"{p[3]:.3f}", f"{p[4]:.4f}", f"{p[5] / 1024:.0f}",
             "yes" if (p[0], p[1], p[2]) in on_front else ""] for i, p in enumerate(pts, 1)]
    s.md(table(["#", "artifact", "backend", "threads", "p50 latency (ms)", "mean score", "size (KB)",
                "on the front"], body))
    return s


# --- helpers --------------------------------------------------------------------------------------------------------
def _models_with_files(run: RunDir) -> list[str]:
    names = sorted(p.name for p in run.models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if run.models_dir.exists() else []
    rank = {m: i for i, m in enumerate(MODEL_ORDER)}
    return sorted(names, key=lambda m: (rank.get(m, len(rank) if m.startswith("single-") else len(rank) + 1), m))


def _labels(run: RunDir) -> dict:
    return _json(run.labels) or {}


def _json(path):
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        return None


def _value(metrics, metric: str) -> str:
    value = (metrics or {}).get(metric)
    if value is None:
        return ""
    return f"{value:.4f}" if math.isfinite(value) else f"{NO_SCORE} (no labelled row)"


def _pct(v) -> str:
    return NO_SCORE if v is None else f"{100 * v:+.2f} %"


def _parity_delta(task, row) -> str:
    if not isinstance(row, dict) or row.get("artifact") is None or row.get("keras") is None:
        return NO_SCORE
    delta = row["artifact"] - row["keras"]
    if row.get("metric") == "mae":
        return f"MAE {delta:+.3g}"
    return f"{delta * 100:+.2f} pt"


def _speedup(base, row) -> str:
    if not base or not row["latency_ms"]["p50"]:
        return ""
    ratio = base["latency_ms"]["p50"] / row["latency_ms"]["p50"]
    return f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"


def _group(artifact: str, backend: str) -> str:
    if ArtifactId.is_artifact_name(artifact):
        a = ArtifactId.parse(artifact)
        return f"{a.format} {a.precision}"
    return f"{backend} (float32)"


def _comparison_lines(run: RunDir) -> list[str]:
    """The comparison bullets of bench/report.md (runtime vs Keras, int8 student vs teacher, one vs many models,
    GPU vs CPU, speed vs the core's peak), as written by the bench stage."""
    if not run.bench_report.exists():
        return []
    lines, keep = [], False
    for line in run.bench_report.read_text().splitlines():
        if line.startswith("- **"):
            keep = True
        elif not line.startswith("  "):
            keep = False
        if keep:
            lines.append(line)
    return lines
