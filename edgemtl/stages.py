"""The stages of `edgemtl run` (and of the single commands): each reads and writes only the run directory."""
import sys

import yaml

from .errors import EdgemtlError
from .names import SINGLE_TASK_PREFIX, TEACHER
from .recipe import Recipe, load_recipe, recipe_hash
from .rundir import (RunDir, atomic_write_json, atomic_write_text, clear_run_dir, environment_info, is_edgemtl_run,
                     lock_run, mark_run)


def init_run(recipe: Recipe, out, resume: bool = False, overwrite: bool = False, recipe_file=None) -> RunDir:
    """Create (or reopen) a run directory holding the resolved recipe and env.json. Only a folder edgemtl made is
    reused or replaced (recipe_file and the data source are never inside what --overwrite deletes)."""
    run = RunDir(out)
    check_out_dir(run)
    digest = recipe_hash(recipe)
    if run.recipe.exists() and not overwrite:
        old = run.recipe_hash()
        if old != digest and not resume:
            raise EdgemtlError(f"{run.root} was made from a different recipe (hash {old}, now {digest}): "
                               f"use another --out, or --overwrite to replace it")
        if old != digest:
            raise EdgemtlError(f"{run.root}: cannot --resume, the recipe changed (hash {old}, now {digest}); "
                               f"use --overwrite to start again")
    elif overwrite and run.root.exists():
        clear_run_dir(run.root, protected=(recipe_file, recipe.data.source))
    run.root.mkdir(parents=True, exist_ok=True)
    lock_run(run.root)
    mark_run(run.root)
    write_recipe(run, recipe)
    atomic_write_json(run.env, environment_info(recipe.seed))
    return run


def check_out_dir(run: RunDir) -> None:
    """--out must be a new or empty folder, or a run directory edgemtl made: never a project folder."""
    root = run.root
    if root.exists() and not root.is_dir():
        raise EdgemtlError(f"{root}: --out must be a folder (this is a file)")
    if root.is_dir() and any(root.iterdir()) and not is_edgemtl_run(root):
        raise EdgemtlError(f"{root}: not empty and not a run directory made by edgemtl; choose another --out")


def write_recipe(run: RunDir, recipe: Recipe):
    """RUN/recipe.yaml: the resolved recipe and its hash (what `--resume` compares a recipe file with)."""
    atomic_write_text(run.recipe, f"# recipe_hash: {recipe_hash(recipe)}\n" + yaml.safe_dump(recipe.to_dict(), sort_keys=False))


def open_run(path, data=None) -> tuple[RunDir, dict]:
    """The run and its recipe; data: its manifest at another path than the recipe's data.source."""
    run = RunDir(path)
    return run, load_recipe(run.require_recipe(), data=data)


def stage_check(recipe: Recipe, label: str = "recipe") -> dict:
    """Data-level checks on top of the schema, then build the model and run one batch forward."""
    from .data.dataset import prepare
    from .models.build import build_model, count_params, numeric_stats

    data = prepare(recipe, rows_per_split=8)
    model = build_model(recipe, data.labels, data.tokenizers, numeric_stats(recipe, data["train"].x))
    outputs = model({k: v[:4] for k, v in data["train"].x.items()}, training=False)
    shapes = {k: list(v.shape) for k, v in outputs.items()}
    return {"rows": data.row_counts, "params": count_params(model), "outputs": shapes}


def stage_train(recipe: Recipe, run: RunDir, data, resume=False, overwrite=False) -> dict:
    from .train.fit import train_model

    return train_model(recipe, data, run, TEACHER, resume=resume, overwrite=overwrite)


def stage_single_task(recipe: Recipe, run: RunDir, data, resume=False, overwrite=False) -> list:
    """One model per exported task, same encoders: measures what multitask learning buys."""
    from .train.fit import train_model

    out = []
    for task in [t for t in recipe.tasks if not t.auxiliary]:
        print(f"single-task model: {task.name}", file=sys.stderr)
        out.append(train_model(recipe, data, run, f"{SINGLE_TASK_PREFIX}{task.name}", tasks=[task], resume=resume,
                               overwrite=overwrite))
    return out


def stage_evaluate(recipe: Recipe, run: RunDir, data) -> dict:
    from .train.evaluate import evaluate_model

    return {name: evaluate_model(run, recipe, data, name) for name in run.models()}


def stage_compress(recipe: Recipe, run: RunDir, data, resume=False, overwrite=False) -> str:
    from .compress.run import compress

    return compress(run, recipe, data, resume, overwrite)


def stage_export(recipe: Recipe, run: RunDir, data, models: list, formats, precisions, calibration_samples) -> str:
    from .export.run import export_model, format_table

    rows, worked = [], {}  # the parts an int8 model needed in float: the next model (same inputs) starts there
    for model in models:
        rows += export_model(run, recipe, data, model, formats, precisions, calibration_samples, worked)
    return format_table(rows, recipe.tasks)


def stage_bench(recipe: Recipe, run: RunDir, data, student=None, **options) -> str:
    """Measure every bundle of the run; student: the artifact compared with the teacher (default: the int8 TFLite
    bundle of the first non-teacher model in export.model)."""
    from .reports.bench_report import write_reports
    from .bench.run import bench_run

    results = bench_run(run, recipe, data, **options)
    if student is None:
        others = [m for m in recipe.export.model if m != TEACHER]
        student = f"{others[0]}-tflite-int8" if others else None
    return write_reports(run, recipe, results, student if student in results["sizes"] else None)


def stage_report(recipe: Recipe, run: RunDir) -> str:
    from .reports.run_report import write_report

    return write_report(run, recipe)
