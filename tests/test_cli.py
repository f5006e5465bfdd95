"""The command line without training: -q / -v / --json on every command, --version and env, errors before
TensorFlow loads, the one-line hint for missing training dependencies, the stage registry, single-command flags as
recipe overrides, the markdown table helper, quiet progress bars."""
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import AV_RECIPE, REPO, TINY_AV, set_args


def _commands(parser) -> dict:
    import argparse

    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_command_takes_quiet_and_verbose():
    from edgemtl.cli import build_parser

    parser = build_parser()
    for name, sub in _commands(parser).items():
        flags = {o for a in sub._actions for o in a.option_strings}
        assert {"-q", "--quiet", "-v", "--verbose"} <= flags, name
    with pytest.raises(SystemExit):  # one or the other
        parser.parse_args(["report", "RUN", "-q", "-v"])


@pytest.mark.parametrize("flags, level", [([], logging.INFO), (["-q"], logging.WARNING), (["-v"], logging.DEBUG)])
def test_verbosity_sets_the_edgemtl_logger(flags, level, capsys, tmp_path):
    from edgemtl.cli import main

    schema = tmp_path / "schema.json"
    assert main(["reference", "--json-schema", str(schema), *flags]) == 0 and schema.exists()
    log = logging.getLogger("edgemtl")
    assert log.getEffectiveLevel() == level
    err = capsys.readouterr().err
    assert (f"wrote {schema}" in err) == (level <= logging.INFO)  # an INFO message, to stderr, plain
    log.info("to the current stderr")
    assert capsys.readouterr().err == ("to the current stderr\n" if level <= logging.INFO else "")


def test_progress_is_silent_when_quiet(capsys):
    from edgemtl.cli import configure_logging
    from edgemtl.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    for quiet, drawn in ((True, False), (False, True)):
        configure_logging(quiet=quiet)
        stream = Tty()
        bar = Progress(3, "work", stream=stream)
        for _ in range(3):
            bar.update()
        bar.close()
        assert ("work:" in stream.getvalue() and "3/3" in stream.getvalue()) == drawn  # tqdm: count, rate, ETA
    configure_logging()


def test_epoch_lines_are_silent_when_quiet(capsys, tmp_path):
    """-q hides the per-epoch lines (through the edgemtl logger, like every progress message); INFO shows them."""
    from types import SimpleNamespace

    from edgemtl.cli import configure_logging
    from edgemtl.train.callbacks import BestModel

    task = SimpleNamespace(name="digit", metrics=("accuracy",))
    for quiet in (True, False):
        configure_logging(quiet=quiet)
        folder = tmp_path / str(quiet)
        folder.mkdir()
        callback = BestModel(None, "val_mean_score", 0, folder, 3, [task])
        callback.set_model(SimpleNamespace(stop_training=False))
        # no finite monitor value: nothing is saved, and patience 0 stops after the first epoch
        callback.on_epoch_end(0, {"loss": 1.0, "val_mean_score": float("nan"), "val_digit_accuracy": 0.5})
        err = capsys.readouterr().err
        assert (folder / "history.jsonl").read_text().count("\n") == 1 and callback.model.stop_training
        assert ("epoch 1/3" in err and "early stop" in err) == (not quiet), err
    configure_logging()


def test_the_registry_has_every_stage_in_order():
    from edgemtl.names import STAGES as NAMES
    from edgemtl.stages import STAGES

    assert tuple(STAGES) == NAMES
    assert all(s.name == n and callable(s.run) for n, s in STAGES.items())


def test_single_command_flags_are_recipe_overrides():
    from edgemtl.recipe import load_recipe
    from edgemtl.stages import STAGES, RunContext, with_bench, with_export

    recipe = load_recipe(AV_RECIPE, TINY_AV)
    exported = with_export(recipe, formats=["tflite"], precisions=None, calibration_samples=50)
    assert exported.export.formats == ("tflite",) and exported.export.calibration_samples == 50
    assert exported.export.precisions == recipe.export.precisions and exported.export.model == recipe.export.model
    assert recipe.export.formats != ("tflite",)  # the original is unchanged
    benched = with_bench(recipe, backends=["litert"], threads=[1, 2], runs=7, batch=None, max_seconds=None)
    assert (benched.bench.backends, benched.bench.threads, benched.bench.runs) == (("litert",), (1, 2), 7)
    assert benched.bench.batch == recipe.bench.batch
    ctx = RunContext(exported)
    assert STAGES["export"].needs(ctx) == tuple(recipe.export.model)
    assert STAGES["compress"].needs(ctx) == (recipe.compress.teacher,)


def test_markdown_table():
    from edgemtl.reports.markdown import table

    assert table(["a", "b"], [[1, None], ["x|y", 2.5]]) == "| a | b |\n|---|---|\n| 1 |  |\n| x\\|y | 2.5 |"
    assert table(["a", "b"], [], align=["left", "right"]).splitlines()[1] == "|---|---:|"
    with pytest.raises(ValueError):
        table(["a", "b"], [[1]])


def test_score_cells_never_average_a_raw_mae():
    from edgemtl.recipe.schema import TaskSpec
    from edgemtl.reports.scores import mean_cell, raw_cell

    reg = TaskSpec(name="year", type="regression")
    metrics = {"acc": {"accuracy": 0.8, "score": 0.8, "n": 5}, "year": {"mae": 3.0, "rmse": 4.0, "score": 0.4, "n": 5}}
    assert raw_cell(reg, metrics["year"]) == "MAE 3"
    assert mean_cell(metrics) == ("0.6000", "")
    assert mean_cell({"year": None}) == ("—", "left out (no score): year")
    assert raw_cell(reg, None) == "— (not measured)"


def test_every_command_prints_json_and_has_an_example_in_its_help():
    from edgemtl.cli import EXAMPLES, build_parser

    for name, sub in _commands(build_parser()).items():
        flags = {o for a in sub._actions for o in a.option_strings}
        assert "--json" in flags, name
        assert f"example:\n  {EXAMPLES[name]}" in sub.format_help(), name
        assert EXAMPLES[name].startswith(f"edgemtl {name}"), name


def test_version(capsys):
    from edgemtl import __version__
    from edgemtl.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"edgemtl {__version__}\n"


def test_env_reports_versions_cpu_flags_and_extras_without_tensorflow():
    code = ("import sys, json; from edgemtl.cli import main; rc = main(['env', '--json']); "
            "print(json.dumps({'rc': rc, 'tf': 'tensorflow' in sys.modules}))")
    done = _python(code)
    env, status = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    assert status == {"rc": 0, "tf": False}, done.stderr
    assert env["ok"] is True and env["python"] == f"{sys.version_info.major}.{sys.version_info.minor}." + \
        str(sys.version_info.micro)
    assert set(env["extras"]) == {"train", "test", "bench"} and env["extras"]["test"] is True
    assert isinstance(env["cpu"]["flags"], list) and env["cpu"]["cores"] >= 1
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    assert ("avx2" in env["cpu"]["flags"]) == ("avx2" in flags)
    from edgemtl.env_info import format_environment

    text = format_environment(env)
    assert "cpu flags" in text and "extras" in text and "tensorflow" in text


def test_output_into_a_closed_pipe_ends_quietly():
    """`edgemtl env | head -1`: the reader is gone before edgemtl writes; it ends with rc 0 and no traceback."""
    environ = {**os.environ, "PYTHONPATH": str(REPO)}
    reader = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE)
    reader.wait(timeout=60)  # the pipe's only reader has exited: every write into it fails (EPIPE)
    done = subprocess.run([sys.executable, "-m", "edgemtl", "env"], stdout=reader.stdin, stderr=subprocess.PIPE,
                          text=True, env=environ, timeout=120, cwd=REPO)
    reader.stdin.close()
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120,
                          cwd=REPO)


@pytest.mark.parametrize("command", [["evaluate"], ["export"], ["bench"], ["compress"], ["pack", "OUT"]])
def test_a_missing_run_fails_before_tensorflow_loads(command, tmp_path):
    """Fast because TensorFlow is never imported (asserted directly: a wall-clock bound fails on a loaded machine)."""
    argv = [command[0], str(tmp_path / "nothere"), *[str(tmp_path / a) for a in command[1:]], "--json"]
    code = ("import sys, json; from edgemtl.cli import main; "
            f"rc = main({argv!r}); "
            "print(json.dumps({'rc': rc, 'tf': 'tensorflow' in sys.modules}))")
    done = _python(code)
    error, status = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    assert status["rc"] == 2 and not status["tf"], done.stderr
    assert error["ok"] is False and error["exit_code"] == 2 and "not a run directory" in error["errors"][0]
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_run_commands_refuse_set_keys_that_shape_the_trained_model(tmp_path, capsys):
    from edgemtl.cli import main

    assert main(["evaluate", str(tmp_path), "--set", "trunk.units=[8]"]) == 2
    assert capsys.readouterr().err == ("error: --set trunk.units=[8]: evaluate takes only data.* keys (the run's "
                                       "models were built from the rest of RUN/recipe.yaml)\n")
    assert main(["bench", str(tmp_path), "--threads", "1,x"]) == 2
    assert "--threads: expected comma-separated whole numbers" in capsys.readouterr().err


def test_without_tensorflow_a_training_command_says_what_to_install_in_one_line(tmp_path):
    fake = tmp_path / "site" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('this test hides TensorFlow')\n")
    argv = ["check", str(AV_RECIPE), "-q", *set_args(TINY_AV)]
    done = _python(f"import sys; from edgemtl.cli import main; sys.exit(main({argv!r}))",
                   {"PYTHONPATH": f"{fake.parent}{os.pathsep}{REPO}"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: 'edgemtl check' needs the training dependencies: pip install 'edgemtl[train]' (tensorflow cannot be "
        "imported)"]


def test_tensorflow_start_up_logs_are_silenced_unless_verbose(monkeypatch):
    from edgemtl.cli import quiet_frameworks

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet_frameworks(verbose=False)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    quiet_frameworks(verbose=True)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_tensorflow_loads_without_its_native_start_up_lines_under_the_cli_setting():
    done = _python("from edgemtl.cli import quiet_frameworks; quiet_frameworks(False); import edgemtl.tfk",
                   {"TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr
    assert "absl::InitializeLog" not in done.stderr and "oneDNN" not in done.stderr, done.stderr
