"""`edgemtl bench RUN`: every bundle of the run (and the Keras models behind them) on every backend present here,
per-task accuracy on the whole test split, latency, throughput, cold start, memory; then RUN/bench/ reports."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .. import jsonio
from ..artifacts import ArtifactId, keras_target_name, model_of_target
from ..errors import EdgemtlError
from ..export.formats import FORMATS
from ..kinds import score_all
from ..names import GPU_BACKENDS, TEACHER
from ..progress import Progress
from ..recipe.schema import Recipe
from ..rundir import RunDir, atomic_write_text
from ..runtime.manifest import BundleManifest
from .backends import BACKENDS, ORT_GPU_PROVIDERS, unavailable
from .machine import machine_info

WARMUP = 20  # untimed calls before each measurement; also the fewest timed calls a time limit leaves


def bundles(run: RunDir) -> list[ArtifactId]:
    """The run's deployable bundles to bench: a format whose model file is another's again (the C array) is not
    benched twice; a bundle that failed the parity gate is left out (excluded_bundles)."""
    return [a for a in run.bundles() if FORMATS[a.format].benched and _deployable(run, a) is None]


def excluded_bundles(run: RunDir) -> list[dict]:
    """Bundles bench leaves out because they failed the parity gate: {artifact, reason}, those in exports/ (from an
    older export) and in exports/rejected/."""
    found = [(a, _deployable(run, a)) for a in run.bundles() if FORMATS[a.format].benched]
    out = [{"artifact": a.name, "reason": reason} for a, reason in found if reason is not None]
    for a in run.rejected_bundles():
        if FORMATS[a.format].benched and a.name not in {e["artifact"] for e in out} and a not in run.bundles():
            out.append({"artifact": a.name, "reason": _reason(run.rejected_dir(a))})
    return out


def _deployable(run: RunDir, aid: ArtifactId) -> str | None:
    """None when the bundle passed its gate, else the reason it did not."""
    manifest = BundleManifest.read(run.bundle_dir(aid))
    return None if manifest.deployable else (manifest.parity.reason or "failed the parity gate")


def _reason(folder: Path) -> str:
    try:
        return BundleManifest.read(folder).parity.reason or "failed the parity gate"
    except EdgemtlError as e:
        return e.messages[0]


def all_targets(run: RunDir, recipe: Recipe) -> list[tuple[str, str, str]]:
    # kind by the model file (micro bundles hold a .tflite file that LiteRT runs too)
    targets = [(a.name, str(run.bundle_dir(a)), FORMATS[a.format].suffix.lstrip(".")) for a in bundles(run)]
    if not targets:
        excluded = excluded_bundles(run)
        if excluded:
            raise EdgemtlError(f"{run.root}: no deployable bundle to bench (failed the parity gate: "
                               f"{', '.join(e['artifact'] for e in excluded)})")
        raise EdgemtlError(f"{run.root}: no bundles in exports/ to bench; run 'edgemtl export' first")
    targets += [(keras_target_name(m), str(run.require_model(m)), "keras") for m in recipe.export.model
                if run.model_file(m).exists()]
    return targets


KERAS_SKIPPED = "Keras rows are timed only when asked (bench.keras, --keras, or the backend named)"


def keras_asked(flag: bool, named) -> bool:
    """Whether the Keras rows are timed: bench.keras / --keras, or a Keras backend named among the backends."""
    return flag or any(BACKENDS.get(b, ("",))[0] == "keras" for b in named)


def plan_jobs(run: RunDir, recipe: Recipe, backends, threads, keras: bool = True) -> tuple[list, list]:
    """(jobs, skipped): one job per target x available backend x thread count; skipped backends with reasons.
    Targets: every bundle, and the Keras models of export.model (the baseline users would otherwise run; timed only
    with keras, their accuracy, size and FLOPs are measured either way)."""
    targets = all_targets(run, recipe)
    jobs, skipped = [], []
    for backend in backends:
        if backend not in BACKENDS:
            raise EdgemtlError(f"--backend: unknown backend '{backend}' (one of {', '.join(BACKENDS)})")
        reason = unavailable(backend) or (KERAS_SKIPPED if BACKENDS[backend][0] == "keras" and not keras else None)
        if reason:
            skipped.append({"backend": backend, "reason": reason})
            continue
        kind = BACKENDS[backend][0]
        jobs += [{"artifact": name, "target": target, "backend": backend, "threads": n}
                 for name, target, k in targets if k == kind for n in threads]
    return jobs, skipped


def _measure(job: dict, inputs: Path, timing: dict, tmp: Path) -> dict:
    job_file, out = tmp / "job.json", tmp / "out.json"
    out.unlink(missing_ok=True)
    job_file.write_text(json.dumps({**job, "inputs": str(inputs), **timing}))
    n = str(job["threads"])
    env = {**os.environ, "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
           "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": "1"}
    if job["backend"] not in GPU_BACKENDS:
        env["CUDA_VISIBLE_DEVICES"] = ""  # CPU rows must not borrow a GPU behind the user's back
    launched = time.time()
    done = subprocess.run([sys.executable, "-m", "edgemtl.bench.worker", str(job_file), str(out)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or [f"exit {done.returncode}"]
        return {"error": last[0][:300]}
    result = json.loads(out.read_text())
    if "first_answer_at" in result:  # interpreter start, imports, load, first answer
        result["cold_start_s"] = result.pop("first_answer_at") - launched
    return result


def accuracy(recipe: Recipe, data, target: str, kind: str, backend: str | None = None) -> dict:
    """Per-task metrics on the whole test split: bundles through the runtime (or, given a GPU backend, through that
    backend: a GPU may answer differently), Keras models through predict."""
    test = data["test"]
    if kind == "keras":
        from ..data.pipeline import predict_split
        from ..models.build import load_model

        outputs = predict_split(load_model(target), test)
    else:
        from ..runtime import load
        from ..runtime.backends import run_batched

        model = BACKENDS[backend][2](target, 1)[1] if backend else load(target)
        from ..data.media import in_memory

        outputs = run_batched(model.runner, in_memory(test.x))
    tasks = [t for t in recipe.tasks if not t.auxiliary and t.name in outputs]
    return score_all(tasks, data.labels, test.y, outputs)


def bench_run(run: RunDir, recipe: Recipe, data, backends=None, threads=None, runs=None, batch=None,
              max_seconds=None, warmup: int = WARMUP) -> dict:
    """Arguments left None come from the recipe's bench section."""
    cfg = recipe.bench
    threads = threads or cfg.threads or sorted({1, os.cpu_count() or 1})
    runs, batch = runs or cfg.runs, batch or cfg.batch
    max_seconds = max_seconds or cfg.max_seconds
    named = tuple(backends or cfg.backends)
    jobs, skipped = plan_jobs(run, recipe, named or list(BACKENDS), threads, keras_asked(cfg.keras, named))
    timed = {j["artifact"] for j in jobs}
    targets = {t for t in all_targets(run, recipe) if t[0] in timed or t[2] == "keras"}
    tmp = run.scratch("bench")  # in the run: a kill's leftovers go at the next start
    inputs = tmp / "inputs.npz"
    np.savez(inputs, **{k: v[:batch] for k, v in data["test"].x.items()})
    timing = {"runs": runs, "warmup": warmup, "batch": batch, "max_seconds": max_seconds}
    results = {"machine": machine_info(), **timing, "skipped": skipped, "excluded": excluded_bundles(run),
               "rows": [], "accuracy": {}, "gpu_accuracy": {}, "sizes": {}, "model_of": {}, "flops": {}}
    bar = Progress(len(targets) + len(jobs), "bench")
    for name, target, kind in sorted(targets):
        results["accuracy"][name] = accuracy(recipe, data, target, kind)
        gpu = {j["backend"] for j in jobs if j["target"] == target and j["backend"] in ORT_GPU_PROVIDERS}
        for backend in sorted(gpu):
            results["gpu_accuracy"][f"{name} {backend}"] = _or_error(
                lambda target=target, kind=kind, backend=backend: accuracy(recipe, data, target, kind, backend))
        results["sizes"][name] = _size(Path(target), kind)
        memory = _memory(Path(target), kind)
        if memory:  # micro bundles: the arena and flash the export measured in TFLite Micro
            results.setdefault("memory", {})[name] = memory
        results["model_of"][name] = model_of_target(name)
        bar.update()
    results["flops"] = _flops(run, recipe, targets)
    for job in jobs:
        results["rows"].append({**job, **_measure(job, inputs, timing, tmp)})
        bar.update()
    bar.close()
    results["side_by_side"] = _side_by_side(run, recipe, data, results["flops"], tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(run.bench_results, jsonio.dumps(results, with_reasons=True))
    return results


def students(run: RunDir) -> list[str]:
    """The run's bundled models that compete with the teacher (not the teacher, not single-task models)."""
    return sorted({a.model for a in bundles(run) if a.model != TEACHER and a.task is None})


def _side_by_side(run: RunDir, recipe: Recipe, data, flops: dict, tmp: Path) -> dict:
    """The headline's interleaved measurement (bench/headline.py); a failure is a finding, not a crash."""
    from .headline import side_by_side

    print("bench: teacher fp32 and student bundles side by side (interleaved, model call and end to end)",
          file=sys.stderr)
    feeds = {k: v[:1] for k, v in data["test"].x.items()}
    try:
        return side_by_side(run, recipe, feeds, students(run), flops, workdir=tmp)
    except EdgemtlError as e:
        return {"error": e.messages[0]}


def _or_error(measure) -> dict:
    try:
        return measure()
    except Exception as e:  # a GPU backend that fails on one artifact is a finding for the report, not a crash
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}


def _size(target: Path, kind: str) -> int:
    if kind == "keras":
        return target.stat().st_size
    return BundleManifest.read(target).model_path.stat().st_size


def _memory(target: Path, kind: str) -> dict | None:
    if kind == "keras":
        return None
    memory = BundleManifest.read(target).memory
    return memory.to_dict() if memory else None


def _flops(run: RunDir, recipe: Recipe, targets) -> dict:
    """FLOPs at batch 1 of each model behind the artifacts, whichever backends ran (needs TensorFlow; absent from a
    light install)."""
    try:
        from ..export.signature import exported_model
        from ..models.build import load_model
        from .flops import model_flops
    except ImportError:
        return {}
    out = {}
    for model in sorted({model_of_target(name) for name, _, _ in targets}):
        if run.model_file(model).exists():
            out[model] = model_flops(exported_model(load_model(run.require_model(model)), recipe))
    return out
