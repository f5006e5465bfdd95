"""The stages of `edgemtl run` and of the single commands, in one registry (STAGES) over one RunContext.

`edgemtl run` runs recipe.stages through the registry; `edgemtl train/evaluate/compress/export/bench/report` run
the same entries, their flags turned into recipe overrides first (e.g. `export --format tflite` is
`dataclasses.replace(recipe.export, formats=("tflite",))`), so each stage has one code path. Each stage reads and
writes only the run directory.
"""
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import yaml

from .artifacts import single_task_name
from .errors import EdgemtlError
from .names import TEACHER
from .recipe import Recipe, load_recipe, recipe_hash
from .runcheck import check_run, write_fingerprint
from .rundir import (
    RunDir,
    atomic_write_json,
    atomic_write_text,
    clear_run_dir,
    environment_info,
    is_edgemtl_run,
    lock_run,
    mark_run,
)


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
    write_fingerprint(run, recipe)
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
    text = yaml.safe_dump(recipe.to_dict(), sort_keys=False)
    atomic_write_text(run.recipe, f"# recipe_hash: {recipe_hash(recipe)}\n" + text)


def open_run(path, data=None) -> tuple[RunDir, dict]:
    """The run and its recipe; data: its manifest at another path than the recipe's data.source."""
    run = RunDir(path)
    recipe = load_recipe(run.require_recipe(), data=data)
    check_run(run, recipe)
    return run, recipe


log = logging.getLogger("edgemtl")
ALL_SPLITS = ("train", "val", "test")


@dataclass
class RunContext:
    """What every stage gets: the recipe, the run directory, the --resume / --overwrite flags and the prepared data,
    decoded on first use (the check stage and the report need none; bench needs the test split only).

    models: the models a stage acts on where the recipe does not say (evaluate: None = every model of the run).
    student: the artifact bench compares with the teacher (None: the int8 TFLite bundle of the first non-teacher
    model in export.model).
    """

    recipe: Recipe
    run: RunDir | None = None
    resume: bool = False
    overwrite: bool = False
    splits: tuple[str, ...] = ALL_SPLITS
    models: tuple[str, ...] | None = None
    student: str | None = None
    _data: object = field(default=None, repr=False)

    @property
    def data(self):
        """The recipe's data prepared into the run (labels, tokenizers, decoded splits), once."""
        if self._data is None:
            from .data.dataset import prepare

            self._data = prepare(self.recipe, self.run.preprocess, splits=self.splits)
        return self._data


@dataclass(frozen=True)
class Stage:
    """One stage: its name (one of names.STAGES), what it needs before it starts, and what it does.

    needs(ctx): the models of the run it needs (checked before any data is decoded: the data is prepared on the
    stage's first use of ctx.data); run(ctx): does the work and returns what the command prints (None: nothing).
    """

    name: str
    help: str
    run: Callable[[RunContext], str | None]
    needs: Callable[[RunContext], tuple[str, ...]] = lambda ctx: ()


def run_stage(ctx: RunContext, name: str) -> str | None:
    """Run one registry entry: check what it needs, then run it."""
    stage = STAGES[name]
    for model in stage.needs(ctx):
        ctx.run.require_model(model)
    return stage.run(ctx)


# ---- the stages ---------------------------------------------------------------------------------------------------

def stage_check(recipe: Recipe, label: str = "recipe") -> dict:
    """Data-level checks on top of the schema, then build the model and run one batch forward."""
    from .data.dataset import prepare
    from .data.manifest import describe_metadata
    from .models.build import build_model, count_params, numeric_stats

    adopt = None
    if recipe.training.from_run.run:  # the vocabularies the teacher will have (and RUN checked before any data)
        from .train.from_run import adopter, open_source

        adopt = adopter(open_source(recipe), recipe)
    data = prepare(recipe, rows_per_split=8, adopt=adopt)
    model = build_model(recipe, data.labels, data.tokenizers, numeric_stats(recipe, data["train"].x))
    outputs = model({k: v[:4] for k, v in data["train"].x.items()}, training=False)
    shapes = {k: list(v.shape) for k, v in outputs.items()}
    return {"rows": data.row_counts, "params": count_params(model), "outputs": shapes,
            "metadata": describe_metadata(data.metadata)}


def check_text(info: dict) -> str:
    """stage_check's result as the check command prints it; npz metadata arrays are listed once, at the end."""
    listed = "".join(f"\n  {line}" for line in info["metadata"])
    metadata = f"\nmetadata arrays (not one entry per row, so not columns):{listed}" if listed else ""
    return f"ok — rows {info['rows']}, {info['params']:,} parameters, outputs {info['outputs']}{metadata}"


def _check(ctx: RunContext) -> str:
    return check_text(stage_check(ctx.recipe))


def _train(ctx: RunContext) -> str:
    from .train.fit import check_free, train_model

    check_free(ctx.run.model_dir(TEACHER), ctx.resume, ctx.overwrite)  # before the data is decoded
    source, hooks = None, None
    if ctx.recipe.training.from_run.run:  # incremental: the teacher starts from an earlier run's (train/from_run.py)
        from .data.dataset import prepare
        from .train.fit import TrainHooks
        from .train.from_run import adopter, init_net, open_source

        source = open_source(ctx.recipe)
        if ctx._data is None:
            ctx._data = prepare(ctx.recipe, ctx.run.preprocess, splits=ctx.splits,
                                adopt=adopter(source, ctx.recipe))
        hooks = TrainHooks(init_net=lambda net: init_net(source, ctx.recipe, net))
    summary = train_model(ctx.recipe, ctx.data, ctx.run, TEACHER, resume=ctx.resume, overwrite=ctx.overwrite,
                          hooks=hooks)
    if source is not None:
        from .train.from_run import write_record

        write_record(source, ctx.run)
    return (f"teacher: {summary['params']:,} parameters, {summary['epochs_run']} epochs, best epoch "
            f"{summary['best_epoch']} -> {ctx.run.model_file(TEACHER)}")


def _single_task(ctx: RunContext) -> str:
    """One model per exported task, same encoders: measures what multitask learning buys."""
    from .train.fit import train_model

    lines = []
    for task in [t for t in ctx.recipe.tasks if not t.auxiliary]:
        name = single_task_name(task.name)
        log.info("single-task model: %s", task.name)
        summary = train_model(ctx.recipe, ctx.data, ctx.run, name, tasks=[task], resume=ctx.resume,
                              overwrite=ctx.overwrite)
        lines.append(f"{name}: {summary['params']:,} parameters, best epoch {summary['best_epoch']}")
    return "\n".join(lines)


def _evaluate(ctx: RunContext) -> str:
    from .model_metrics import read_metrics
    from .train.evaluate import evaluate_model, format_patterns, format_scores

    models = ctx.models or tuple(ctx.run.models())
    tables = []
    for name in models:
        scores = evaluate_model(ctx.run, ctx.recipe, ctx.data, name)
        table = format_scores(scores, ctx.recipe.tasks)
        by_pattern = format_patterns(read_metrics(ctx.run, name).get("patterns"), ctx.recipe.tasks)
        table = f"{table}\n\n{by_pattern}" if by_pattern else table
        tables.append(table if len(models) == 1 else f"{name}:\n{table}")
    from .reports.transfer import update_transfer

    update_transfer(ctx.run, ctx.recipe)  # teacher metrics.json "transfer": Δm and per-task verdicts
    return "\n\n".join(tables)


def _compress(ctx: RunContext) -> str:
    from .compress.run import compress

    return compress(ctx.run, ctx.recipe, ctx.data, ctx.resume, ctx.overwrite)


def _export(ctx: RunContext) -> str:
    from .compress.run import deployed_models
    from .export.run import export_model, format_table, plan

    cfg = ctx.recipe.export
    for model in cfg.model:
        plan(model, cfg.formats, cfg.precisions)  # unknown names fail before any data is decoded
    rows, worked = [], {}  # the parts an int8 model needed in float: the next model (same inputs) starts there
    # an explicit --model is exported as named; else student-qat gives way to the int8 student compress handed on
    for model in (cfg.model if ctx.models else deployed_models(ctx.run, cfg.model)):
        rows += export_model(ctx.run, ctx.recipe, ctx.data, model, cfg.formats, cfg.precisions,
                             cfg.calibration_samples, worked)
    return format_table(rows, ctx.recipe.tasks)


def _bench(ctx: RunContext) -> str:
    """Measure every bundle of the run (what and how: recipe.bench); ctx.student: the artifact compared with the
    teacher."""
    from .bench.run import bench_run
    from .reports.bench_report import write_reports

    results = bench_run(ctx.run, ctx.recipe, ctx.data)
    student = ctx.student
    if student is None:
        from .compress.run import deployed_models

        others = [m for m in deployed_models(ctx.run, ctx.recipe.export.model) if m != TEACHER]
        student = f"{others[0]}-tflite-int8" if others else None
    return write_reports(ctx.run, ctx.recipe, results, student if student in results["sizes"] else None)


def _report(ctx: RunContext) -> str:
    """RUN/report.md, then RUN/report.html (which reads what report.md's stage stored, Δm included)."""
    from .reports.html_report import write_html_report
    from .reports.run_report import write_report

    text = write_report(ctx.run, ctx.recipe)
    missing = [m for m in ("jinja2", "markdown") if importlib.util.find_spec(m) is None]
    if missing:  # a light install: report.md only
        log.warning("report.html not written: it needs %s (pip install 'edgemtl[train]')", " and ".join(missing))
        return text
    page = write_html_report(ctx.run, ctx.recipe)
    log.info("report.html: %.0f KB in %.2f s", page["bytes"] / 1024, page["seconds"])
    return text


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("check", "validate the recipe and its data, build the model, run one batch", _check),
    Stage("train", "train the recipe's model", _train),
    Stage("single_task", "one model per task, same encoders", _single_task),
    Stage("evaluate", "score trained models on every split", _evaluate,
          needs=lambda ctx: ctx.models or ()),
    Stage("compress", "distil, prune and train quantization-aware students", _compress,
          needs=lambda ctx: (ctx.recipe.compress.teacher,)),
    Stage("export", "export bundles through the parity gate", _export,
          needs=lambda ctx: tuple(ctx.recipe.export.model)),
    Stage("bench", "measure every bundle", _bench),
    Stage("report", "write RUN/report.md and RUN/report.html", _report),
)}


def with_export(recipe: Recipe, models=None, formats=None, precisions=None, calibration_samples=None) -> Recipe:
    """The recipe with the export command's flags as its export section (None: the recipe's value)."""
    given = {"model": models, "formats": formats, "precisions": precisions,
             "calibration_samples": calibration_samples}
    return _with_section(recipe, "export", given)


def _with_section(recipe: Recipe, section: str, given: dict) -> Recipe:
    """The recipe with command-line values in one section, validated as the recipe's own keys would be."""
    from .recipe.load import validate_recipe

    raw = recipe.to_dict()
    raw[section].update({k: v for k, v in given.items() if v is not None})
    return validate_recipe(raw, "command line")


def with_bench(recipe: Recipe, **flags) -> Recipe:
    """The recipe with the bench command's flags (backends, threads, runs, batch, max_seconds; None: the recipe's)
    as its bench section."""
    return _with_section(recipe, "bench", flags)
