"""A run directory's files agree with each other: RUN/recipe.yaml with what the run's models were built from
(RUN/fingerprint.json, written when training starts), each model file with the recipe, preprocess/labels.json with
the recipe's tasks. A hand-edited, copied or damaged file is one EdgemtlError naming it and the key that differs,
before any data is decoded or model loaded. TF-free.
"""
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import jsonio, kinds
from .errors import EdgemtlError
from .presence import presence_name
from .runsafety import MODEL_FILE, atomic_write_json

FINGERPRINT_FILE = "fingerprint.json"
FINGERPRINT_VERSION = 1
# the recipe sections the models and labels are built from ...
BUILT_FROM = ("inputs", "fusion", "trunk", "tasks")
# ... less the keys that only steer training or decisions: editing them after training changes no built file
TRAINING_ONLY = frozenset({"augment", "dropout", "trainable", "weights", "weight", "loss", "label_smoothing",
                           "metrics", "threshold", "auxiliary", "unmatched_weight", "modality_dropout", "l1", "l2"})
_MAX_CONFIG_BYTES = 16 << 20  # a model.keras config.json larger than this is not one edgemtl wrote


def fingerprint(recipe) -> dict:
    """{dotted key: value} of what the run's models and labels are built from (lists of named items by name)."""
    plain = recipe.to_dict()
    flat: dict[str, Any] = {}
    for section in BUILT_FROM:
        _flatten(plain.get(section), section, flat)
    return flat


def _flatten(value, key: str, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in TRAINING_ONLY:
                _flatten(v, f"{key}.{k}", out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        for v in value:
            _flatten(v, f"{key}.{v['name']}", out)
    else:
        out[key] = value


def write_fingerprint(run, recipe) -> None:
    """RUN/fingerprint.json: what this run's models and labels are (being) built from."""
    atomic_write_json(run.root / FINGERPRINT_FILE, {"version": FINGERPRINT_VERSION, "built_from": fingerprint(recipe)})


def check_recipe_unchanged(run, recipe) -> None:
    """RUN/recipe.yaml (with this call's --set) still describes the models and labels the run holds; a run made
    before fingerprints (no fingerprint.json) is not checked."""
    path = run.root / FINGERPRINT_FILE
    if not path.exists():
        return
    saved = jsonio.read(path, "run fingerprint")
    built = saved.get("built_from") if isinstance(saved, dict) else None
    if not isinstance(built, dict):
        raise EdgemtlError(f"{path}: not a run fingerprint (expected an object with 'built_from'): damaged; "
                           f"restore it or train the run again")
    now = fingerprint(recipe)
    # keys in both only: a key a newer edgemtl added (or dropped) with its default is no edit; an added, removed or
    # renamed input or task is found by its name
    differ = [k for k in sorted(built) if k in now and _json(built[k]) != _json(now[k])]
    renamed = any(_items(built, s) != _items(now, s) for s in ("inputs", "tasks"))
    if not differ and not renamed:
        return
    raise EdgemtlError(f"{run.recipe}: {_difference(built, now, differ)}: recipe.yaml was edited or replaced after "
                       f"training; restore it, or train a new run with the changed recipe (--out another folder)")


def _items(flat: dict, section: str) -> list:
    """The names of a section's named items (inputs, tasks) in a flat fingerprint, in order."""
    return list(dict.fromkeys(k.split(".")[1] for k in flat if k.startswith(f"{section}.") and k.count(".") >= 2
                              and k.endswith(".name")))


def _difference(built: dict, now: dict, differ: list) -> str:
    """What differs, said at the level a user edits: an input or task added, removed or renamed, else the key."""
    for section in ("inputs", "tasks"):
        was, has = _items(built, section), _items(now, section)
        new, gone = [n for n in has if n not in was], [n for n in was if n not in has]
        if new or gone or was != has:
            parts = [f"'{n}' is new" for n in new] + [f"'{n}' is gone" for n in gone] or ["in another order"]
            return f"{section}: {', '.join(parts)} (the run's models were built with {', '.join(was) or 'none'})"
    key = differ[0]
    more = f" (and {len(differ) - 1} more key(s))" if len(differ) > 1 else ""
    return f"{key} is {_short(now[key])}, the run's models were built with {_short(built[key])}{more}"


def _json(value) -> str:
    return json.dumps(value, sort_keys=True)


def _short(value, limit: int = 80) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


# --- model files ---------------------------------------------------------------------------------------------------
def model_signature(path: Path) -> tuple[dict, list] | None:
    """({input name: shape without batch}, [output names]) from a .keras file's config.json, read as data (no
    layer is built); None where the file is not a readable .keras archive (loading it reports that)."""
    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("config.json")
            if info.file_size > _MAX_CONFIG_BYTES:
                return None
            config = json.loads(z.read(info)).get("config", {})
        inputs = {}
        for layer in config.get("layers", []):
            if layer.get("class_name") == "InputLayer":
                cfg = layer.get("config", {})
                inputs[cfg.get("name")] = list(cfg.get("batch_input_shape") or [None])[1:]
        return inputs, list(config.get("output_layers") or {})
    except (OSError, KeyError, ValueError, AttributeError, TypeError, zipfile.BadZipFile):
        return None


def check_model_matches(path: Path, recipe) -> None:
    """A model file of the run has the recipe's inputs (names and shapes) and only the recipe's tasks as outputs:
    a model.keras copied from another run or recipe is named before it is loaded."""
    signature = model_signature(path)
    if signature is None:
        return
    inputs, outputs = signature
    wanted = {i.name: list(kinds.modality(i.type).input_shape(i)) for i in recipe.inputs}
    # an optional input's presence flag is a model input of its own ([batch, 1])
    wanted.update({presence_name(i.name): [1] for i in recipe.inputs if getattr(i, "optional", False)})
    tasks = [t.name for t in recipe.tasks]
    hint = "a model file copied from another run or recipe? Train it again in this run"
    for name, shape in inputs.items():
        if name not in wanted:
            raise EdgemtlError(f"{path}: has input '{name}', which the run's recipe has not "
                               f"(inputs: {', '.join(wanted)}): {hint}")
        if shape != wanted[name]:
            raise EdgemtlError(f"{path}: input '{name}' has shape {shape}, the run's recipe gives {wanted[name]}: "
                               f"{hint}")
    missing = [n for n in wanted if n not in inputs]
    if missing and inputs:
        raise EdgemtlError(f"{path}: has no input '{missing[0]}' of the run's recipe: {hint}")
    for name in outputs:
        if name not in tasks:
            raise EdgemtlError(f"{path}: has output '{name}', not a task of the run's recipe "
                               f"(tasks: {', '.join(tasks)}): {hint}")


def check_run(run, recipe) -> None:
    """Everything above for a run about to be read: the recipe against the fingerprint, every model file against
    the recipe."""
    check_recipe_unchanged(run, recipe)
    for name in run.models():
        path = run.model_dir(name) / MODEL_FILE
        if path.is_file():
            check_model_matches(path, recipe)


# --- labels.json ---------------------------------------------------------------------------------------------------
def check_labels(labels: Any, recipe, path: Path) -> dict:
    """preprocess/labels.json as read: one entry per recipe task, each what its task kind stores (named classes,
    or numeric statistics); EdgemtlError naming the file and task otherwise."""
    fix = "a damaged or hand-edited file: restore it, or train the run again"
    if not isinstance(labels, dict):
        raise EdgemtlError(f"{path}: expected an object with one entry per task, got {type(labels).__name__}: {fix}")
    for task in recipe.tasks:
        entry = labels.get(task.name)
        if entry is None:
            raise EdgemtlError(f"{path}: no entry for task '{task.name}' (it has {', '.join(labels) or 'none'}): "
                               f"the recipe has a task the run was not trained with, or {fix}")
        where = f"{path}: task '{task.name}'"
        if not isinstance(entry, Mapping):
            raise EdgemtlError(f"{where}: expected an object, got {type(entry).__name__}: {fix}")
        if entry.get("type", task.type) != task.type:
            raise EdgemtlError(f"{where}: labels of a {entry.get('type')!r} task, the recipe's task is "
                               f"{task.type!r}: the recipe changed after training, or {fix}")
        if kinds.task_kind(task.type).has_classes:
            classes = entry.get("classes")
            if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
                raise EdgemtlError(f"{where}: 'classes' must be a list of class names: {fix}")
            if len(set(classes)) != len(classes):
                raise EdgemtlError(f"{where}: 'classes' names a class twice: {fix}")
        else:
            for key in ("mean", "std"):
                value = entry.get(key)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise EdgemtlError(f"{where}: '{key}' must be a number, got {_short(value)}: {fix}")
    return labels
