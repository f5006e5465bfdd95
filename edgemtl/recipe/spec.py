"""Building blocks of the typed recipe and the validator that walks them.

Every recipe section is a frozen dataclass (`@spec`); each field declares its YAML key once, with its meaning,
choices, check and example in the field's metadata (`key(...)`). Keys whose allowed neighbours depend on a `type`
value (inputs by modality, encoders by type) are variants: a registry of classes keyed by that value (`@variant`).
The validator, the Markdown reference and the JSON Schema all walk these classes. Validation collects every
problem as 'path: message' instead of stopping at the first.
"""
import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from ..errors import did_you_mean

REQUIRED = dataclasses.MISSING
NoneType = type(None)


def key(default: Any = REQUIRED, doc: str = "", *, choices: tuple = (), check: Callable | None = None,
        example: Any = None, yaml: str | None = None, variants: dict | None = None, min_items: int = 0,
        coerce: Callable | None = None, item_check: Callable | None = None) -> Any:
    """A recipe key: a dataclass field whose metadata carries what the validator and the reference need.

    default: a value, a spec class (its defaults), or REQUIRED. choices apply to the value, or to each item of a
    list. check(raw value) returns a problem or None. yaml: the YAML key where the attribute name cannot be it
    (`in`). variants: registry (type value -> class) of a variant key or of a list's items. coerce: applied to the
    raw value first (export.model accepts one name or a list). item_check: check of each value of a mapping."""
    meta = {"doc": doc, "choices": tuple(choices), "check": check, "example": example, "yaml": yaml,
            "variants": variants, "min_items": min_items, "coerce": coerce, "item_check": item_check,
            "default_type": default().type if variants is not None and isinstance(default, type) else None}
    if isinstance(default, type):
        return dataclasses.field(default_factory=default, metadata=meta)
    if isinstance(default, Mapping):
        frozen = dict(default)
        return dataclasses.field(default_factory=lambda: MappingProxyType(dict(frozen)), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Spec:
    """Base of every recipe section: `to_dict()` gives plain YAML/JSON-safe types under the YAML keys."""

    def to_dict(self) -> dict:
        return {yaml_key(f): to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def spec(cls):
    """A recipe section: a frozen, keyword-only dataclass."""
    return dataclasses.dataclass(frozen=True, kw_only=True)(cls)


def variant(registry: dict, type_name: str):
    """A recipe section that is one variant of its base, chosen by `type: type_name`; registered in `registry`."""
    def wrap(cls):
        base = next(f for f in dataclasses.fields(cls) if f.name == "type")
        cls.__annotations__ = {"type": str, **cls.__dict__.get("__annotations__", {})}
        cls.type = dataclasses.field(default=type_name, metadata=base.metadata)
        cls = spec(cls)
        registry[type_name] = cls
        return cls
    return wrap


def to_plain(value):
    if isinstance(value, Spec):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def freeze(value):
    """Plain YAML data made read-only: mappings -> MappingProxyType, lists -> tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def yaml_key(f: dataclasses.Field) -> str:
    return f.metadata.get("yaml") or f.name


@functools.cache
def keys_of(cls) -> dict:
    """YAML key -> (field, resolved type hint) of a spec class, in declaration order."""
    hints = typing.get_type_hints(cls)
    return {yaml_key(f): (f, hints[f.name]) for f in dataclasses.fields(cls)}


def is_spec(hint) -> bool:
    return isinstance(hint, type) and issubclass(hint, Spec)


def optional_of(hint):
    """(inner hint, True) for `X | None`, else (hint, False)."""
    if get_origin(hint) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not NoneType]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def get_origin(hint):
    return typing.get_origin(hint)


def default_of(f: dataclasses.Field):
    if f.default is not REQUIRED:
        return f.default
    if f.default_factory is not REQUIRED:
        return f.default_factory()
    return REQUIRED


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
               dict: "a mapping", NoneType: "null"}


def _type_name(kinds: tuple) -> str:
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds if not (k is int and float in kinds))


def _is_kind(value, kinds: tuple) -> bool:
    if isinstance(value, bool) and bool not in kinds:
        return False
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def join(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def validate_spec(cls, value, path: str, errors: list):
    """The `cls` instance a YAML mapping describes (defaults filled in), or None when it has problems; every
    problem is appended to errors as 'path: problem'."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        errors.append(f"{path or 'recipe'}: expected a mapping, got {type(value).__name__}")
        return None
    fields = keys_of(cls)
    before = len(errors)
    for name in value:
        if name not in fields:
            errors.append(f"{join(path, name)}: unknown key{did_you_mean(name, fields)}")
    kwargs = {}
    for name, (f, hint) in fields.items():
        if name in value:
            kwargs[f.name] = validate_value(hint, f.metadata, value[name], join(path, name), errors)
        elif default_of(f) is REQUIRED:
            errors.append(f"{join(path, name)}: required key missing")
    return None if len(errors) > before else cls(**kwargs)


def validate_variant(registry: dict, default_type: str | None, value, path: str, errors: list):
    """The instance of the registry class that `value['type']` (or default_type) names."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        errors.append(f"{path}: expected a mapping, got {type(value).__name__}")
        return None
    kind = value.get("type", default_type)
    if not isinstance(kind, str) or kind not in registry:
        where = join(path, "type")
        if kind is None:
            errors.append(f"{where}: required key missing (one of {', '.join(registry)})")
        else:
            hint = _choice_of_variant(registry, kind) or did_you_mean(kind, registry)
            errors.append(f"{where}: {kind!r} is not one of {', '.join(registry)}{hint}")
        return None
    return validate_spec(registry[kind], value, path, errors)


def _choice_of_variant(registry: dict, kind: str) -> str:
    """A hint where an unknown type is (close to) a value of a variant's choice key, closer than to any type: the
    backbone family `resnet50` is written {type: backbone, name: resnet50}, not type: resnet50. Only required
    keys count (what picks a family), not options such as pooling."""
    def ratio(a, b):
        return difflib.SequenceMatcher(None, a, b).ratio()

    best_type = max((ratio(kind, t) for t in registry), default=0.0)
    for vtype, cls in registry.items():
        for f in (f for f in dataclasses.fields(cls) if default_of(f) is REQUIRED):
            choices = [c for c in f.metadata.get("choices", ()) if isinstance(c, str)]
            scored = sorted(((ratio(kind, c), c) for c in choices), reverse=True)
            if scored and (scored[0][1] == kind or (scored[0][0] >= 0.8 and scored[0][0] > best_type)):
                return f" (did you mean {{type: {vtype}, {yaml_key(f)}: {scored[0][1]}}}?)"
    return ""


def variant_default_type(f: dataclasses.Field) -> str | None:
    default = default_of(f)
    return None if default is REQUIRED else default.type


def validate_value(hint, meta: Mapping, value, path: str, errors: list):
    """One key's value checked against its type hint and metadata, converted (lists -> tuples, mappings -> read-only
    mappings, ints -> floats where a number is expected)."""
    if meta.get("coerce"):
        value = meta["coerce"](value)
    inner, optional = optional_of(hint)
    if value is None and optional:
        return None
    if meta.get("variants") is not None and is_spec(inner):
        return validate_variant(meta["variants"], meta.get("default_type"), value, path, errors)
    if is_spec(inner):
        return validate_spec(inner, value, path, errors)
    origin = get_origin(inner)
    if origin is tuple:
        return _validate_list(typing.get_args(inner)[0], meta, value, path, errors, optional)
    if origin in (Mapping, dict):
        return _validate_mapping(typing.get_args(inner)[1], meta, value, path, errors, optional)
    if inner is Any:
        return freeze(value)
    return _validate_scalar(inner, meta, value, path, errors, optional)


def _validate_scalar(kind, meta, value, path, errors, optional=False):
    kinds = (kind, NoneType) if optional else (kind,)
    value = _yaml_float(value, kinds)
    if not _is_kind(value, kinds):
        errors.append(f"{path}: expected {_type_name(kinds)}, got {short(value)}")
        return None
    problem = _number_problem(value)
    if problem:
        errors.append(f"{path}: {problem}")
        return None
    choices = meta.get("choices") or ()
    if choices and value not in choices:
        errors.append(f"{path}: {short(value)} is not one of {', '.join(map(str, choices))}"
                      f"{did_you_mean(value, choices)}")
    elif meta.get("check"):
        problem = meta["check"](value)
        if problem:
            errors.append(f"{path}: {problem}")
    return float(value) if kind is float and isinstance(value, int) else value


def short(value, limit: int = 80) -> str:
    """repr of a value for a message, cut to `limit` characters (a recipe value can be megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


MAX_NUMBER = 2 ** 31 - 1  # no recipe number means anything past this (epochs, sizes, seeds, rates): a typo


def _number_problem(value) -> str | None:
    """Every recipe number is finite and within MAX_NUMBER (a huge value would exhaust memory or overflow later)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if abs(value) > MAX_NUMBER:
        return f"{value:.4g} is out of range (at most {MAX_NUMBER} in size)"
    return None


def _validate_list(item, meta, value, path, errors, optional):
    if not isinstance(value, (list, tuple)):
        errors.append(f"{path}: expected a list{' or null' if optional else ''}, got {type(value).__name__}")
        return None
    if len(value) < meta.get("min_items", 0):
        errors.append(f"{path}: needs at least {meta['min_items']} item(s)")
    before = len(errors)
    item_meta = {"choices": meta.get("choices"), "variants": meta.get("variants")}
    out = tuple(validate_value(item, item_meta, v, join(path, i), errors) for i, v in enumerate(value))
    if len(errors) == before and meta.get("check"):
        problem = meta["check"](list(value))
        if problem:
            errors.append(f"{path}: {problem}")
    return out


def _validate_mapping(item, meta, value, path, errors, optional):
    if not isinstance(value, Mapping):
        errors.append(f"{path}: expected a mapping{' or null' if optional else ''}, got {type(value).__name__}")
        return None
    before = len(errors)
    out = {}
    for name, v in value.items():
        if not isinstance(name, str):
            errors.append(f"{join(path, str(name))}: keys are names (strings), got {name!r}")
            continue
        out[name] = validate_value(item, {"check": meta.get("item_check")}, v, join(path, name), errors)
    if len(errors) == before and meta.get("check"):
        problem = meta["check"](dict(value))
        if problem:
            errors.append(f"{path}: {problem}")
    return MappingProxyType(out)


def _yaml_float(value, kinds: tuple):
    """YAML 1.1 reads 1e-3 (no dot) as a string; accept it where a number is expected."""
    if float in kinds and str not in kinds and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value
