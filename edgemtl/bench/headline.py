"""bench's headline, measured rather than assumed: the teacher's fp32 TFLite against the fastest deployable student
artifact on this CPU (and the student's int8 beside it), every bundle timed side by side in one process
(interleave.py: one thread, batch 1, interleaved rounds, medians over rounds and repeats), model call and end to end
from raw inputs (decode + prepare + invoke + answers, through edgemtl.runtime); and each artifact's distance from
the floor: FLOPs / this core's peak for its precision (XNNPACK fp32 and int8 GEMM models, built on the fly) plus the
fixed cost of a 1-op model, measured in the same process.
"""
from __future__ import annotations

from pathlib import Path

from ..artifacts import ArtifactId
from ..export.formats import FORMATS
from ..names import INT8_PRECISIONS, TEACHER
from .interleave import measure

BASELINE = "teacher-tflite-fp32"
END_TO_END = " end-to-end"


def raw_row(recipe, run, row: int = 0) -> dict | None:
    """One test row's raw inputs as a user passes them to predict() (file paths, title strings, numbers), or None
    where the data are arrays (an .npz source) or the row cannot be read."""
    from ..data.dataset import load_table
    from ..data.manifest import split_rows

    source = Path(recipe.data.source)
    if source.suffix.lower() == ".npz":
        return None
    try:
        table = load_table(recipe)
        saved = run.split if run.split.is_file() else None
        i = int(split_rows(table, recipe.data.split, recipe.seed, saved)["test"][row])
    except Exception:  # the data are not here (a packed run without media): no end-to-end figure
        return None
    out = {}
    for inp in recipe.inputs:
        if inp.type == "numeric":
            out[inp.name] = [float(table.columns[c][i]) for c in inp.columns]
            continue
        value = table.columns[inp.column][i]
        out[inp.name] = str(source.parent / str(value)) if inp.type in ("image", "audio", "sequence") else str(value)
    return out


def targets(run, students) -> list[dict]:
    """The teacher's fp32 TFLite and every deployable bundle of the student models, in TFLite or ONNX (the formats a
    desktop runtime runs; a C array is its TFLite file again, micro files are for TFLite Micro)."""
    from .run import bundles

    out = []
    for aid in bundles(run):
        fmt = FORMATS[aid.format]
        if fmt.wraps or fmt.gate_runtime:
            continue
        if aid.name == BASELINE or aid.model in students:
            out.append({"name": aid.name, "path": str(run.bundle_dir(aid)), "bundle": True})
    return out


def model_files(chosen: list[dict]) -> dict:
    """target name -> its bundle's model file."""
    from ..runtime.manifest import BundleManifest

    return {t["name"]: BundleManifest.read(t["path"]).model_path for t in chosen}


def side_by_side(run, recipe, feeds: dict, students, flops: dict, repeats: int = 3, rounds: int = 10,
                 calls: int = 10, workdir=None) -> dict:
    """results.json `side_by_side`: {latency, peaks, fixed_ms, floor, headline}."""
    chosen = targets(run, students)
    if not chosen:
        return {"error": "no teacher fp32 TFLite or student bundle to compare"}
    try:
        import tensorflow  # noqa: F401  (the GEMM and 1-op models are built with the converter)
        with_tf = True
    except ImportError:
        with_tf = False
    raw = raw_row(recipe, run)
    timed = measure(chosen, feeds, raw=raw, repeats=repeats, rounds=rounds, calls=calls, peaks=with_tf,
                    fixed=with_tf, workdir=workdir)
    latency = timed["latency"]
    peaks = timed.get("peaks") or {}
    fixed = latency.get("1-op model", {}).get("median_ms")
    floor = {t["name"]: floor_entry(t["name"], latency[t["name"]]["median_ms"], flops, peaks, fixed)
             for t in chosen}
    return {"latency": latency, "repeats": repeats, "rounds": rounds, "calls": calls, "peaks": peaks,
            "fixed_ms": fixed, "floor": {k: v for k, v in floor.items() if v}, "raw_inputs": raw is not None,
            "headline": headline(latency, students, model_files(chosen), recommendations(chosen))}


def gemm_precision(artifact: str) -> str:
    """The GEMM precision an artifact computes in: int8 for full-integer and dynamic-range files (int8 weights,
    activations quantized on the fly), float32 otherwise (fp16 files run as float32 on CPUs)."""
    quantized = ArtifactId.is_artifact_name(artifact) and ArtifactId.parse(artifact).precision in (*INT8_PRECISIONS,
                                                                                                   "dynamic")
    return "int8" if quantized else "fp32"


def floor_entry(artifact: str, measured_ms: float, flops: dict, peaks: dict, fixed_ms: float | None) -> dict | None:
    """The floor of one artifact: its model's FLOPs at the peak of its precision (the faster of the two peaks for a
    quantized file, since parts of it may run in float: a floor is a lower bound) plus the fixed call cost.
    distance = measured / floor; share = floor / measured, never above 100 % (a measurement under the floor, which
    noise can give, is reported at the floor and flagged)."""
    model_flops = flops.get(ArtifactId.parse(artifact).model) if ArtifactId.is_artifact_name(artifact) else None
    precision = gemm_precision(artifact)
    usable = [peaks[p]["gops"] for p in ({"fp32"} if precision == "fp32" else {"fp32", "int8"}) if p in peaks]
    if not model_flops or not usable or fixed_ms is None:
        return None
    compute_ms = model_flops / (max(usable) * 1e9) * 1e3
    floor_ms = compute_ms + fixed_ms
    return {"flops": model_flops, "precision": precision, "peak_gops": max(usable), "compute_ms": compute_ms,
            "fixed_ms": fixed_ms, "floor_ms": floor_ms, "distance": max(1.0, measured_ms / floor_ms),
            "share": min(1.0, floor_ms / measured_ms), "below_floor": measured_ms < floor_ms}


def headline(latency: dict, students, files: dict, recommended: dict | None = None) -> dict:
    """The student bundle to name (model call) and the others tied with it, the students' int8 TFLite beside it.
    files: name -> its model file. recommended: bundle name -> the CPU its export recommendation was measured on.
    Export's recommendation for this CPU is named where this timing ties it with the fastest, so bench and the
    manifest name the same bundle; otherwise bench's own choice, as export makes it (export/search.py choose: among
    the files tied within noise with the fastest median, the smallest), and the overruled recommendation is listed."""
    from ..env_info import cpu_info, describe_cpu
    from ..export.search import Candidate, choose

    names = [n for n in latency if n != "1-op model" and not n.endswith(END_TO_END)
             and ArtifactId.is_artifact_name(n) and ArtifactId.parse(n).model in students]
    if not names:
        return {}
    fastest, ties = choose([Candidate(ArtifactId.parse(n), (), Path(files[n]), True, latency=latency[n])
                            for n in names], "latency")
    close = {fastest.aid.name, *ties}
    here = describe_cpu(cpu_info())
    exported = [n for n in names if (recommended or {}).get(n) == here]
    confirmed = [n for n in exported if n in close]
    named = min(confirmed, key=lambda n: latency[n]["median_ms"]) if confirmed else fastest.aid.name
    int8 = next((f"{m}-tflite-int8" for m in students if f"{m}-tflite-int8" in latency), None)
    return {"teacher": BASELINE if BASELINE in latency else None, "student": named,
            "tied_with": sorted(close - {named}), "int8": int8,
            "chosen_by": "export" if confirmed else "bench",
            "overruled": [n for n in exported if n not in close]}


def recommendations(chosen: list[dict]) -> dict:
    """bundle name -> the CPU its export recommendation was measured on, for the recommended bundles among the
    targets (manifest `selection`)."""
    from ..runtime.manifest import BundleManifest

    out = {}
    for t in chosen:
        selection = BundleManifest.read(t["path"]).selection
        if selection is not None and selection.recommended:
            out[t["name"]] = selection.measured_on
    return out


def is_student(model: str) -> bool:
    return model != TEACHER
