"""Load a recipe: YAML -> overrides -> validation into typed specs -> cross-key checks. Every problem at once."""
import copy
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import yaml

from .. import kinds
from ..artifacts import single_task_name
from ..errors import EdgemtlError, did_you_mean
from ..names import STUDENTS, TEACHER
from .derive import student_recipe
from .schema import Recipe, TaskSpec
from .spec import join, validate_spec


def load_recipe(path, overrides=(), data=None) -> Recipe:
    """Return the resolved recipe (defaults filled, data.source absolute, task columns and metrics set). Raise
    EdgemtlError listing all problems.

    overrides: 'dotted.path=value' strings (values parsed as YAML); data: a manifest path replacing data.source.
    """
    path = Path(path)
    label = path.name
    if not path.exists():
        raise EdgemtlError(f"{path}: recipe file not found")
    raw = read_yaml(path, label)
    if not isinstance(raw, dict):
        raise EdgemtlError(f"{label}: a recipe is a mapping of keys (name, data, inputs, tasks, ...)")
    recipe = validate_recipe(apply_overrides(raw, overrides, label), label)
    return _resolve(recipe, path.parent, label, data)


MAX_RECIPE_BYTES = 1 << 20  # recipes are a few kB; anything this large is not one


class RecipeLoader(yaml.SafeLoader):
    """SafeLoader that refuses what a recipe never needs and an attacker uses: aliases (`*a`, which expand to an
    exponential tree: the 'billion laughs' bomb) and a key given twice in one mapping (the second would win
    silently)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(None, None, f"alias '*{event.anchor}': recipes do not use anchors or aliases "
                                       "(write the value out)", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True) if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in seen:
                raise yaml.MarkedYAMLError(None, None, f"key '{str(key)[:60]}' appears twice in one mapping "
                                           "(the second would silently replace the first)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


RecipeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, RecipeLoader.construct_mapping)


def read_yaml(path: Path, label: str):
    """The plain data of a recipe file; EdgemtlError naming the file (and line) for anything that is not a UTF-8
    YAML document."""
    if path.is_dir():
        raise EdgemtlError(f"{label}: is a folder, not a recipe file")
    try:
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise EdgemtlError(f"{label}: {path.stat().st_size} bytes is too large for a recipe")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise EdgemtlError(f"{label}: not a UTF-8 text file (byte {e.start} cannot be decoded)") from None
    except OSError as e:
        raise EdgemtlError(f"{label}: cannot be read ({e.strerror})") from None
    return parse_yaml(text, label)


def parse_yaml(text: str, label: str):
    try:
        return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = str(getattr(e, "problem", None) or e)[:200]
        raise EdgemtlError(f"{label}{where}: not valid YAML ({problem})") from None


def validate_recipe(raw: dict, label: str = "recipe") -> Recipe:
    """The typed recipe a plain mapping describes (e.g. a modified `Recipe.to_dict()`); raise EdgemtlError listing
    every problem as 'label: path: problem'."""
    errors: list[str] = []
    recipe = validate_spec(Recipe, raw, "", errors)
    if not errors:
        errors += _cross_checks(recipe)
    if not errors:
        errors += _export_checks(recipe) + _compress_checks(recipe)
    if errors:
        raise EdgemtlError(*[f"{label}: {e}" for e in errors])
    return recipe


def _resolve(recipe: Recipe, base: Path, label: str, data) -> Recipe:
    """Paths made absolute (data.source, encoder weights), task columns and metrics defaulted."""
    source = Path(data) if data else base / recipe.data.source
    where = "--data" if data else "data.source"
    if not source.exists():
        raise EdgemtlError(f"{label}: {where}: file '{os.path.normpath(source)}' not found")
    if not source.is_file():
        raise EdgemtlError(f"{label}: {where}: '{os.path.normpath(source)}' is a folder, not a manifest file")
    inputs = []
    for inp in recipe.inputs:
        if inp.encoder.weights:
            wpath = (base / inp.encoder.weights).resolve()
            if not wpath.exists():
                raise EdgemtlError(f"{label}: inputs.{inp.name}.encoder.weights: file '{wpath}' not found")
            inp = dataclasses.replace(inp, encoder=dataclasses.replace(inp.encoder, weights=str(wpath)))
        inputs.append(inp)
    tasks = tuple(dataclasses.replace(t, column=t.column or t.name, metrics=t.metrics or task_metric_names(t))
                  for t in recipe.tasks)
    training = recipe.training
    if training.from_run.run:  # relative to the recipe file, like data.source; checked when training starts
        training = dataclasses.replace(training, from_run=dataclasses.replace(
            training.from_run, run=str((base / training.from_run.run).resolve())))
    return dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, source=str(source.resolve())),
                               inputs=tuple(inputs), tasks=tasks, training=training)


def recipe_hash(recipe: Recipe | dict) -> str:
    plain = recipe.to_dict() if isinstance(recipe, Recipe) else recipe
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def apply_overrides(raw: dict, overrides, label: str) -> dict:
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise EdgemtlError(f"--set {item}: expected key.path=value")
        key, value = item.split("=", 1)
        if not key.strip():
            raise EdgemtlError(f"--set {item[:80]}: expected key.path=value (the key is empty)")
        try:
            parsed = yaml.load(value, Loader=RecipeLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError:
            parsed = value
        _set_path(raw, key.strip(), parsed, label)
    return raw


def _set_path(node, dotted: str, value, label: str):
    parts = dotted.replace("[", ".").replace("]", "").split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            idx = _list_index(node, part, dotted)
            if last:
                node[idx] = value
            node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise EdgemtlError(f"--set {dotted}: '{part}' is inside a value, not a mapping")


def _list_index(items: list, part: str, dotted: str) -> int:
    if part.isdigit() and int(part) < len(items):
        return int(part)
    names = [x.get("name") for x in items if isinstance(x, dict)]
    if part in names:
        return names.index(part)
    raise EdgemtlError(f"--set {dotted}: no item '{part}'{did_you_mean(part, names)}")


def _cross_checks(recipe: Recipe) -> list[str]:
    errors = []
    names = {}
    for section in ("inputs", "tasks"):
        for i, item in enumerate(getattr(recipe, section)):
            if item.name in names:
                errors.append(f"{section}[{i}].name: '{item.name}' is already used by {names[item.name]}")
            names[item.name] = f"{section}[{i}]"
    ratios = recipe.data.split.ratios
    if len(ratios) != 3 or any(not isinstance(r, (int, float)) or r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        errors.append(f"data.split.ratios: must be three non-negative fractions summing to 1, got {list(ratios)}")
    monitor = recipe.training.early_stopping.monitor
    allowed = monitor_names(recipe)
    if monitor not in allowed:
        errors.append(f"training.early_stopping.monitor: {monitor!r} is not a metric of this recipe"
                      f"{did_you_mean(monitor, allowed)}")
    for i, t in enumerate(recipe.tasks):
        allowed = task_metric_names(t)
        for j, m in enumerate(t.metrics):
            if m not in allowed:
                errors.append(f"tasks[{i}].metrics[{j}]: {m!r} is not a {t.type} metric (one of "
                              f"{', '.join(allowed)}){did_you_mean(m, allowed)}")
    texts = [i.name for i in recipe.inputs if kinds.modality(i.type).has_vocabulary]
    for i, t in enumerate(recipe.tasks):
        source = t.match_labels
        if source is not None and source not in texts:
            hint = did_you_mean(source, texts) or f" (text inputs: {', '.join(texts) or 'none'})"
            errors.append(f"tasks[{i}].match_labels: {source!r} is not a text input{hint}")
        elif source is not None and not kinds.task_kind(t.type).supports_label_match:
            matching = " and ".join(n for n, k in kinds.TASKS.items() if k.supports_label_match)
            errors.append(f"tasks[{i}].match_labels: a {t.type} task has no class names to match "
                          f"({matching} tasks do)")
        if t.unmatched_weight and source is None:
            errors.append(f"tasks[{i}].unmatched_weight: needs match_labels (it trains the head without the match)")
        errors += _bound_problems(t, f"tasks[{i}]") + _label_name_problems(t, f"tasks[{i}]")
    if recipe.data.split.group and recipe.data.split.column:
        errors.append("data.split.group: a split column already names each row's split; group is for ratio splits")
    if all(t.auxiliary for t in recipe.tasks):
        errors.append("tasks: every task is auxiliary; at least one must be exported")
    for i, inp in enumerate(recipe.inputs):
        errors += kinds.modality(inp.type).problems(inp, f"inputs[{i}]")
    errors += _optional_problems(recipe)
    return errors


def _optional_problems(recipe) -> list[str]:
    """An optional input needs another input to answer from, and its presence input's name must be free."""
    from ..presence import presence_name

    names = {i.name for i in recipe.inputs}
    errors = []
    for i, inp in enumerate(recipe.inputs):
        if not inp.optional:
            continue
        if all(other.optional for other in recipe.inputs):
            errors.append(f"inputs[{i}].optional: every input is optional; at least one must always be given")
        if presence_name(inp.name) in names:
            errors.append(f"inputs[{i}].optional: its presence input '{presence_name(inp.name)}' has the name of "
                          f"another input")
    return errors


def _bound_problems(task, where: str) -> list[str]:
    """min/max: regression only, and min below max."""
    given = [k for k in ("min", "max") if getattr(task, k) is not None]
    if given and not kinds.task_kind(task.type).has_bounds:
        return [f"{where}.{given[0]}: bounds are for regression tasks, not {task.type}"]
    if len(given) == 2 and not task.min < task.max:
        return [f"{where}.min: {task.min} is not below max {task.max}"]
    return []


def _label_name_problems(task, where: str) -> list[str]:
    """labels / labels_array: class tasks only, one of the two, distinct names; positive: binary tasks only."""
    kind = kinds.task_kind(task.type)
    errors = []
    given = [k for k in ("labels", "labels_array") if getattr(task, k) is not None]
    if given and not kind.has_classes:
        errors.append(f"{where}.{given[0]}: label names are for class tasks, not {task.type}")
    elif len(given) == 2:
        errors.append(f"{where}.labels_array: give labels or labels_array, not both")
    elif task.labels is not None and len(set(task.labels)) != len(task.labels):
        repeated = next(n for n in task.labels if task.labels.count(n) > 1)
        errors.append(f"{where}.labels: '{repeated}' is named more than once")
    if task.positive is not None and task.type != "binary":
        errors.append(f"{where}.positive: is for binary tasks, not {task.type}")
    return errors


def producible_models(recipe: Recipe) -> dict[str, str | None]:
    """Every model name a run of this recipe can hold -> None, or what it needs when the recipe leaves it out."""
    cfg = recipe.compress
    needs = {"student-scratch": None if cfg.scratch else "compress.scratch: true",
             "student-pruned": None if cfg.prune.enabled else "compress.prune.enabled: true",
             "student-qat": None if cfg.qat.enabled else "compress.qat.enabled: true"}
    models = {TEACHER: None, **{s: needs.get(s) for s in STUDENTS}}
    models.update({single_task_name(t.name): None for t in recipe.tasks if not t.auxiliary})
    return models


def _export_checks(recipe: Recipe) -> list[str]:
    errors = []
    models = producible_models(recipe)
    for i, name in enumerate(recipe.export.model):
        where = join("export.model", i)
        if name not in models:
            errors.append(f"{where}: {name!r} is not a model this recipe can produce (one of "
                          f"{', '.join(models)}){did_you_mean(name, models)}")
        elif models[name]:
            errors.append(f"{where}: {name!r} needs {models[name]}")
    tasks = [t.name for t in recipe.tasks]
    for name in recipe.export.tolerance:
        if name not in tasks:
            errors.append(f"export.tolerance.{name}: not a task of the recipe{did_you_mean(name, tasks)}")
    return errors


def _compress_checks(recipe: Recipe) -> list[str]:
    cfg = recipe.compress
    errors = []
    if cfg.start == "student-scratch" and not cfg.scratch:
        errors.append("compress.start: 'student-scratch' needs compress.scratch: true")
    tasks = [t.name for t in recipe.tasks]
    for name in cfg.distill.tasks:
        if name not in tasks:
            errors.append(f"compress.distill.tasks.{name}: not a task of the recipe{did_you_mean(name, tasks)}")
    try:
        student_recipe(recipe)
    except EdgemtlError as e:
        errors += e.messages
    return errors


def task_metric_names(task: TaskSpec) -> tuple:
    return kinds.task_kind(task.type).metric_names


def monitor_names(recipe: Recipe) -> list[str]:
    names = ["val_loss", "val_mean_score"]
    for t in recipe.tasks:
        names += [f"val_{t.name}_{m}" for m in task_metric_names(t)] + [f"val_{t.name}_loss"]
    return names
