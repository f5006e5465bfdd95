"""RUN/bench/: report.md (one row per artifact x backend x threads), pareto.png, a self-contained report.html, and
the comparisons users ask for: runtime vs keras.predict, int8 student vs fp32 teacher, one multitask model vs
single-task models, achieved speed vs this core's peak."""
import base64
import html
from collections.abc import Mapping

import numpy as np

from ..artifacts import ArtifactId, keras_target_name
from ..bench.backends import ORT_GPU_PROVIDERS
from ..env_info import describe_cpu
from ..kinds import mean_score, task_kind
from ..names import TEACHER
from ..recipe.schema import Recipe
from ..rundir import RunDir, atomic_write_text
from .markdown import table as markdown_table
from .scores import mean_cell, raw_cell, score_name, score_of

BASELINE = "teacher-tflite-fp32"

SCORE_LEGEND = "normalised score (accuracy for class tasks, 1 - MAE/std for regression; higher is better)"


def _task_names(results: dict) -> list:
    """Every task of any artifact: the baseline's in its order first (single-task artifacts have one each)."""
    ordered = [results["accuracy"].get(BASELINE, {})] + list(results["accuracy"].values())
    return list({t: None for acc in ordered for t in acc if t != "mean_score"})


def _row_key(r):
    return r["artifact"], r["backend"], r["threads"]


def _lookup(results, artifact, backend="litert", threads=1):
    return next((r for r in results["rows"] if _row_key(r) == (artifact, backend, threads) and "error" not in r), None)


def table(results: dict, tasks: Mapping | None = None) -> str:
    """One row per artifact x backend x threads; task cells show the raw primary metric, "mean" the mean
    normalised score. tasks: {name: TaskSpec} (the recipe's), to format each task by its kind."""
    names = _task_names(results)
    base = _lookup(results, BASELINE)
    base_size = results["sizes"].get(BASELINE)
    memory = results.get("memory") or {}  # micro bundles: TFLite Micro arena and flash, measured at export
    head = ["artifact", "backend", "threads", "size KB", "x smaller"] + (["arena KB", "flash KB"] if memory else []) + \
        names + ["mean score", "p50 ms", "p90 ms", "p99 ms", f"batch {results['batch']} /s", "cold s", "peak MB",
                 "x faster"]
    body = []
    for r in results["rows"]:
        acc, size = results["accuracy"][r["artifact"]], results["sizes"][r["artifact"]]
        cells = [r["artifact"], r["backend"], str(r["threads"]), f"{size / 1024:.0f}",
                 f"{base_size / size:.1f}" if base_size else ""]
        if memory:
            mem = memory.get(r["artifact"])
            cells += [f"{mem['arena_bytes'] / 1024:.1f}", f"{mem['flash_bytes'] / 1024:.1f}"] if mem else ["-", "-"]
        cells += [_metric(acc.get(n), (tasks or {}).get(n)) for n in names] + [mean_cell(_per_task(acc))[0]]
        if "error" in r:
            cells += [f"error: {r['error'][:60]}"] + [""] * 6
        else:
            lat = r["latency_ms"]
            faster = _ratio(base['latency_ms']['p50'] / lat['p50']) if base else ""  # no baseline row measured
            cells += [f"{lat['p50']:.3f}", f"{lat['p90']:.3f}", f"{lat['p99']:.3f}", f"{r['throughput_per_s']:.0f}",
                      f"{r['cold_start_s']:.2f}", f"{r['peak_rss_mb']:.0f}", faster]
        body.append(cells)
    return markdown_table(head, body)


def _ratio(value: float) -> str:
    """A speed ratio: one decimal from 1 up, two significant digits below (a Keras row is 0.012x, not 0.0x)."""
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def _per_task(acc: Mapping) -> dict:
    """An artifact's per-task metrics without its stored mean (means are recomputed from the normalised scores)."""
    return {k: v for k, v in acc.items() if isinstance(v, Mapping)}


def _mean(acc: Mapping) -> float | None:
    return mean_score(_per_task(acc))[0]


def _metric(m, task=None) -> str:
    if not m:
        return ""
    if task is not None:
        return raw_cell(task, m)
    return "" if score_of(m) is None else f"score {score_of(m):.4f}"  # a task the recipe no longer names


def comparisons(results: dict, student: str | None, meaning: str = SCORE_LEGEND) -> list[str]:
    """meaning: what the normalised score is for the run's tasks (scores.score_name), for the sentences."""
    out = []
    names = _task_names(results)
    teacher_fp32 = _lookup(results, BASELINE)
    keras = _lookup(results, keras_target_name(TEACHER), "keras", 1)
    if teacher_fp32 and keras:
        out.append(f"- **Runtime vs `keras.Model.predict`, one sample, 1 thread:** {keras['latency_ms']['p50']:.2f} ms "
                   f"vs {teacher_fp32['latency_ms']['p50']:.3f} ms for the same teacher as fp32 TFLite: "
                   f"**{keras['latency_ms']['p50'] / teacher_fp32['latency_ms']['p50']:.0f}x** faster.")
    side = results.get("side_by_side") or {}
    student = student or (side.get("headline") or {}).get("student")
    student_row = _lookup(results, student) if student else None
    out += headline_lines(results, student, names, meaning)
    singles = [a for a in results["sizes"] if ArtifactId.is_artifact_name(a) and ArtifactId.parse(a).task is not None
               and (ArtifactId.parse(a).format, ArtifactId.parse(a).precision) == ("tflite", "fp32")]
    if teacher_fp32 and singles:
        rows = [_lookup(results, a) for a in singles]
        if all(rows):
            size = sum(results["sizes"][a] for a in singles)
            latency = sum(r["latency_ms"]["p50"] for r in rows)
            out.append(f"- **{len(singles)} single-task models vs one multitask model** (fp32 TFLite, 1 thread): "
                       f"{size / 1024:.0f} KB and {latency:.2f} ms together vs "
                       f"{results['sizes'][BASELINE] / 1024:.0f} KB "
                       f"and {teacher_fp32['latency_ms']['p50']:.2f} ms"
                       + (f" ({student}: {results['sizes'][student] / 1024:.0f} KB, "
                          f"{student_row['latency_ms']['p50']:.3f} ms)" if student_row else "") + ".")
            per_task = []
            for a in singles:
                task = ArtifactId.parse(a).task
                single, multi = results["accuracy"][a].get(task), results["accuracy"][BASELINE].get(task)
                if score_of(single) is not None and score_of(multi) is not None:
                    per_task.append(f"{task} {score_of(single):.4f} / {score_of(multi):.4f}")
                else:
                    per_task.append(f"{task} — (no score)")
            out.append(f"  Per task, {meaning}, single-task / multitask: " + ", ".join(per_task) + ".")
    out += gpu_vs_cpu(results)
    out += floor_lines(results)
    return out


def headline_lines(results: dict, student: str | None, names: list, meaning: str = SCORE_LEGEND) -> list[str]:
    """The teacher's fp32 TFLite against the student artifact (the fastest deployable one measured side by side,
    unless --student named one), the student's int8 beside it, model call and end to end from raw inputs."""
    side = results.get("side_by_side") or {}
    latency, head = side.get("latency") or {}, side.get("headline") or {}
    if BASELINE not in latency or not student or student not in latency:
        return []
    how = (f"1 thread, batch 1, interleaved in one process: median of {side['rounds']} rounds x {side['calls']} calls, "
           f"{side['repeats']} repeats")

    def versus(name: str) -> str:
        t, s = latency[BASELINE]["median_ms"], latency[name]["median_ms"]
        t_acc, s_acc = results["accuracy"].get(BASELINE, {}), results["accuracy"].get(name, {})
        deltas = ", ".join(_delta(n, t_acc.get(n), s_acc.get(n)) for n in names)
        size = results["sizes"].get(BASELINE, 0) / max(results["sizes"].get(name, 1), 1)
        return (f"**{t / s:.1f}x faster** ({s:.4f} vs {t:.4f} ms), {size:.1f}x smaller; change of each task's "
                f"{meaning}, in points: {deltas}")

    out = [f"- **{student} vs {BASELINE}** ({_picked(head, student)}; {how}): {versus(student)}."]
    int8 = head.get("int8")
    if int8 and int8 != student and int8 in latency:
        out.append(f"  - beside it, **{int8}**: {versus(int8)}.")
    ends = {n: latency.get(f"{n} end-to-end") for n in (BASELINE, student, int8) if n}
    if ends.get(BASELINE) and ends.get(student):
        t, s = ends[BASELINE]["median_ms"], ends[student]["median_ms"]
        extra = (f"; {int8} {ends[int8]['median_ms']:.4f} ms ({t / ends[int8]['median_ms']:.1f}x)"
                 if int8 and int8 != student and ends.get(int8) else "")
        out.append(f"  - end to end from raw inputs (decode + prepare + invoke + answers, `edgemtl.runtime` "
                   f"predict() on one test row): {s:.4f} vs {t:.4f} ms, **{t / s:.1f}x**{extra}.")
    return out


def _picked(head: dict, student: str) -> str:
    """Why the headline names this student bundle."""
    if student != head.get("student"):
        return "named by --student"
    ties = [n for n in head.get("tied_with") or [] if n != student]
    if head.get("chosen_by") == "export":
        tie = f", tied within noise here with {', '.join(ties)}" if ties else ", the fastest here too"
        return f"export's recommended bundle for this CPU{tie}"
    tie = f" (tied within noise with {', '.join(ties)}: the smallest file is named, as export recommends)" \
        if ties else ""
    overruled = head.get("overruled") or []
    against = (f"; export recommended {', '.join(overruled)} on this CPU, slower here beyond noise"
               if overruled else "")
    return f"the fastest deployable student artifact on this CPU{tie}{against}"


def floor_lines(results: dict) -> list[str]:
    """Each side-by-side artifact's distance from the floor (FLOPs / this core's peak for its precision + the fixed
    cost of a 1-op model), as a table; never a share above 100 %."""
    side = results.get("side_by_side") or {}
    floor, latency = side.get("floor") or {}, side.get("latency") or {}
    if not floor:
        return []
    peaks = ", ".join(f"{p} {v['gops']:.0f} G ops/s" for p, v in sorted((side.get("peaks") or {}).items()))
    rows = []
    for name, f in sorted(floor.items(), key=lambda kv: latency[kv[0]]["median_ms"]):
        rows.append([name, f["precision"], f"{f['flops'] / 1e6:.2f}", f"{latency[name]['median_ms']:.4f}",
                     f"{f['compute_ms']:.4f} + {f['fixed_ms']:.4f}", f"{f['distance']:.1f}x"
                     + (" (under the floor: noise)" if f.get("below_floor") else ""), f"{f['share']:.0%}"])
    return [f"- **Distance from the floor** (floor = FLOPs / this core's one-thread peak for the precision, measured "
                f"with the same kernels: {peaks} (XNNPACK fully-connected models built on the fly; a quantized file "
                f"gets the faster peak, since parts may run in float), plus the fixed cost of a 1-op model, "
                f"{side['fixed_ms']:.4f} ms; share = floor / measured, at most 100 %):", "",
            markdown_table(["artifact", "GEMM precision", "M FLOPs", "measured ms", "floor ms (compute + fixed)",
                            "x the floor", "share of floor"], rows)]


def gpu_vs_cpu(results: dict) -> list[str]:
    """Each ONNX artifact on the GPU against the same file on this machine's CPU (ONNX Runtime), each side at its
    best thread count: batch 1 is where launch overheads show, the throughput batch is where a GPU can pay off."""
    ok = [r for r in results["rows"] if "error" not in r]
    lines = []
    for artifact, backend in sorted({(r["artifact"], r["backend"]) for r in ok if r["backend"] in ORT_GPU_PROVIDERS}):
        gpu = [r for r in ok if r["artifact"] == artifact and r["backend"] == backend]
        cpu = [r for r in ok if r["artifact"] == artifact and r["backend"] == "ort-cpu"]
        if not cpu:
            continue
        g1, c1 = (min(rows, key=lambda r: r["latency_ms"]["p50"]) for rows in (gpu, cpu))
        gb, cb = (max(rows, key=lambda r: r["throughput_per_s"]) for rows in (gpu, cpu))
        nodes = sorted((g1.get("nodes_by_provider") or {}).items(), key=lambda kv: -kv[1])
        placement = ", nodes " + ", ".join(f"{n} on {p.replace('ExecutionProvider', '')}" for p, n in nodes) \
            if nodes else ""
        memory = f", {g1['gpu_memory_mb']:.0f} MB of GPU memory" if g1.get("gpu_memory_mb") else ""
        on_gpu = results.get("gpu_accuracy", {}).get(f"{artifact} {g1['backend']}", {})
        gpu_mean, cpu_mean = _mean(on_gpu), _mean(results["accuracy"][artifact])
        answers = (f"; mean score {gpu_mean:.4f} on the GPU, {cpu_mean:.4f} on the CPU"
                   if gpu_mean is not None and cpu_mean is not None
                   else f"; accuracy on the GPU not measured ({on_gpu.get('error', 'no result')})")
        lines.append(f"  - {artifact} ({g1['backend']}): batch 1 {g1['latency_ms']['p50']:.3f} vs "
                     f"{c1['latency_ms']['p50']:.3f} ms ({_threads(c1)}), "
                     f"{c1['latency_ms']['p50'] / g1['latency_ms']['p50']:.1f}x; batch {gb['batch']} "
                     f"{gb['throughput_per_s']:,.0f} vs {cb['throughput_per_s']:,.0f} rows/s ({_threads(cb)}), "
                     f"{gb['throughput_per_s'] / cb['throughput_per_s']:.1f}x{memory}{placement}{answers}")
    if not lines:
        return []
    return [f"- **GPU vs CPU, the same ONNX file** ({results['machine']['gpu'].get('name')} vs ONNX Runtime on this "
            f"machine's CPU, each at its best thread count; x = how many times faster the GPU is):", *lines]


def _threads(row: dict) -> str:
    return f"{row['threads']} thread{'s' if row['threads'] > 1 else ''}"


def _metric_label(task) -> str:
    """A task's primary raw metric as the tables name it (accuracy, MAE, mAP@.5, mIoU)."""
    kind = task_kind(task.type)
    return {"map50": "mAP@0.5", "miou": "mIoU", "mae": "MAE"}.get(kind.primary_metric, kind.primary_metric)


def _delta(task: str, teacher, student) -> str:
    """One task's change in normalised-score points, with the raw MAE beside it for a regression task."""
    t, s = score_of(teacher), score_of(student)
    if t is None or s is None:
        return f"{task} — (no score)"
    raw = f" (MAE {teacher['mae']:.3g} -> {student['mae']:.3g})" if "mae" in teacher and "mae" in student else ""
    return f"{task} {(s - t) * 100:+.2f}{raw}"


def pareto_points(results: dict) -> list:
    """(artifact, backend, threads, p50 ms, mean normalised score, size) for successful rows of artifacts that answer
    every task (a single-task model's mean is one task's score: not comparable) and have a mean; and which are on
    the front."""
    everything = set(_task_names(results))
    pts = [(r["artifact"], r["backend"], r["threads"], r["latency_ms"]["p50"],
            _mean(results["accuracy"][r["artifact"]]), results["sizes"][r["artifact"]])
           for r in results["rows"] if "error" not in r and everything <= set(results["accuracy"][r["artifact"]])]
    pts = [p for p in pts if p[4] is not None]
    front = [p for p in pts if not any(q[3] <= p[3] and q[4] >= p[4] and (q[3] < p[3] or q[4] > p[4]) for q in pts)]
    return pts, front


def pareto_png(results: dict, path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    pts, front = pareto_points(results)
    if not pts:  # no artifact with a mean score: nothing to plot
        return False
    fig, ax = plt.subplots(figsize=(9, 5.5))
    sizes = np.array([p[5] for p in pts], dtype=float)
    ax.scatter([p[3] for p in pts], [p[4] for p in pts], s=20 + 400 * sizes / sizes.max(), alpha=0.45)
    front = sorted(front, key=lambda p: p[3])
    # front points carry numbers, named in the legend: their names overlap when points lie close together
    names = "".join(f"\n{i}: {p[0]} ({p[1]}, {p[2]}t)" for i, p in enumerate(front, 1))
    ax.plot([p[3] for p in front], [p[4] for p in front], "r-o", lw=1.5, ms=4, label="Pareto front" + names)
    for i, p in enumerate(front, 1):
        ax.annotate(str(i), (p[3], p[4]), fontsize=7, xytext=(0, 5), textcoords="offset points", ha="center")
    ax.set_xscale("log")
    ax.set_xlabel("latency at batch 1, p50 (ms, log scale)")
    ax.set_ylabel("mean normalised task score (test split)")
    ax.set_title("score vs latency; marker area = file size")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def machine_line(results: dict) -> str:
    m = results["machine"]
    gpu = m["gpu"].get("name") or f"no GPU ({m['gpu']['reason']})"
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return f"{describe_cpu(m['cpu'])}; {gpu}. {versions}."


def _limit(results) -> str:
    limit = results.get("max_seconds")
    return f" (fewer, at least {results['warmup']}, where they took over {limit:g} s)" if limit else ""


PLOT_NEEDS_MATPLOTLIB = ("Score vs latency plot: needs matplotlib (`pip install matplotlib`); RUN/report.html draws "
                         "it without.")


def write_reports(run: RunDir, recipe: Recipe, results: dict, student: str | None) -> str:
    folder = run.bench_dir
    folder.mkdir(parents=True, exist_ok=True)
    run.pareto_png.unlink(missing_ok=True)  # an older run's plot is never linked as this one's
    has_png = pareto_png(results, run.pareto_png)
    skipped = [f"- `{s['backend']}` skipped: {s['reason']}" for s in results["skipped"]]
    meaning = score_name(recipe.tasks)
    text = "\n".join([
        f"# {recipe.name}: benchmark", "",
        f"Machine: {machine_line(results)}", "", *excluded_lines(results),
        f"Scores: the whole test split, through the runtime's decoding; each task shows its raw primary metric "
        f"({', '.join(dict.fromkeys(_metric_label(t) for t in recipe.tasks))}), mean score = the mean "
        f"{meaning}. Latency: batch 1, {results['warmup']} "
        f"warm-up then {results['runs']} timed calls{_limit(results)}, each artifact in a fresh process (cold start "
        f"= process start to first answer; peak MB = the process's peak RSS). x smaller / x faster: against "
        f"{BASELINE} (LiteRT, 1 thread).",
        "", table(results, {t.name: t for t in recipe.tasks}), "", *comparisons(results, student, meaning), "",
        *skipped, "",
        "![score vs latency](pareto.png)" if has_png else PLOT_NEEDS_MATPLOTLIB, ""])
    atomic_write_text(run.bench_report, text)
    atomic_write_text(run.bench_html, _html(recipe, text, run.pareto_png if has_png else None))
    return text


def excluded_lines(results: dict) -> list[str]:
    """The bundles left out of every row, headline and recommendation because they failed the parity gate."""
    excluded = results.get("excluded") or []
    if not excluded:
        return []
    return ["Excluded (failed the parity gate; not benched, not compared, not recommended):",
            *[f"- `{e['artifact']}`: {e['reason']}" for e in excluded], ""]


def _html(recipe: Recipe, markdown: str, png) -> str:
    """Self-contained: the Markdown rendered by the Markdown library, the plot inlined as base64; without the library
    (a light install benching on a device) the tables and paragraphs converted here."""
    from ..errors import EdgemtlError
    from .page import STYLE, md

    data = f"data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}" if png else ""
    try:
        body = str(md(markdown)).replace('src="pareto.png"', f'src="{data}"')
    except EdgemtlError:
        return _plain_html(recipe, markdown, data)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(recipe.name)} benchmark"
            f"</title><style>{STYLE}</style></head><body>{body}</body></html>\n")


def _plain_html(recipe: Recipe, markdown: str, data: str) -> str:
    body = []
    for block in markdown.split("\n\n"):
        lines = block.strip().splitlines()
        if lines and lines[0].startswith("|"):
            rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if not line.startswith("|---")]
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in rows[0]) + "</tr>" +
                        "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
                        + "</table>")
        elif lines and lines[0].startswith("!["):
            if data:
                body.append(f'<img alt="score vs latency" src="{data}">')
        elif lines:
            body.append("<p>" + html.escape(" ".join(lines)).replace("**", "") + "</p>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:14px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:first-child{text-align:left}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(recipe.name)} benchmark</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
