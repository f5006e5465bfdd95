"""Fuzz: bad recipes. For every key of a valid recipe: wrong type, null where required, out of range, unknown
choice, unknown neighbour; then whole-file problems (encoding, binary, folder, YAML aliases, duplicate keys) and
--set overrides. Each must give exit 2 and a first error line naming the key (`edgemtl check`, in-process; the
recipe is refused before any data is decoded or TensorFlow imported)."""
import copy
import math
import typing
from collections.abc import Mapping

import pytest
import yaml

from conftest import AV_RECIPE, TINY_AV
from edgemtl.recipe import load_recipe
from edgemtl.recipe.schema import Recipe
from edgemtl.recipe.spec import is_spec, keys_of, optional_of
from fuzz.helpers import Case, expect_cli_error, params

BASE = load_recipe(AV_RECIPE, TINY_AV).to_dict()


def typing_args(hint):
    args = typing.get_args(hint)
    return args[0] if typing.get_origin(hint) is tuple and args else None


def _leaves(node, path=()):
    """(path, value) of every key of the base recipe (mappings recursed, lists of mappings recursed by index)."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield path + (k,), v
            yield from _leaves(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            if isinstance(v, Mapping):
                yield from _leaves(v, path + (i,))


def dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def _spec_of(path: tuple):
    """The spec class of the mapping at `path` in the base recipe, or None where it is free-form."""
    cls, node = Recipe, BASE
    for part in path:
        node = node[part]
        if isinstance(part, int):  # cls is (item class, variants) of a list of specs
            item, variants = cls
            cls = variants[node["type"]] if variants else item
            continue
        if not is_spec(cls) or part not in keys_of(cls):
            return None
        f, hint = keys_of(cls)[part]
        inner, _ = optional_of(hint)
        variants = f.metadata.get("variants")
        item = typing_args(inner)
        if is_spec(inner):
            cls = variants[node["type"]] if variants else inner
        elif item is not None and is_spec(item):
            cls = (item, variants)
        else:
            return None
    return cls if is_spec(cls) else None


def _key_meta(path: tuple):
    """(field, inner hint, optional) of the key at path, or None when it lies in a free-form mapping."""
    parent = _spec_of(path[:-1])
    if parent is None or path[-1] not in keys_of(parent):
        return None
    f, hint = keys_of(parent)[path[-1]]
    inner, optional = optional_of(hint)
    return f, inner, optional


WRONG_TYPE = {bool: "maybe", int: "abc", float: "abc", str: [1, 2], list: 7, dict: [1]}


def _wrong(value):
    for kind, bad in WRONG_TYPE.items():
        if isinstance(value, kind):
            return bad
    return None


def recipe_key_cases() -> list:
    cases = []
    for path, value in _leaves(BASE):
        meta = _key_meta(path)
        if meta is None:
            continue
        f, inner, optional = meta
        where = dotted(path)
        if path == ("data", "source"):
            continue  # its own cases below (a path)
        # wrong type
        sample = value if value is not None else _sample_of(inner)
        bad = _wrong(sample)
        if bad is not None and not (isinstance(bad, list) and f.metadata.get("coerce")):
            cases.append(Case(f"{where}=wrong-type", (path, bad), where))
        # null where a value is required
        if not optional and not is_spec(inner) and value is not None:
            cases.append(Case(f"{where}=null", (path, None), where))
        # out of range: negative and huge numbers
        if inner in (int, float) and not isinstance(value, bool):
            cases.append(Case(f"{where}=negative", (path, -3), where))
            cases.append(Case(f"{where}=huge", (path, 10 ** 13), where))
            if inner is float:
                cases.append(Case(f"{where}=inf", (path, math.inf), where))
                cases.append(Case(f"{where}=nan", (path, math.nan), where))
        # unknown choice
        if f.metadata.get("choices"):
            bad_choice = ["zzz_unknown"] if isinstance(value, list) else \
                (99 if isinstance(value, int) else "zzz_unknown")
            cases.append(Case(f"{where}=unknown-choice", (path, bad_choice), where))
        if f.metadata.get("variants") and isinstance(value, Mapping):
            cases.append(Case(f"{where}.type=unknown", (path + ("type",), "zzz_unknown"), where + ".type"))
        if isinstance(value, Mapping) and is_spec(inner):
            cases.append(Case(f"{where}.unknown-key", (path + ("zzz_unknown",), 1), where + ".zzz_unknown"))
    return cases


def _sample_of(inner):
    return {int: 1, float: 1.0, str: "x", bool: True}.get(inner, "x")


def set_path(raw: dict, path: tuple, value):
    node = raw
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def write(tmp_path, raw) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return str(path)


KEY_CASES = recipe_key_cases()

# keys whose meaning makes one of the generic mutations valid: (id) -> why it is not a bad input
VALID = {}
KEY_CASES = [c for c in KEY_CASES if c.id not in VALID]


@pytest.mark.parametrize("case", params(KEY_CASES))
def test_bad_recipe_key(case, tmp_path, capsys):
    raw = copy.deepcopy(BASE)
    set_path(raw, *case.value)
    expect_cli_error(["check", write(tmp_path, raw)], case.where, capsys)


# ---- cross-key and semantic cases: (id, list of (path, value), place) ------------------------------------------
SEMANTIC = [
    Case("inputs.type-is-a-list", [(("inputs", 0, "type"), ["audio"])], "inputs[0].type"),
    Case("inputs.name-nested-list", [(("inputs", 0, "name"), [["audio"]])], "inputs[0].name"),
    Case("inputs.image.channels-2", [(("inputs", 1, "channels"), 2)], "inputs[1].channels"),
    Case("inputs.image.size-100000", [(("inputs", 1, "size"), [100000, 100000])], "inputs[1].size"),
    Case("inputs.image.size-one-value", [(("inputs", 1, "size"), [28])], "inputs[1].size"),
    Case("inputs.image.size-zero", [(("inputs", 1, "size"), [0, 0])], "inputs[1].size"),
    Case("inputs.audio.clip-1e5", [(("inputs", 0, "clip_seconds"), 1e5)], "inputs[0].clip_seconds"),
    Case("inputs.audio.frame-longer-than-clip", [(("inputs", 0, "clip_seconds"), 0.01)], "inputs[0].frame_length"),
    Case("inputs.audio.frame-step-over-length", [(("inputs", 0, "frame_step"), 512)], "inputs[0].frame_step"),
    Case("inputs.audio.frame-not-power-of-two", [(("inputs", 0, "frame_length"), 300)], "inputs[0].frame_length"),
    Case("inputs.audio.n-mels-huge", [(("inputs", 0, "n_mels"), 5000)], "inputs[0].n_mels"),
    Case("inputs.duplicate-name", [(("inputs", 1, "name"), "audio")], "inputs[1].name"),
    Case("inputs.empty-list", [(("inputs",), [])], "inputs"),
    Case("tasks.empty-list", [(("tasks",), [])], "tasks"),
    Case("tasks.name-equals-input", [(("tasks", 0, "name"), "audio")], "tasks[0].name"),
    Case("tasks.multilabel-empty-separator", [(("tasks", 0, "type"), "multilabel"), (("tasks", 0, "separator"), ""),
                                              (("tasks", 0, "metrics"), [])], "tasks[0].separator"),
    Case("tasks.metric-of-other-type", [(("tasks", 0, "metrics"), ["mae"])], "tasks[0].metrics[0]"),
    Case("tasks.match-labels-not-text", [(("tasks", 0, "match_labels"), "audio")], "tasks[0].match_labels"),
    Case("tasks.unmatched-without-match", [(("tasks", 0, "unmatched_weight"), 0.5)], "tasks[0].unmatched_weight"),
    Case("tasks.all-auxiliary", [(("tasks", 0, "auxiliary"), True), (("tasks", 1, "auxiliary"), True)], "tasks"),
    Case("seed.negative", [(("seed",), -1)], "seed"),
    Case("seed.over-32-bits", [(("seed",), 2 ** 40)], "seed"),
    Case("data.split.seed-negative", [(("data", "split", "seed"), -5)], "data.split.seed"),
    Case("data.limit-zero", [(("data", "limit"), 0)], "data.limit"),
    Case("data.limit-negative", [(("data", "limit"), -4)], "data.limit"),
    Case("data.split.ratios-two", [(("data", "split", "column"), None), (("data", "split", "ratios"), [0.5, 0.5])],
         "data.split.ratios"),
    Case("data.split.ratios-sum", [(("data", "split", "column"), None), (("data", "split", "ratios"), [0.5, 0.5, 0.5])],
         "data.split.ratios"),
    Case("data.split.ratios-negative", [(("data", "split", "column"), None),
                                        (("data", "split", "ratios"), [1.2, -0.1, -0.1])], "data.split.ratios"),
    Case("data.split.ratios-strings", [(("data", "split", "column"), None),
                                       (("data", "split", "ratios"), ["a", "b", "c"])], "data.split.ratios"),
    Case("data.filters.not-a-list", [(("data", "filters"), {"column": "digit"})], "data.filters"),
    Case("data.filters.item-string", [(("data", "filters"), ["digit"])], "data.filters[0]"),
    Case("data.filters.no-column", [(("data", "filters"), [{"in": [1]}])], "data.filters[0].column"),
    Case("data.filters.unknown-column", [(("data", "filters"), [{"column": "nope", "in": [1]}])],
         "data.filters[0].column"),
    Case("data.filters.in-nested", [(("data", "filters"), [{"column": "digit", "in": [[1, [2]]]}])],
         "data.filters[0].in"),
    Case("data.filters.in-mapping", [(("data", "filters"), [{"column": "digit", "in": {"a": 1}}])],
         "data.filters[0].in"),
    Case("data.source.missing", [(("data", "source"), "/nonexistent/pairs.csv")], "data.source"),
    Case("data.source.number", [(("data", "source"), 5)], "data.source"),
    Case("data.source.list", [(("data", "source"), ["a.csv"])], "data.source"),
    Case("data.source.folder", [(("data", "source"), "/tmp")], "data.source"),
    Case("data.source.empty", [(("data", "source"), "")], "data.source"),
    Case("data.split.column-unknown", [(("data", "split", "column"), "splt")], "data.split.column"),
    Case("training.learning-rate-inf", [(("training", "learning_rate"), ".inf")], "training.learning_rate"),
    Case("training.early-stopping-monitor-unknown", [(("training", "early_stopping", "monitor"), "val_acc")],
         "training.early_stopping.monitor"),
    Case("export.tolerance-unknown-task", [(("export", "tolerance"), {"colour": 0.1})], "export.tolerance.colour"),
    Case("export.tolerance-negative", [(("export", "tolerance"), {"digit": -1})], "export.tolerance.digit"),
    Case("export.tolerance-list", [(("export", "tolerance"), [1, 2])], "export.tolerance"),
    Case("export.model-unknown", [(("export", "model"), ["teachr"])], "export.model[0]"),
    Case("export.model-needs-qat", [(("compress", "qat", "enabled"), False), (("export", "model"), ["student-qat"])],
         "export.model[0]"),
    Case("export.model-nested", [(("export", "model"), [["teacher"]])], "export.model[0]"),
    Case("export.formats-empty", [(("export", "formats"), [])], "export.formats"),
    Case("export.precisions-empty", [(("export", "precisions"), [])], "export.precisions"),
    Case("export.opset-6", [(("export", "opset"), 6)], "export.opset"),
    Case("bench.backends-unknown", [(("bench", "backends"), ["tpu"])], "bench.backends"),
    Case("bench.threads-zero", [(("bench", "threads"), [0])], "bench.threads"),
    Case("compress.start-scratch-off", [(("compress", "start"), "student-scratch"), (("compress", "scratch"), False)],
         "compress.start"),
    Case("compress.distill.tasks-unknown", [(("compress", "distill", "tasks"), {"colour": {}})],
         "compress.distill.tasks"),
    Case("compress.student.inputs-unknown-input", [(("compress", "student", "inputs"), {"video": {"filters": [8]}})],
         "compress.student.inputs"),
    Case("compress.training-unknown-key", [(("compress", "training"), {"epochz": 3})], "compress.training"),
    Case("compress.training-bad-value", [(("compress", "training"), {"epochs": -3})], "compress.training"),
    Case("stages.nested", [(("stages",), [["train"]])], "stages[0]"),
    Case("stages.unknown", [(("stages",), ["trian"])], "stages[0]"),
    Case("name.empty", [(("name",), "")], "name"),
    Case("name.path", [(("name",), "../../etc")], "name"),
    Case("name.very-long-value", [(("name",), "x" * 100000)], "name"),
]


@pytest.mark.parametrize("case", params(SEMANTIC))
def test_bad_recipe_combination(case, tmp_path, capsys):
    raw = copy.deepcopy(BASE)
    for path, value in case.value:
        set_path(raw, path, value)
    expect_cli_error(["check", write(tmp_path, raw)], case.where, capsys)


# ---- whole files ------------------------------------------------------------------------------------------------
def _base_text() -> str:
    return yaml.safe_dump(BASE, sort_keys=False)


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))

FILES = [
    Case("file.not-utf8", "name: caf\xe9\n".encode("latin-1"), "recipe.yaml"),
    Case("file.binary", bytes(range(256)) * 4, "recipe.yaml"),
    Case("file.empty", b"", "recipe.yaml"),
    Case("file.a-list", b"- a\n- b\n", "recipe.yaml"),
    Case("file.a-scalar", b"hello\n", "recipe.yaml"),
    Case("file.bad-yaml", b"name: [unclosed\n", "recipe.yaml"),
    Case("file.tab-indent", b"name: x\ndata:\n\tsource: a.csv\n", "recipe.yaml"),
    Case("file.duplicate-key", (_base_text() + "name: other\n").encode(), "'name' appears twice"),
    Case("file.duplicate-nested-key", _base_text().replace("training:\n", "training:\n  epochs: 9\n", 1).encode(),
         "'epochs' appears twice"),
    Case("file.alias-bomb-name", (BOMB + _base_text().replace("name: av_digits", "name: *i")).encode(), "recipe.yaml"),
    Case("file.alias-bomb-stages", (BOMB + _base_text().replace("stages:", "stages: *i\nstagez:", 1)).encode(),
         "recipe.yaml"),
    Case("file.alias-small", (_base_text().replace("name: av_digits", "name: &n av_digits") +
                              "x_copy: *n\n").encode(), "recipe.yaml"),
    Case("file.python-tag", (_base_text() + "evil: !!python/object/apply:os.system [echo hi]\n").encode(),
         "recipe.yaml"),
    Case("file.nul-bytes", _base_text().encode().replace(b"\n", b"\x00\n", 3), "recipe.yaml"),
    Case("file.utf16", _base_text().encode("utf-16"), "recipe.yaml"),
]


@pytest.mark.parametrize("case", params(FILES))
def test_bad_recipe_file(case, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(case.value)
    expect_cli_error(["check", path], case.where, capsys)


def test_recipe_that_is_a_folder(tmp_path, capsys):
    (tmp_path / "recipe.yaml").mkdir()
    expect_cli_error(["check", tmp_path / "recipe.yaml"], "recipe.yaml", capsys)


def test_recipe_that_is_missing(tmp_path, capsys):
    expect_cli_error(["check", tmp_path / "nope.yaml"], "nope.yaml", capsys)


OVERRIDES = [
    Case("set.no-equals", "training.epochs", "--set training.epochs"),
    Case("set.unknown-key", "training.epochz=3", "training.epochz"),
    Case("set.into-a-scalar", "name.x=3", "--set name.x"),
    Case("set.list-index-out-of-range", "inputs.9.column=a", "--set inputs.9.column"),
    Case("set.unknown-item-name", "tasks.colour.weight=2", "--set tasks.colour.weight"),
    Case("set.bad-yaml-value", "training.epochs=[1,", "training.epochs"),
    Case("set.empty-key", "=3", "--set =3"),
    Case("set.spaces-key", "  =3", "--set   =3"),
    Case("set.empty-value-required", "name=", "name"),
    Case("set.alias-in-value", "name=[*a]", "name"),
    Case("set.wrong-type", "training.batch_size=big", "training.batch_size"),
    Case("set.negative", "training.epochs=-1", "training.epochs"),
    Case("set.into-a-list-of-scalars", "stages.x=1", "--set stages.x"),
]


@pytest.mark.parametrize("case", params(OVERRIDES))
def test_bad_override(case, tmp_path, capsys):
    expect_cli_error(["check", write(tmp_path, BASE), "--set", case.value], case.where, capsys)


CATEGORIES = {"recipe keys": KEY_CASES, "recipe combinations": SEMANTIC, "recipe files": FILES + [None, None],
              "recipe --set": OVERRIDES}
