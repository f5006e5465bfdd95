"""edgemtl command line: check | train | evaluate | compress | export | bench | report | pack | predict | run |
reference. Results (tables) go to stdout, messages to stderr through the "edgemtl" logger (-q: warnings only, -v:
debug too); user errors print one line each, no traceback."""
import argparse
import functools
import json
import logging
import signal
import sys
import threading
import time

from .errors import EdgemtlError, NotDeployableError

log = logging.getLogger("edgemtl")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test's capture, a redirected stream)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure_logging(quiet: bool = False, verbose: bool = False) -> None:
    """The "edgemtl" logger for one command: INFO to stderr, WARNING under -q, DEBUG under -v; plain messages."""
    for handler in [h for h in log.handlers if isinstance(h, _StderrHandler)]:
        log.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.propagate = False  # libraries (TensorFlow) configure the root logger: its handler would print each twice
    log.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)


def _verbosity_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr, no progress")
    group.add_argument("-v", "--verbose", action="store_true", help="debug messages on stderr too")
    return parent


def _recipe_args(p):
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--data", help="manifest to use instead of the recipe's data.source")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set training.epochs=3 --set tasks.digit.weight=2")


def _run_args(p):
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")


def _moved_data_arg(p):
    p.add_argument("--data", help="the run's manifest at another path (the run was copied to another machine, "
                                  "e.g. a device with the light install)")


def build_parser():
    parser = argparse.ArgumentParser(prog="edgemtl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add = functools.partial(sub.add_parser, parents=[_verbosity_parent()])  # -q / -v on every command
    p = add("check", help="validate a recipe and its data, build the model, run one batch")
    _recipe_args(p)
    p.set_defaults(func=cmd_check)
    p = add("train", help="train the recipe's model into a run directory")
    _recipe_args(p)
    _run_args(p)
    p.add_argument("--out", help="run directory (default: runs/<recipe name>)")
    p.add_argument("--single-task", action="store_true", help="also train one model per task, same encoders")
    p.set_defaults(func=cmd_train)
    p = add("evaluate", help="score a trained model on every split")
    p.add_argument("run", help="run directory")
    p.add_argument("--model", default="teacher", help="model in RUN/models (default: teacher)")
    _moved_data_arg(p)
    p.set_defaults(func=cmd_evaluate)
    p = add("compress", help="distil a small student from the teacher, prune it, train it "
                       "quantization-aware; compare them all")
    p.add_argument("run", help="run directory with a trained teacher")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a compress key for this call, e.g. --set compress.prune.sparsity=0.7")
    _run_args(p)
    p.set_defaults(func=cmd_compress)
    p = add("export", help="export TFLite / ONNX / C artifacts, each through the parity gate, as bundles")
    p.add_argument("run", help="run directory")
    p.add_argument("--model", help="model(s) in RUN/models, comma-separated (default: the recipe's export.model)")
    p.add_argument("--format", help="comma-separated: tflite,onnx,c (default: the recipe's export.formats)")
    p.add_argument("--precision", help="comma-separated: fp32,fp16,dynamic,int8,int8io (default: the recipe's)")
    p.add_argument("--calibration-samples", type=int, help="training rows for int8 calibration")
    p.set_defaults(func=cmd_export)
    p = add("bench", help="accuracy, latency, size and memory of every bundle on every backend here")
    p.add_argument("run", help="run directory with exports")
    p.add_argument("--backend", help="comma-separated (default: bench.backends, else all; those absent here are "
                                     "skipped with the reason)")
    p.add_argument("--threads", help="comma-separated thread counts (default: bench.threads, else 1 and all cores)")
    p.add_argument("--runs", type=int, help="timed calls per measurement (default: bench.runs, 200)")
    p.add_argument("--max-seconds", type=float, help="time limit of one measurement (default: bench.max_seconds, 5)")
    p.add_argument("--batch", type=int, help="batch of the throughput measurement (default: bench.batch, 32)")
    p.add_argument("--student", help="artifact compared with teacher-tflite-fp32 (default: <student>-tflite-int8)")
    _moved_data_arg(p)
    p.set_defaults(func=cmd_bench)
    p = add("pack", help="a folder to bench the run's bundles on another machine: the bundles, the "
                       "recipe and the test rows' files (then 'edgemtl bench OUT/run' there)")
    p.add_argument("run", help="run directory with exports")
    p.add_argument("out", help="folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    _moved_data_arg(p)
    p.set_defaults(func=cmd_pack)
    p = add("predict", help="answers of a bundle for raw inputs (--<input> VALUE ...) or a manifest CSV")
    p.add_argument("bundle", help="bundle folder (RUN/exports/<model>-<format>-<precision>)")
    p.add_argument("--manifest", help="CSV with the recipe's input columns: predict every row")
    p.add_argument("--out", help="predictions CSV for --manifest (default: <manifest>.predictions.csv)")
    p.add_argument("--json", action="store_true", help="print the full answers (all scores) as JSON")
    p.add_argument("--device", choices=("cpu", "cuda", "cuda-graph"), default="cpu",
                   help="where an ONNX bundle runs (GPU devices fall back to cpu without a GPU; TFLite: cpu)")
    p.add_argument("--allow-undeployable", action="store_true",
                   help="run a bundle that failed the parity gate (refused otherwise)")
    p.set_defaults(func=cmd_predict)
    p = add("report", help="write RUN/report.md from the run's metrics, compress.md and bench report")
    p.add_argument("run", help="run directory")
    p.set_defaults(func=cmd_report)
    p = add("run", help="run the recipe's stages in order (the main job)")
    _recipe_args(p)
    _run_args(p)
    p.add_argument("--out", help="run directory (default: runs/<recipe name>)")
    p.set_defaults(func=cmd_run)
    p = add("reference", help="print the recipe reference (every key, default, meaning) as Markdown")
    p.add_argument("--update", metavar="FILE", help="rewrite the reference block of FILE (docs/reference.md) instead")
    p.add_argument("--json-schema", nargs="?", const="-", metavar="FILE",
                   help="write a JSON Schema (draft 2020-12) of the recipe to FILE (default: print it), for editors")
    p.set_defaults(func=cmd_reference)
    return parser


def _load(args):
    from .recipe import load_recipe

    return load_recipe(args.recipe, args.set, args.data)


def _print(summary) -> None:
    if summary:
        print(summary)


def cmd_check(args):
    from .stages import RunContext, run_stage

    print(f"{args.recipe}: {run_stage(RunContext(_load(args)), 'check')}")


def cmd_train(args):
    from .stages import RunContext, init_run, run_stage

    recipe = _load(args)
    run = init_run(recipe, args.out or f"runs/{recipe.name}", args.resume, args.overwrite, args.recipe)
    ctx = RunContext(recipe, run, args.resume)
    _print(run_stage(ctx, "train"))
    if args.single_task:
        _print(run_stage(ctx, "single_task"))


def cmd_evaluate(args):
    from .stages import RunContext, open_run, run_stage

    run, recipe = open_run(args.run, args.data)
    _print(run_stage(RunContext(recipe, run, models=(args.model,)), "evaluate"))


def cmd_compress(args):
    from .recipe import load_recipe
    from .stages import RunContext, open_run, run_stage, write_recipe

    run, _ = open_run(args.run)
    bad = [item for item in args.set if not item.startswith("compress.")]
    if bad:
        raise EdgemtlError(f"--set {bad[0]}: compress only takes compress.* keys (the teacher is already trained)")
    recipe = load_recipe(run.recipe, args.set)
    _print(run_stage(RunContext(recipe, run, args.resume, args.overwrite), "compress"))
    if args.set:  # the run's recipe now says what its compressed models were made with
        write_recipe(run, recipe)
        log.info("%s: compress settings updated (%s)", run.recipe, ", ".join(args.set))


def _split(value: str | None) -> list | None:
    return value.split(",") if value else None


def cmd_export(args):
    from .stages import RunContext, open_run, run_stage, with_export

    run, recipe = open_run(args.run)
    recipe = with_export(recipe, _split(args.model), _split(args.format), _split(args.precision),
                         args.calibration_samples)
    named = tuple(_split(args.model) or ()) or None  # an explicit --model: no hand-over (stages._export)
    table = run_stage(RunContext(recipe, run, models=named), "export")
    from .compress.run import deployed_models
    from .export.run import require_deployable

    exported = recipe.export.model if named else deployed_models(run, recipe.export.model)
    require_deployable(run, exported, table)  # exit 3 listing what failed the gate
    _print(table)


def cmd_bench(args):
    from .stages import RunContext, open_run, run_stage, with_bench

    run, recipe = open_run(args.run, args.data)
    threads = [int(t) for t in args.threads.split(",")] if args.threads else None
    recipe = with_bench(recipe, backends=_split(args.backend), threads=threads, runs=args.runs, batch=args.batch,
                        max_seconds=args.max_seconds)
    _print(run_stage(RunContext(recipe, run, splits=("test",), student=args.student), "bench"))


def cmd_report(args):
    from .stages import RunContext, open_run, run_stage

    run, recipe = open_run(args.run)
    _print(run_stage(RunContext(recipe, run), "report"))


def cmd_run(args):
    from .stages import RunContext, init_run, run_stage

    recipe = _load(args)
    run = init_run(recipe, args.out or f"runs/{recipe.name}", args.resume, args.overwrite, args.recipe)
    ctx = RunContext(recipe, run, args.resume, args.overwrite)
    for stage in recipe.stages:
        start = time.time()
        log.info("== %s ==", stage)
        if stage == "bench" and not run.bundles() and run.rejected_bundles():
            log.warning("bench skipped: no deployable bundle (all failed the parity gate)")
            continue
        _print(run_stage(ctx, stage))
        log.info("   %s done in %.1f s", stage, time.time() - start)
    print(f"run directory: {run.root}")
    if "export" in recipe.stages:
        from .compress.run import deployed_models
        from .export.run import deployable_summary

        line, missing = deployable_summary(run, deployed_models(run, recipe.export.model))
        print(line)
        if missing:
            raise NotDeployableError(f"no deployable artifact of {', '.join(missing)}: see the export table above "
                                     f"and RUN/exports/rejected/")


def cmd_pack(args):
    from pathlib import Path

    from .bench.pack import pack_run
    from .stages import open_run

    run, recipe = open_run(args.run, args.data)
    print(pack_run(run, recipe, Path(args.out), args.overwrite))


def cmd_predict(args, extra):
    from .runtime.predict_cli import main_predict

    main_predict(args, extra)


def cmd_reference(args):
    from .recipe.reference import json_schema, reference_markdown, update_block, write_json_schema

    if args.json_schema == "-":
        print(json.dumps(json_schema(), indent=2))
    elif args.json_schema:
        write_json_schema(args.json_schema)
        log.info("wrote %s", args.json_schema)
    elif args.update:
        update_block(args.update)
    else:
        print(reference_markdown())


RUN_COMMANDS = ("evaluate", "compress", "export", "bench", "pack")  # they read or write an existing RUN


def _lock_run_of(args) -> None:
    """Commands on a run hold its lock (train and run take it in init_run); a missing run is the command's error."""
    from .rundir import RunDir, lock_run

    if args.command in RUN_COMMANDS and RunDir(args.run).recipe.is_file():
        lock_run(args.run)


def _terminated(signum, frame):
    """SIGTERM unwinds like Ctrl-C, so `finally` blocks remove temporary folders."""
    raise KeyboardInterrupt


def _on_sigterm(handler):
    """Install a SIGTERM handler where Python allows one (the main thread); returns the previous one."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def main(argv=None) -> int:
    from .rundir import release_run_locks

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # predict takes one --<input> flag per model input
    if extra and args.command != "predict":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    configure_logging(args.quiet, args.verbose)
    previous = _on_sigterm(_terminated)
    try:
        _lock_run_of(args)
        if args.command == "predict":
            args.func(args, extra)
        else:
            args.func(args)
        return 0
    except EdgemtlError as e:
        if getattr(e, "output", None):  # what the command had to show before failing (export's table)
            print(e.output)
        for message in e.messages:
            print(f"error: {message}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:
        print("\ninterrupted: what was saved is kept; continue with --resume", file=sys.stderr)
        return 130
    finally:
        release_run_locks()
        _on_sigterm(previous)


if __name__ == "__main__":
    sys.exit(main())
