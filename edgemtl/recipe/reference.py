"""The recipe reference as Markdown, generated from the schema so the README cannot drift from the code."""
import json

from .schema import RECIPE
from .spec import REQUIRED, Field, ListOf, Section, Variant


def reference_markdown() -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    _walk(RECIPE, "", rows)
    return "\n".join(rows)


START, END = "<!-- recipe-reference:start -->", "<!-- recipe-reference:end -->"


def update_block(path) -> None:
    """Replace what stands between the START and END markers of a Markdown file with the current reference."""
    from pathlib import Path

    text = Path(path).read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    Path(path).write_text(f"{head}{START}\n{reference_markdown()}\n{END}{tail}")


def _walk(node, path: str, rows: list, when: str = ""):
    if isinstance(node, Field):
        rows.append(f"| `{path}` | {_default(node)} | {when}{_meaning(node)} |")
    elif isinstance(node, Section):
        if path and node.doc:
            rows.append(f"| `{path}` | | {when}{node.doc} |")
        for key, child in node.fields.items():
            _walk(child, f"{path}.{key}" if path else key, rows, when)
    elif isinstance(node, ListOf):
        rows.append(f"| `{path}` | {_list_default(node)} | {when}{node.doc} (a list) |")
        _walk(node.item, f"{path}[]", rows, when)
    elif isinstance(node, Variant):
        rows.append(f"| `{path}.type` | {node.default_type or 'required'} | {when}{_escape(node.doc)} |")
        for key, child in node.common.items():
            _walk(child, f"{path}.{key}", rows, when)
        for kind, fields in node.by_type.items():
            for key, child in fields.items():
                _walk(child, f"{path}.{key}", rows, f"{when}*type {kind}:* ")


def _default(node: Field) -> str:
    return "required" if node.default is REQUIRED else f"`{json.dumps(node.default)}`"


def _list_default(node: ListOf) -> str:
    return "required" if node.default is REQUIRED else f"`{json.dumps(node.default)}`"


def _meaning(node: Field) -> str:
    text = node.doc
    if node.choices:
        text += ("; " if text else "") + "one of " + ", ".join(f"`{c}`" for c in node.choices)
    if node.example is not None:
        text += ("; " if text else "") + f"e.g. `{json.dumps(node.example)}`"
    return _escape(text)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")
