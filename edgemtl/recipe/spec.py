"""Building blocks of the recipe schema and the validator that walks them.

A schema is a tree of Section (fixed keys), Variant (keys depend on a 'type' key), ListOf and Field.
Validation collects every problem as 'path: message' instead of stopping at the first.
"""
import difflib
from dataclasses import dataclass
from typing import Any, Callable

REQUIRED = object()


@dataclass
class Field:
    kind: Any  # python type or tuple of types accepted
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple = ()
    check: Callable[[Any], str | None] | None = None  # returns a problem or None
    example: Any = None


@dataclass
class Section:
    fields: dict
    doc: str = ""


@dataclass
class ListOf:
    item: Any
    doc: str = ""
    default: Any = REQUIRED
    min_items: int = 0


@dataclass
class Variant:
    """A mapping whose allowed keys are `common` plus those of `by_type[value of 'type']`."""
    common: dict
    by_type: dict
    default_type: str | None = None
    doc: str = ""


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
               dict: "a mapping"}


def _type_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds if not (k is int and float in kinds))


def _is_kind(value, kind) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def join(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def validate(node, value, path: str, errors: list):
    """Return `value` with defaults filled in; append 'path: problem' strings to errors."""
    if isinstance(node, Field):
        return _validate_field(node, value, path, errors)
    if isinstance(node, ListOf):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return []
        if len(value) < node.min_items:
            errors.append(f"{path}: needs at least {node.min_items} item(s)")
        return [validate(node.item, v, join(path, i), errors) for i, v in enumerate(value)]
    if isinstance(node, Section):
        return _validate_mapping(node.fields, value, path, errors)
    if isinstance(node, Variant):
        return _validate_variant(node, value, path, errors)
    raise TypeError(node)


def _validate_field(node: Field, value, path, errors):
    value = _yaml_float(value, node.kind)
    if not _is_kind(value, node.kind):
        errors.append(f"{path}: expected {_type_name(node.kind)}, got {value!r}")
        return value
    if node.choices and value not in node.choices:
        errors.append(f"{path}: {value!r} is not one of {', '.join(map(str, node.choices))}"
                      f"{did_you_mean(value, node.choices)}")
    elif node.check:
        problem = node.check(value)
        if problem:
            errors.append(f"{path}: {problem}")
    return float(value) if node.kind is float and isinstance(value, int) else value


def _yaml_float(value, kind):
    """YAML 1.1 reads 1e-3 (no dot) as a string; accept it where a number is expected."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and str not in kinds and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _validate_mapping(fields: dict, value, path, errors):
    if value is None:
        value = {}
    if not isinstance(value, dict):
        errors.append(f"{path or 'recipe'}: expected a mapping, got {type(value).__name__}")
        return {}
    out = {}
    for key in value:
        if key not in fields:
            errors.append(f"{join(path, key)}: unknown key{did_you_mean(key, fields)}")
    for key, node in fields.items():
        if key in value:
            out[key] = validate(node, value[key], join(path, key), errors)
        else:
            default = _default_of(node)
            if default is REQUIRED:
                errors.append(f"{join(path, key)}: required key missing")
            elif default is not None or isinstance(node, Field):
                out[key] = default
    return out


def _default_of(node):
    if isinstance(node, Field):
        return node.default
    if isinstance(node, ListOf):
        return list(node.default) if isinstance(node.default, list) else node.default
    if isinstance(node, Section):
        errors: list = []
        filled = _validate_mapping(node.fields, {}, "", errors)
        return REQUIRED if errors else filled
    if isinstance(node, Variant):
        if node.default_type is None:
            return REQUIRED
        return _validate_variant(node, {}, "", [])
    raise TypeError(node)


def _validate_variant(node: Variant, value, path, errors):
    if value is None:
        value = {}
    if not isinstance(value, dict):
        errors.append(f"{path}: expected a mapping, got {type(value).__name__}")
        return {}
    kind = value.get("type", node.default_type)
    if kind not in node.by_type:
        where = join(path, "type")
        if kind is None:
            errors.append(f"{where}: required key missing (one of {', '.join(node.by_type)})")
        else:
            errors.append(f"{where}: {kind!r} is not one of {', '.join(node.by_type)}{did_you_mean(kind, node.by_type)}")
        return dict(value)
    fields = {"type": Field(str, node.default_type if node.default_type else REQUIRED), **node.common,
              **node.by_type[kind]}
    return _validate_mapping(fields, value, path, errors)
