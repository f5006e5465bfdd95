"""edgemtl command line: check | train | evaluate | compress | export | bench | report | pack | predict | run |
reference. Results (tables) go to stdout, messages to stderr through the "edgemtl" logger (-q: warnings only, -v:
debug too); user errors print one line each, no traceback."""
import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import EdgemtlError, NotDeployableError
from .runsafety import STOP_REQUESTED

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
    group.add_argument("-v", "--verbose", action="store_true",
                       help="debug messages on stderr too, and TensorFlow's own start-up logs")
    return parent


def _json_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true",
                        help="print the final result as one JSON object on stdout instead of the tables")
    return parent


# Recipe keys `--set` may override on a command that acts on an existing run (applied to RUN/recipe.yaml for that
# call only; compress also records its compress.* keys in the run's recipe). Keys that shape the trained model
# (inputs, fusion, trunk, tasks, training) are refused: the run's models were built from them.
RUN_SET_KEYS = {"evaluate": ("data.",), "compress": ("compress.",), "export": ("export.", "data."),
                "bench": ("bench.", "data."), "pack": ("bench.", "data.")}

EXAMPLES = {
    "check": "edgemtl check recipes/av_digits.yaml --set training.epochs=1",
    "train": "edgemtl train recipes/av_digits.yaml --out runs/av --set training.epochs=5",
    "evaluate": "edgemtl evaluate runs/av --model student --json",
    "compress": "edgemtl compress runs/av --set compress.prune.sparsity=0.7",
    "export": "edgemtl export runs/av --format tflite,onnx --precision fp32,int8",
    "bench": "edgemtl bench runs/av --backend litert,ort-cpu --threads 1,4",
    "pack": "edgemtl pack runs/av /tmp/av-bench   # then on the device: edgemtl bench /tmp/av-bench/run",
    "predict": "edgemtl predict runs/av/exports/teacher-tflite-int8 --audio a.wav --image 7.png",
    "report": "edgemtl report runs/av",
    "run": "edgemtl run recipes/av_digits.yaml --set stages=[check,train,export]",
    "reference": "edgemtl reference --update docs/reference.md",
    "env": "edgemtl env --json",
}


def _recipe_args(p):
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--data", help="manifest to use instead of the recipe's data.source")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set training.epochs=3 --set tasks.digit.weight=2")
    p.add_argument("--from", dest="from_run", metavar="RUN",
                   help="incremental training: start the teacher from RUN's teacher (its encoders, fusion, trunk "
                        "and the heads of the tasks it has; new tasks get fresh heads); sets "
                        "training.from_run.run, training.from_run.freeze says what stays fixed")


def _run_recipe_args(p, command: str):
    """--data and --set of a command on an existing run: overrides of RUN/recipe.yaml for this call."""
    keys = ", ".join(f"{k}*" for k in RUN_SET_KEYS[command])
    p.add_argument("--data", help="the run's manifest at another path (the run was copied to another machine, "
                                  "e.g. a device with the light install)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a key of RUN/recipe.yaml for this call (only {keys})")


def _run_args(p):
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")


def build_parser():
    parser = argparse.ArgumentParser(prog="edgemtl", description=__doc__,
                                     epilog="conventions (exit codes, --json, -q/-v, --set): docs/cli.md")
    parser.add_argument("--version", action="version", version=f"edgemtl {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, help, json_flag=True):
        parents = [_verbosity_parent()] + ([_json_parent()] if json_flag else [])  # -q / -v / --json everywhere
        return sub.add_parser(name, help=help, description=help, parents=parents,
                              epilog=f"example:\n  {EXAMPLES[name]}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p = add("check", help="validate a recipe and its data, build the model, run one batch")
    _recipe_args(p)
    p.set_defaults(func=cmd_check)
    p = add("train", help="train the recipe's model into a run directory")
    _recipe_args(p)
    _run_args(p)
    p.add_argument("--out", help="run directory (default: runs/<recipe name>)")
    p.add_argument("--single-task", action="store_true", help="also train one model per task, same encoders")
    p.add_argument("--workers", metavar="HOST:PORT,...", help="train on several machines: every worker's address, "
                   "the same list on each (writes TF_CONFIG, replacing one in the environment; implies "
                   "training.distribute=multi_worker; docs/distributed.md)")
    p.add_argument("--worker-index", type=int, metavar="I", help="with --workers: this machine's position in the "
                   "list (0: the chief, which writes the run directory)")
    p.set_defaults(func=cmd_train)
    p = add("evaluate", help="score a trained model on every split")
    p.add_argument("run", help="run directory")
    p.add_argument("--model", default="teacher", help="model in RUN/models (default: teacher)")
    _run_recipe_args(p, "evaluate")
    p.set_defaults(func=cmd_evaluate)
    p = add("compress", help="distil a small student from the teacher, prune it, train it "
                             "quantization-aware; compare them all")
    p.add_argument("run", help="run directory with a trained teacher")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a compress key, e.g. --set compress.prune.sparsity=0.7 (recorded in "
                        "RUN/recipe.yaml)")
    _run_args(p)
    p.set_defaults(func=cmd_compress)
    p = add("export", help="export TFLite / ONNX / C artifacts, each through the parity gate, as bundles")
    p.add_argument("run", help="run directory")
    p.add_argument("--model", help="model(s) in RUN/models, comma-separated (default: the recipe's export.model)")
    p.add_argument("--format", help="comma-separated: tflite,onnx,c,micro (default: the recipe's export.formats)")
    p.add_argument("--precision", help="comma-separated: fp32,fp16,dynamic,int8,int8io (default: the recipe's)")
    p.add_argument("--calibration-samples", type=int, help="training rows for int8 calibration")
    p.add_argument("--target", choices=("latency", "size", "none"),
                   help="what the precision search recommends per format: the fastest deployable bundle on this "
                        "machine (latency), the smallest (size), or no search (default: export.target, latency)")
    _run_recipe_args(p, "export")
    p.set_defaults(func=cmd_export)
    p = add("bench", help="accuracy, latency, size and memory of every bundle on every backend here")
    p.add_argument("run", help="run directory with exports")
    p.add_argument("--backend", help="comma-separated (default: bench.backends, else all; those absent here are "
                                     "skipped with the reason)")
    p.add_argument("--threads", help="comma-separated thread counts (default: bench.threads, else 1 and all cores)")
    p.add_argument("--runs", type=int, help="timed calls per measurement (default: bench.runs, 200)")
    p.add_argument("--max-seconds", type=float, help="time limit of one measurement (default: bench.max_seconds, 5)")
    p.add_argument("--batch", type=int, help="batch of the throughput measurement (default: bench.batch, 32)")
    p.add_argument("--student", help="artifact compared with teacher-tflite-fp32 (default: the fastest deployable "
                                     "student artifact, measured side by side on this CPU)")
    p.add_argument("--keras", action="store_true", default=None,
                   help="also time the Keras models (keras.predict, tf.function: slow; default: bench.keras)")
    _run_recipe_args(p, "bench")
    p.set_defaults(func=cmd_bench)
    p = add("pack", help="a folder to bench the run's bundles on another machine: the bundles, the "
                         "recipe and the test rows' files (then 'edgemtl bench OUT/run' there)")
    p.add_argument("run", help="run directory with exports")
    p.add_argument("out", help="folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    _run_recipe_args(p, "pack")
    p.set_defaults(func=cmd_pack)
    p = add("predict", help="answers of a bundle for raw inputs (--<input> VALUE ...) or a manifest CSV",
            json_flag=False)
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
    p = add("env", help="versions, CPU model and flags (AVX2, AVX-512, VNNI, AMX), GPUs and installed extras "
                        "(-v: also the GPUs TensorFlow sees, which imports it)")
    p.set_defaults(func=cmd_env)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


@dataclass
class Result:
    """What a command ends with: the text it prints (tables) and the same as one JSON object (--json)."""

    text: str | None
    data: dict


def _load(args):
    from .recipe import load_recipe

    recipe = load_recipe(args.recipe, args.set, args.data)
    if getattr(args, "from_run", None):  # relative to the working directory, like --out
        training = recipe.training
        source = dataclasses.replace(training.from_run, run=str(Path(args.from_run).resolve()))
        recipe = dataclasses.replace(recipe, training=dataclasses.replace(training, from_run=source))
    return recipe


def _open_run(args, flag_sets: list | None = None):
    """The run and its recipe with this call's --set / --data (and the command's flags as overrides), every
    argument checked before any model, data or TensorFlow is loaded."""
    from .recipe import load_recipe
    from .runcheck import check_run
    from .rundir import RunDir

    allowed = RUN_SET_KEYS[args.command]
    sets = list(getattr(args, "set", None) or [])
    for item in sets:
        if not item.startswith(allowed):
            keys = " or ".join(f"{k}*" for k in allowed)
            raise EdgemtlError(f"--set {item}: {args.command} takes only {keys} keys (the run's models were built "
                               f"from the rest of RUN/recipe.yaml)")
    run = RunDir(args.run)
    recipe = load_recipe(run.require_recipe(), sets + (flag_sets or []), getattr(args, "data", None))
    check_run(run, recipe)
    return run, recipe


def _split(value: str | None) -> list | None:
    return value.split(",") if value else None


def _numbers(flag: str, value: str | None) -> list[int] | None:
    try:
        return [int(t) for t in value.split(",")] if value else None
    except ValueError:
        raise EdgemtlError(f"{flag}: expected comma-separated whole numbers, got '{value}'") from None


def _model_metrics(run, model: str) -> dict:
    from .model_metrics import read_metrics

    return read_metrics(run, model)


def _read_json(path, what: str):
    from . import jsonio

    return jsonio.read(path, what) if path.is_file() else None


def cmd_check(args) -> Result:
    from .stages import check_text, stage_check

    info = stage_check(_load(args))
    text = f"{args.recipe}: {check_text(info)}"
    return Result(text, {"recipe": str(args.recipe), "ok": True, **info})


def cmd_train(args) -> Result:
    from .stages import RunContext, init_run, run_stage

    _join_cluster(args)
    recipe = _load(args)
    run = init_run(recipe, args.out or f"runs/{recipe.name}", args.resume, args.overwrite, args.recipe)
    ctx = RunContext(recipe, run, args.resume)
    lines = [run_stage(ctx, "train")]
    if args.single_task:
        lines.append(run_stage(ctx, "single_task"))
    return Result("\n".join(x for x in lines if x),
                  {"run": str(run.root), "models": {m: _model_metrics(run, m) for m in run.models()}})


def _join_cluster(args) -> None:
    """--workers / --worker-index: this process's TF_CONFIG, and multi_worker training."""
    if args.workers is None:
        if args.worker_index is not None:
            raise EdgemtlError("--worker-index needs --workers: every worker's host:port, comma-separated")
        return
    from .train.cluster import tf_config

    os.environ["TF_CONFIG"] = json.dumps(tf_config(args.workers, args.worker_index))
    args.set = [*args.set, "training.distribute=multi_worker"]


def cmd_evaluate(args) -> Result:
    from .stages import RunContext, run_stage

    run, recipe = _open_run(args)
    text = run_stage(RunContext(recipe, run, models=(args.model,)), "evaluate")
    return Result(text, {"run": str(run.root), "model": args.model,
                         "splits": _model_metrics(run, args.model).get("splits", {})})


def cmd_compress(args) -> Result:
    from .stages import RunContext, run_stage, write_recipe

    run, recipe = _open_run(args)
    text = run_stage(RunContext(recipe, run, args.resume, args.overwrite), "compress")
    if args.set:  # the run's recipe now says what its compressed models were made with
        write_recipe(run, recipe)
        log.info("%s: compress settings updated (%s)", run.recipe, ", ".join(args.set))
    return Result(text, {"run": str(run.root), "compress": _read_json(run.compress_json, "compress results")})


def cmd_export(args) -> Result:
    from .export.formats import plan
    from .stages import RunContext, run_stage, with_export

    models, formats, precisions = _split(args.model), _split(args.format), _split(args.precision)
    plan("teacher", formats or [], precisions or [])  # unknown flag values: one line each, before anything loads
    run, recipe = _open_run(args)
    recipe = with_export(recipe, models, formats, precisions, args.calibration_samples, args.target)
    named = tuple(models or ()) or None  # an explicit --model: no hand-over (stages._export)
    text = run_stage(RunContext(recipe, run, models=named), "export")
    from .compress.run import deployed_models
    from .export.run import require_deployable

    exported = recipe.export.model if named else deployed_models(run, recipe.export.model)
    require_deployable(run, exported, None if args.json else text)  # exit 3 listing what failed the gate
    summaries = {m: _read_json(run.export_summary(m), "export summary") for m in exported}
    return Result(text, {"run": str(run.root), "artifacts": summaries})


def cmd_bench(args) -> Result:
    from .stages import RunContext, run_stage, with_bench

    threads = _numbers("--threads", args.threads)
    run, recipe = _open_run(args)
    if args.student is not None:
        have = [b.name for b in run.bundles()]
        if args.student not in have:
            raise EdgemtlError(f"--student {args.student}: no such bundle in {run.exports} (have: "
                               f"{', '.join(have) or 'none'})")
    recipe = with_bench(recipe, backends=_split(args.backend), threads=threads, runs=args.runs, batch=args.batch,
                        max_seconds=args.max_seconds, keras=args.keras)
    text = run_stage(RunContext(recipe, run, splits=("test",), student=args.student), "bench")
    return Result(text, {"run": str(run.root), "results": _read_json(run.bench_results, "bench results")})


def cmd_report(args) -> Result:
    from .stages import RunContext, open_run, run_stage

    run, recipe = open_run(args.run)
    text = run_stage(RunContext(recipe, run), "report")
    from .reports.html_report import pointers

    return Result("\n".join([text.rstrip("\n"), "", *pointers(run)]),
                  {"run": str(run.root), "report": str(run.report), "html": str(run.report_html)})


def cmd_run(args) -> Result:
    from .stages import RunContext, init_run, run_stage

    recipe = _load(args)
    run = init_run(recipe, args.out or f"runs/{recipe.name}", args.resume, args.overwrite, args.recipe)
    ctx = RunContext(recipe, run, args.resume, args.overwrite)
    done = {}
    for stage in recipe.stages:
        start = time.time()
        log.info("== %s ==", stage)
        if stage == "bench" and not run.bundles() and run.rejected_bundles():
            log.warning("bench skipped: no deployable bundle (all failed the parity gate)")
            continue
        summary = run_stage(ctx, stage)
        if summary and not args.json:
            print(summary)
        done[stage] = {"summary": summary, "seconds": round(time.time() - start, 2)}
        log.info("   %s done in %.1f s", stage, time.time() - start)
    lines, data = [f"run directory: {run.root}"], {"run": str(run.root), "stages": done}
    missing = []
    if "export" in recipe.stages:
        from .compress.run import deployed_models
        from .export.run import deployable_summary

        line, missing = deployable_summary(run, deployed_models(run, recipe.export.model))
        lines.append(line)
        data["deployable"] = line
    from .reports.html_report import pointers

    lines += pointers(run)  # last: where the report is, and the TensorBoard command
    data["report"] = str(run.report_html) if run.report_html.exists() else None
    if missing:
        raise NotDeployableError(f"no deployable artifact of {', '.join(missing)}: see the export table above "
                                 f"and RUN/exports/rejected/", output=None if args.json else "\n".join(lines))
    return Result("\n".join(lines), data)


def cmd_pack(args) -> Result:
    from pathlib import Path

    from .bench.pack import pack_run

    run, recipe = _open_run(args)
    text = pack_run(run, recipe, Path(args.out), args.overwrite)
    return Result(text, {"run": str(run.root), "out": str(args.out), "summary": text})


def cmd_predict(args, extra):
    from .runtime.predict_cli import main_predict

    main_predict(args, extra)


def cmd_reference(args) -> Result:
    from .recipe.reference import json_schema, reference_markdown, update_block, write_json_schema

    if args.json_schema == "-":
        return Result(json.dumps(json_schema(), indent=2), json_schema())
    if args.json_schema:
        write_json_schema(args.json_schema)
        log.info("wrote %s", args.json_schema)
        return Result(None, {"json_schema": args.json_schema})
    if args.update:
        update_block(args.update)
        return Result(None, {"updated": args.update})
    text = reference_markdown()
    return Result(text, {"markdown": text})


def cmd_env(args) -> Result:
    from .env_info import environment, format_environment

    info = environment(with_tensorflow=args.verbose)
    return Result(format_environment(info), info)


RUN_COMMANDS = ("evaluate", "compress", "export", "bench", "pack", "report")  # they read and write an existing RUN


def _lock_run_of(args) -> None:
    """Commands on a run hold its lock (train and run take it in init_run); a missing run is the command's error."""
    from .rundir import RunDir, lock_run

    if args.command in RUN_COMMANDS and RunDir(args.run).recipe.is_file():
        lock_run(args.run)


def refuse_repeated_flags(parser, command: str, argv: list) -> None:
    """A single-valued flag given twice is an error, not last-wins (argparse would keep the last silently);
    flags that collect values (--set) may repeat."""
    sub = next(a for a in parser._subparsers._group_actions if isinstance(a, argparse._SubParsersAction))
    actions = sub.choices[command]._actions
    single = {s: a for a in actions if type(a) is argparse._StoreAction for s in a.option_strings}
    every = [s for a in actions for s in a.option_strings if s.startswith("--")]
    seen: dict = {}
    tokens = argv[:argv.index("--")] if "--" in argv else argv
    for i, token in enumerate(tokens):
        flag, _, inline = token.partition("=")
        if flag.startswith("--") and flag not in every:  # argparse takes unique prefixes: --mod for --model
            longer = [s for s in every if s.startswith(flag)]
            flag = longer[0] if len(longer) == 1 else flag
        action = single.get(flag)
        if action is None:
            continue
        value = inline if inline else (tokens[i + 1] if i + 1 < len(tokens) else "")
        if action.dest in seen:
            raise EdgemtlError(f"{flag} is given twice ({seen[action.dest]!r}, then {value!r}): give it once")
        seen[action.dest] = value


def _terminated(signum, frame):
    """SIGTERM unwinds like Ctrl-C, so `finally` blocks remove temporary folders."""
    STOP_REQUESTED.set()
    raise KeyboardInterrupt


def _on_sigterm(handler):
    """Install a SIGTERM handler where Python allows one (the main thread); returns the previous one."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


TRAIN_MODULES = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "tf2onnx", "onnx", "tensorboard")
TRAIN_HINT = "pip install 'edgemtl[train]'"


def quiet_frameworks(verbose: bool) -> None:
    """TensorFlow's C++ start-up lines (oneDNN notices, `failed call to cuInit`), absl and gRPC warnings: hidden
    unless -v. Environment variables only, so this must run before TensorFlow is first imported."""
    level = "0" if verbose else "3"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = level
    os.environ.setdefault("GRPC_VERBOSITY", "INFO" if verbose else "ERROR")
    os.environ.setdefault("GLOG_minloglevel", level if verbose else "2")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "0" if verbose else "3")


def _training_stack_missing(error: ImportError) -> str | None:
    """The module of the training dependencies that cannot be imported, where that caused `error`."""
    import importlib

    name = (getattr(error, "name", None) or "").split(".")[0]
    if name in TRAIN_MODULES:
        return name
    for module in TRAIN_MODULES[:2]:  # a TensorFlow that is there but cannot load (a broken or foreign install)
        try:
            importlib.import_module(module)
        except ImportError:
            return module
    return None


def _print_result(result, as_json: bool) -> None:
    from . import jsonio

    if result is None:
        return
    if as_json:
        clean, _ = jsonio.strict({"ok": True, **result.data})
        print(json.dumps(clean, allow_nan=False))
    elif result.text:
        print(result.text)


def _print_errors(messages: list[str], code: int, as_json: bool) -> int:
    for message in messages:
        print(f"error: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"ok": False, "errors": list(messages), "exit_code": code}))
    return code


def main(argv=None) -> int:
    from .rundir import release_run_locks

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # predict takes one --<input> flag per model input
    if extra and args.command != "predict":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    configure_logging(args.quiet, args.verbose)
    quiet_frameworks(args.verbose)
    as_json = bool(getattr(args, "json", False)) and args.command != "predict"
    STOP_REQUESTED.clear()  # a command run in-process after an earlier stop (tests, notebooks)
    previous = _on_sigterm(_terminated)
    try:
        refuse_repeated_flags(parser, args.command, list(argv if argv is not None else sys.argv[1:]))
        _lock_run_of(args)
        if args.command == "predict":
            args.func(args, extra)
        else:
            _print_result(args.func(args), as_json)
        return 0
    except EdgemtlError as e:
        if getattr(e, "output", None) and not as_json:  # what the command had to show before failing (export's table)
            print(e.output)
        return _print_errors(list(e.messages), getattr(e, "exit_code", 2), as_json)
    except ImportError as e:
        missing = _training_stack_missing(e)
        if missing is None:
            raise
        return _print_errors([f"'edgemtl {args.command}' needs the training dependencies: {TRAIN_HINT} "
                              f"({missing} cannot be imported)"], 2, as_json)
    except BrokenPipeError:  # the reader went away (`edgemtl env | head`): nothing left to tell it
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so the interpreter's final flush does not fail again
        return 0
    except Exception as e:  # noqa: BLE001 - only a full disk is answered here; anything else propagates
        from .runsafety import is_disk_full

        if not is_disk_full(e):
            raise
        where = getattr(e, "filename", None) or "a file of the command"
        return _print_errors([f"{where}: cannot write: the disk is full (no space left on device); files written "
                              f"before are kept"], 2, as_json)
    except KeyboardInterrupt:
        print("\ninterrupted: what was saved is kept; continue with --resume", file=sys.stderr)
        return 130
    finally:
        release_run_locks()
        _on_sigterm(previous)


if __name__ == "__main__":
    sys.exit(main())
