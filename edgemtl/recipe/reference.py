"""The recipe reference, generated from the recipe dataclasses so the docs cannot drift from the code: a Markdown
table (docs/reference.md) and a JSON Schema (draft 2020-12) for editor completion."""
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .schema import Recipe
from .spec import REQUIRED, default_of, get_origin, is_spec, keys_of, optional_of, to_plain, variant_default_type

START, END = "<!-- recipe-reference:start -->", "<!-- recipe-reference:end -->"
JSON_SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"


def reference_markdown() -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    _walk_section(Recipe, "", rows, "")
    return "\n".join(rows)


def update_block(path) -> None:
    """Replace what stands between the START and END markers of a Markdown file with the current reference."""
    text = Path(path).read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    Path(path).write_text(f"{head}{START}\n{reference_markdown()}\n{END}{tail}")


# ---- Markdown ----------------------------------------------------------------------------------------------------

def _walk_section(cls, path: str, rows: list, when: str, skip=()):
    for name, (f, hint) in keys_of(cls).items():
        if name not in skip:
            _walk_key(f, hint, _join(path, name), rows, when)


def _walk_key(f: dataclasses.Field, hint, path: str, rows: list, when: str):
    meta = f.metadata
    inner, _ = optional_of(hint)
    if meta.get("variants") is not None and is_spec(inner):
        _walk_variant(meta["variants"], variant_default_type(f), meta["doc"], path, rows, when)
    elif is_spec(inner):
        if meta.get("doc"):
            rows.append(f"| `{path}` | | {when}{_escape(meta['doc'])} |")
        _walk_section(inner, path, rows, when)
    elif get_origin(inner) is tuple and is_spec(item := inner.__args__[0]):
        rows.append(f"| `{path}` | {_default(f)} | {when}{_escape(meta['doc'])} (a list) |")
        if meta.get("variants") is not None:
            _walk_variant(meta["variants"], None, "one per item; type: " + " | ".join(meta["variants"]),
                          f"{path}[]", rows, when)
        else:
            _walk_section(item, f"{path}[]", rows, when)
    else:
        rows.append(f"| `{path}` | {_default(f)} | {when}{_meaning(meta)} |")


def _walk_variant(registry: dict, default_type, doc: str, path: str, rows: list, when: str):
    rows.append(f"| `{path}.type` | {default_type or 'required'} | {when}{_escape(doc)} |")
    common = _common_keys(registry)
    first = next(iter(registry.values()))
    _walk_section(first, path, rows, when, skip=[k for k in keys_of(first) if k not in common or k == "type"])
    for kind, cls in registry.items():
        _walk_section(cls, path, rows, f"{when}*type {kind}:* ", skip=common)


def _common_keys(registry: dict) -> list:
    """Keys the registry's classes inherit from their base (documented once)."""
    base = next(iter(registry.values())).__mro__[1]
    return list(keys_of(base)) if dataclasses.is_dataclass(base) else ["type"]


def _default(f: dataclasses.Field) -> str:
    default = default_of(f)
    return "required" if default is REQUIRED else f"`{json.dumps(to_plain(default))}`"


def _meaning(meta) -> str:
    text = meta.get("doc", "")
    if meta.get("choices"):
        text += ("; " if text else "") + "one of " + ", ".join(f"`{c}`" for c in meta["choices"])
    if meta.get("example") is not None:
        text += ("; " if text else "") + f"e.g. `{json.dumps(meta['example'])}`"
    return _escape(text)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ---- JSON Schema -------------------------------------------------------------------------------------------------

_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean"}


def json_schema() -> dict:
    """A JSON Schema (draft 2020-12) of the recipe: types, defaults, descriptions, enums for choices, and inputs and
    encoders as a oneOf keyed by their `type`."""
    return {"$schema": JSON_SCHEMA_DRAFT, "title": "edgemtl recipe", **_object_schema(Recipe)}


def write_json_schema(path) -> None:
    Path(path).write_text(json.dumps(json_schema(), indent=2) + "\n")


def _object_schema(cls, type_const: str | None = None, type_optional: bool = False) -> dict:
    props, required = {}, []
    for name, (f, hint) in keys_of(cls).items():
        if name == "type" and type_const is not None:
            props[name] = {"const": type_const, "description": f.metadata.get("doc", "")}
            if not type_optional:
                required.append(name)
            continue
        props[name] = _key_schema(f, hint)
        if default_of(f) is REQUIRED:
            required.append(name)
    out = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _key_schema(f: dataclasses.Field, hint) -> dict:
    meta = f.metadata
    out = _type_schema(hint, meta)
    if meta.get("coerce"):  # export.model: one name or a list
        out = {"anyOf": [out["items"], out]}
    if meta.get("doc"):
        out["description"] = meta["doc"]
    default = default_of(f)
    if default is not REQUIRED:
        out["default"] = to_plain(default)
    if meta.get("example") is not None:
        out["examples"] = [meta["example"]]
    return out


def _type_schema(hint, meta) -> dict:
    inner, optional = optional_of(hint)
    out = _inner_schema(inner, meta)
    return {"anyOf": [out, {"type": "null"}]} if optional else out


def _inner_schema(hint, meta) -> dict:
    variants = meta.get("variants")
    if variants is not None and is_spec(hint):
        default_type = meta.get("default_type")
        return {"oneOf": [_object_schema(cls, kind, type_optional=kind == default_type)
                          for kind, cls in variants.items()]}
    if is_spec(hint):
        return _object_schema(hint)
    origin = get_origin(hint)
    if origin is tuple:
        out = {"type": "array", "items": _inner_schema(hint.__args__[0], {"choices": meta.get("choices"),
                                                                          "variants": variants})}
        if meta.get("min_items"):
            out["minItems"] = meta["min_items"]
        return out
    if origin in (Mapping, dict):
        return {"type": "object", "additionalProperties": _type_schema(hint.__args__[1], {})}
    if hint is Any:
        return {}
    out: dict[str, Any] = {"type": _JSON_TYPES[hint]}
    if meta.get("choices"):
        out["enum"] = list(meta["choices"])
    return out
