"""The command line without training: -q / -v on every command, the stage registry, single-command flags as recipe
overrides, the markdown table helper, quiet progress bars."""
import io
import logging

import pytest

from conftest import AV_RECIPE, TINY_AV


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
        assert ("work [" in stream.getvalue()) == drawn
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
