"""What every fuzz case asserts: exit code 2 (or EdgemtlError), one `error:` line naming the place, no traceback."""
import dataclasses
import typing

import pytest

from edgemtl.cli import main
from edgemtl.errors import EdgemtlError


def expect_cli_error(argv: list, where: str, capsys) -> str:
    """Run `edgemtl ARGV` in-process: exit code 2 and a first `error:` line that contains `where`."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 2, f"exit {code} for {argv}; stderr:\n{err[-2000:]}"
    # ours start with "error:"; argparse's with "edgemtl <command>: error:"
    lines = [line for line in err.splitlines() if line.startswith("error:") or line.startswith("edgemtl")
             and ": error: " in line]
    assert lines, f"no error line in:\n{err}"
    assert where in lines[0], f"{where!r} not in the first error line {lines[0]!r}"
    assert len(lines[0]) < 2000, "the error line prints an unbounded value"
    return lines[0]


def expect_runtime_error(call, where: str) -> str:
    with pytest.raises(EdgemtlError) as info:
        call()
    first = str(info.value).splitlines()[0]
    assert where in first, f"{where!r} not in {first!r}"
    return first


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: an id that says what is wrong, the mutation, the place its message must name."""

    id: str
    value: typing.Any
    where: str


def params(cases: list) -> list:
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "fuzz case ids must be distinct"
    return [pytest.param(c, id=c.id) for c in cases]
