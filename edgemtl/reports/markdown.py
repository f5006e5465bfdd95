"""The one Markdown table builder every printed or written table goes through."""
from collections.abc import Sequence

_RULES = {"left": "---", "right": "---:", "center": ":---:"}


def table(headers: Sequence[str], rows: Sequence[Sequence], align: Sequence[str] | str | None = None) -> str:
    """A GitHub-flavoured Markdown table; cells are str()-ed (None -> ""), "|" inside a cell is escaped.

    align: one of left / right / center for every column, or one per column; None: the plain `---` rule.
    """
    n = len(headers)
    if align is None:
        rules = ["---"] * n
    else:
        aligns = [align] * n if isinstance(align, str) else list(align)
        if len(aligns) != n:
            raise ValueError(f"table: {len(aligns)} alignments for {n} columns")
        rules = [_RULES[a] for a in aligns]
    lines = [_row(headers), "|" + "|".join(rules) + "|"]
    for r in rows:
        cells = list(r)
        if len(cells) != n:
            raise ValueError(f"table: a row has {len(cells)} cells, the header {n}: {cells!r}")
        lines.append(_row(cells))
    return "\n".join(lines)


def _row(cells) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _cell(value) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")
