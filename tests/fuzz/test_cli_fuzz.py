"""Fuzz: command-line flags. Unknown flags, malformed values and missing paths on every command; each gives exit 2
and an error line naming the flag or the path (argparse's own errors included). Commands on a run read the session
run and are refused before they write anything."""
import pytest

from conftest import AV_RECIPE
from fuzz.helpers import Case, expect_cli_error, params
from fuzz.test_runtime_fuzz import bundle, session_run  # noqa: F401 - fixtures

RUN_COMMANDS = ["evaluate", "export", "bench", "report", "pack", "compress"]


def _cases() -> list:
    cases = [
        Case("no-command", [], "required"),
        Case("unknown-command", ["trian"], "trian"),
        Case("check.no-recipe", ["check"], "recipe"),
        Case("check.missing-recipe", ["check", "/nope/r.yaml"], "/nope/r.yaml"),
        Case("check.unknown-flag", ["check", "RECIPE", "--bogus"], "--bogus"),
        Case("check.data-missing", ["check", "RECIPE", "--data", "/nope/m.csv"], "--data"),
        Case("check.data-folder", ["check", "RECIPE", "--data", "/tmp"], "--data"),
        Case("check.set-no-value", ["check", "RECIPE", "--set"], "--set"),
        Case("check.quiet-and-verbose", ["check", "RECIPE", "-q", "-v"], "-v"),
        Case("train.out-is-a-file", ["train", "RECIPE", "--out", "RECIPE"], "RECIPE"),
        Case("run.out-is-a-file", ["run", "RECIPE", "--out", "RECIPE"], "RECIPE"),
        Case("reference.update-missing-file", ["reference", "--update", "/nope/ref.md"], "/nope/ref.md"),
        Case("reference.update-no-block", ["reference", "--update", "RECIPE"], "RECIPE"),
        Case("predict.no-bundle", ["predict"], "bundle"),
    ]
    for command in RUN_COMMANDS:
        cases += [
            Case(f"{command}.no-run", [command], "run"),
            Case(f"{command}.missing-run", [command, "/nope/run"] + (["/tmp/o"] if command == "pack" else []),
                 "/nope/run"),
            Case(f"{command}.run-is-a-file", [command, "RECIPE"] + (["/tmp/o"] if command == "pack" else []),
                 "RECIPE"),
            Case(f"{command}.not-a-run-folder", [command, "EMPTYDIR"] + (["/tmp/o"] if command == "pack" else []),
                 "EMPTYDIR"),
            Case(f"{command}.unknown-flag", [command, "RUN", "--bogus"] + (["/tmp/o"] if command == "pack" else []),
                 "--bogus"),
        ]
    cases += [
        Case("export.unknown-format", ["export", "RUN", "--format", "tpu"], "tpu"),
        Case("export.unknown-precision", ["export", "RUN", "--precision", "int3"], "int3"),
        Case("export.unknown-model", ["export", "RUN", "--model", "teachr"], "teachr"),
        Case("export.empty-format", ["export", "RUN", "--format", ","], "format"),
        Case("export.calibration-not-int", ["export", "RUN", "--calibration-samples", "lots"],
             "--calibration-samples"),
        Case("export.calibration-negative", ["export", "RUN", "--calibration-samples", "-4"], "calibration_samples"),
        Case("export.calibration-zero", ["export", "RUN", "--calibration-samples", "0"], "calibration_samples"),
        Case("bench.runs-not-int", ["bench", "RUN", "--runs", "many"], "--runs"),
        Case("bench.runs-zero", ["bench", "RUN", "--runs", "0"], "runs"),
        Case("bench.runs-negative", ["bench", "RUN", "--runs", "-3"], "runs"),
        Case("bench.threads-letters", ["bench", "RUN", "--threads", "a,b"], "--threads"),
        Case("bench.threads-zero", ["bench", "RUN", "--threads", "0"], "threads"),
        Case("bench.threads-negative", ["bench", "RUN", "--threads", "-2"], "threads"),
        Case("bench.threads-empty-item", ["bench", "RUN", "--threads", "1,,2"], "--threads"),
        Case("bench.max-seconds-nan", ["bench", "RUN", "--max-seconds", "nan"], "max_seconds"),
        Case("bench.max-seconds-inf", ["bench", "RUN", "--max-seconds", "inf"], "max_seconds"),
        Case("bench.max-seconds-negative", ["bench", "RUN", "--max-seconds", "-1"], "max_seconds"),
        Case("bench.batch-zero", ["bench", "RUN", "--batch", "0"], "batch"),
        Case("bench.batch-huge", ["bench", "RUN", "--batch", "99999999999"], "batch"),
        Case("bench.unknown-backend", ["bench", "RUN", "--backend", "tpu"], "tpu"),
        Case("bench.data-missing", ["bench", "RUN", "--data", "/nope/m.csv"], "/nope/m.csv"),
        Case("evaluate.unknown-model", ["evaluate", "RUN", "--model", "teachr"], "teachr"),
        Case("evaluate.model-path", ["evaluate", "RUN", "--model", "../../etc"], "../../etc"),
        Case("evaluate.data-missing", ["evaluate", "RUN", "--data", "/nope/m.csv"], "/nope/m.csv"),
        Case("compress.set-not-compress", ["compress", "RUN", "--set", "training.epochs=1"], "--set training.epochs"),
        Case("compress.set-bad-value", ["compress", "RUN", "--set", "compress.prune.sparsity=2"],
             "compress.prune.sparsity"),
        Case("compress.set-unknown-key", ["compress", "RUN", "--set", "compress.prunе.epochs=1"], "compress"),
        Case("pack.no-out", ["pack", "RUN"], "out"),
        Case("pack.out-is-the-run", ["pack", "RUN", "RUN"], "pack cannot write into the run"),
        Case("pack.out-inside-the-run", ["pack", "RUN", "RUN/exports/x"], "pack cannot write into the run"),
        Case("pack.out-is-a-file", ["pack", "RUN", "RECIPE"], "RECIPE"),
        Case("report.unknown-flag-value", ["report", "RUN", "--format", "pdf"], "--format"),
        # a single-valued flag given twice: an error naming it, never the last one silently
        Case("check.data-twice", ["check", "RECIPE", "--data", "RECIPE", "--data", "RECIPE"], "--data is given twice"),
        Case("train.out-twice", ["train", "RECIPE", "--out", "/tmp/a", "--out", "/tmp/b"], "--out is given twice"),
        Case("run.out-twice-inline", ["run", "RECIPE", "--out=/tmp/a", "--out=/tmp/b"], "--out is given twice"),
        Case("evaluate.model-twice", ["evaluate", "RUN", "--model", "teacher", "--model", "single-digit"],
             "--model is given twice"),
        Case("evaluate.model-twice-abbreviated", ["evaluate", "RUN", "--mod", "teacher", "--model", "x"],
             "--model is given twice"),
        Case("export.format-twice", ["export", "RUN", "--format", "onnx", "--format", "tflite"],
             "--format is given twice"),
        Case("export.precision-twice", ["export", "RUN", "--precision", "fp32", "--precision", "int8"],
             "--precision is given twice"),
        Case("bench.runs-twice", ["bench", "RUN", "--runs", "2", "--runs", "3"], "--runs is given twice"),
        Case("bench.student-twice", ["bench", "RUN", "--student", "a", "--student", "b"], "--student is given twice"),
        Case("bench.student-unknown", ["bench", "RUN", "--student", "nobody"],
             "--student nobody: no such bundle in"),
        Case("bench.student-a-rejected-name", ["bench", "RUN", "--student", "rejected"], "--student rejected"),
        Case("pack.data-twice", ["pack", "RUN", "/tmp/o", "--data", "RECIPE", "--data", "RECIPE"],
             "--data is given twice"),
        Case("compress.set-repeats-and-the-bad-one-is-named", ["compress", "RUN", "--set",
                                                               "compress.prune.sparsity=0.5", "--set",
                                                               "compress.prune.sparsity=2"], "compress.prune.sparsity"),
    ]
    return cases


@pytest.fixture
def paths(session_run, tmp_path):  # noqa: F811 - the imported fixture
    (tmp_path / "empty").mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(AV_RECIPE.read_text().replace("../demo", str(AV_RECIPE.parent.parent / "demo")))
    return {"RECIPE": str(recipe), "RUN": str(session_run), "EMPTYDIR": str(tmp_path / "empty"),
            "RUNCOPY": str(tmp_path / "runcopy")}


@pytest.mark.parametrize("case", params(_cases()))
def test_bad_flag(case, paths, capsys):
    def sub(a: str) -> str:
        for k, v in paths.items():
            a = a.replace(k, v) if a.startswith(k) else a
        return a

    argv = [sub(a) for a in case.value]
    expect_cli_error(argv, sub(case.where), capsys)
