"""Incremental training (`train --from RUN`, training.from_run): a new recipe's teacher starts from an earlier run's.

Every layer of RUN's teacher whose name and shapes the new model has is copied: the encoders (`<input>_*`), the
fusion (`fusion_*`), the trunk (`trunk_*`) and the heads of the tasks RUN has (`<task>` and `<task>_*`); a task RUN
lacks gets a fresh head. The parts named in `freeze` are set untrainable, which in tf_keras also keeps BatchNorm in
inference mode, so they stay bit-identical through training.

What must agree, checked before any data is decoded (RUN/fingerprint.json against this recipe's, so RUN's data need
not be here): the inputs (names, order, types, shapes, encoders), fusion and trunk, and each kept task's definition.
Vocabularies are RUN's: a kept task keeps RUN's classes (the head's outputs mean the same classes; a training class
RUN's head lacks is an error) and its regression statistics, and a text input keeps RUN's vocabulary (the embedding
rows mean the same words). Numeric standardisation is part of the copied encoder.
"""
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .. import jsonio, kinds
from ..errors import EdgemtlError
from ..names import TEACHER
from ..runcheck import FINGERPRINT_FILE, check_labels, fingerprint
from ..rundir import LABELS_FILE, RunDir, atomic_write_json, is_edgemtl_run

log = logging.getLogger("edgemtl")
KEY = "training.from_run.run"
SECTIONS = ("inputs", "fusion", "trunk")  # the fingerprint sections that must be RUN's
TASK_KEYS_FREE = ("column",)  # a kept task may read its labels from another column


@dataclass
class SourceRun:
    """The run a recipe's teacher starts from, checked against the recipe."""

    root: Path
    recipe_hash: str
    labels: dict  # RUN's preprocess/labels.json
    kept: tuple[str, ...]  # the recipe's tasks RUN's teacher has a head for
    new: tuple[str, ...]  # the recipe's tasks that get fresh heads
    freeze: tuple[str, ...]
    copied: dict = field(default_factory=dict)  # part -> layer names copied (filled by init_net)
    fresh: list = field(default_factory=list)  # weighted layers that start from their initialisers
    initialised: bool = False  # init_net ran (a resumed, finished teacher is not built again)

    @property
    def run(self) -> RunDir:
        return RunDir(self.root)

    def record(self) -> dict:
        """Where the model came from: stored in the new run's fingerprint.json and the teacher's metrics.json."""
        return {"run": str(self.root), "recipe_hash": self.recipe_hash, "kept_tasks": list(self.kept),
                "new_tasks": list(self.new), "frozen": list(self.freeze),
                "copied_layers": {p: len(v) for p, v in self.copied.items()}, "fresh_layers": list(self.fresh)}


def open_source(recipe) -> SourceRun:
    """RUN of training.from_run.run, checked against `recipe` without TensorFlow or RUN's data: one EdgemtlError
    naming the first thing that differs."""
    spec = recipe.training.from_run
    root = Path(spec.run)
    if not root.is_dir() or not is_edgemtl_run(root):
        raise EdgemtlError(f"{KEY}: '{root}' is not a run directory made by edgemtl")
    run = RunDir(root)
    if not run.keras_file(TEACHER).is_file():
        raise EdgemtlError(f"{KEY}: {root} has no trained teacher ({run.keras_file(TEACHER)} is missing): train it "
                           f"first")
    saved = jsonio.read(root / FINGERPRINT_FILE, "run fingerprint") if (root / FINGERPRINT_FILE).is_file() else None
    built = saved.get("built_from") if isinstance(saved, dict) else None
    if not isinstance(built, dict) or not run.labels.is_file():
        raise EdgemtlError(f"{KEY}: {root} lacks {FINGERPRINT_FILE} or preprocess/{LABELS_FILE} (made by an older "
                           f"edgemtl, or damaged): what its teacher was built from cannot be checked")
    source_tasks = _names(built, "tasks")
    kept = tuple(t.name for t in recipe.tasks if t.name in source_tasks)
    _check_compatible(built, fingerprint(recipe), kept, root)
    for inp in recipe.inputs:
        mk = kinds.modality(inp.type)
        if mk.has_vocabulary and not (run.preprocess / mk.vocab_file(inp)).is_file():
            raise EdgemtlError(f"{KEY}: {root}: preprocess/{mk.vocab_file(inp)} is missing: input '{inp.name}' "
                               f"needs the vocabulary RUN's teacher was trained with")
    labels = jsonio.read(run.labels, "label vocabulary")
    check_labels(labels, _with_tasks(recipe, kept), run.labels)
    return SourceRun(root, run.recipe_hash(), labels, kept,
                     tuple(t.name for t in recipe.tasks if t.name not in kept), tuple(spec.freeze))


def _names(flat: dict, section: str) -> list:
    return list(dict.fromkeys(k.split(".")[1] for k in flat if k.startswith(f"{section}.") and k.endswith(".name")))


def _with_tasks(recipe, names):
    from dataclasses import replace

    return replace(recipe, tasks=tuple(t for t in recipe.tasks if t.name in names))


def _check_compatible(built: dict, now: dict, kept: tuple, root: Path) -> None:
    theirs, ours = _names(built, "inputs"), _names(now, "inputs")
    if theirs != ours:
        raise EdgemtlError(f"{KEY}: {root}: its teacher takes the inputs {', '.join(theirs)}, this recipe "
                           f"{', '.join(ours)}: the inputs must be RUN's (same names, in the same order)")
    # keys in both (as check_recipe_unchanged: a key another edgemtl version added is no difference); a different
    # input type or encoder type differs in its `type` key
    compared = [k for k in sorted(set(built) & set(now)) if k.split(".")[0] in SECTIONS or
                (k.startswith("tasks.") and k.split(".")[1] in kept and k.split(".")[-1] not in TASK_KEYS_FREE)]
    for k in compared:
        if _dumps(built[k]) != _dumps(now[k]):
            raise EdgemtlError(f"{KEY}: {root}: {k} is {_dumps(now[k])} here, RUN's teacher was built with "
                               f"{_dumps(built[k])}: the inputs, fusion, trunk and kept tasks must be RUN's")


def _dumps(value) -> str:
    return json.dumps(value, sort_keys=True)


def adopter(source: SourceRun, recipe):
    """prepare()'s adopt hook: kept tasks take RUN's label entries, text inputs RUN's vocabularies."""

    def adopt(labels: dict, tokenizers: dict):
        out = dict(labels)
        for i, task in enumerate(recipe.tasks):
            if task.name not in source.kept:
                continue
            theirs = source.labels[task.name]
            if kinds.task_kind(task.type).has_classes:
                extra = [c for c in labels[task.name]["classes"] if c not in theirs["classes"]]
                if extra:
                    shown = ", ".join(f"'{c}'" for c in extra[:5]) + (" ..." if len(extra) > 5 else "")
                    raise EdgemtlError(f"tasks[{i}] ({task.name}): the training split has {len(extra)} class(es) "
                                       f"RUN's head does not know ({shown}; {KEY}: {source.root}); a kept task keeps "
                                       f"RUN's classes: rename the task to train a new head")
            out[task.name] = theirs
        vocab = {name: kinds.modality(recipe.input(name).type).load_tokenizer(recipe.input(name),
                                                                            source.run.preprocess)
                 for name in tokenizers}
        return out, vocab

    return adopt


def part_of(layer_name: str, inputs: list, tasks: list) -> str | None:
    """encoders, fusion, trunk or heads: which part of the model a layer belongs to, by its name."""
    for task in sorted(tasks, key=len, reverse=True):
        if layer_name == task or layer_name.startswith(f"{task}_"):
            return "heads"
    if layer_name.startswith("trunk_"):
        return "trunk"
    if layer_name.startswith("fusion_"):
        return "fusion"
    if any(layer_name.startswith(f"{name}_") for name in inputs):
        return "encoders"
    return None


def init_net(source: SourceRun, recipe, net) -> None:
    """Copy RUN's teacher's layers into `net` by name, freeze the asked parts; the record goes to source."""
    from ..models.build import load_model
    from ..tfk import keras

    teacher = load_model(source.run.keras_file(TEACHER))
    theirs = {layer.name: layer for layer in teacher.layers if layer.weights}
    inputs = [i.name for i in recipe.inputs]
    tasks = [t.name for t in recipe.tasks]
    source.copied, source.fresh = {}, []
    pairs = []
    for layer in net.layers:
        if not layer.weights:
            continue
        part, other = part_of(layer.name, inputs, tasks), theirs.get(layer.name)
        if part is None or other is None or (part == "heads" and _task_of(layer.name, tasks) in source.new):
            source.fresh.append(layer.name)
            continue
        matched = _weight_pairs(layer, other)
        if matched is None:
            if part != "trunk":  # what the recipe check leaves: a PLE shared gate sees one more task's experts
                raise EdgemtlError(f"{KEY}: {source.root}: layer '{layer.name}' has other shapes in RUN's teacher "
                                   f"({_shapes(other)}) than here ({_shapes(layer)})")
            log.warning("from %s: trunk layer %s starts fresh (its shapes differ: one more task)", source.root,
                        layer.name)
            source.fresh.append(layer.name)
            continue
        pairs += matched
        source.copied.setdefault(part, []).append(layer.name)
        if part in source.freeze:
            layer.trainable = False
    keras.backend.batch_set_value(pairs)
    source.initialised = True
    log.info("from %s: copied %s; fresh: %s; frozen: %s", source.root,
             ", ".join(f"{len(v)} {p} layer(s)" for p, v in source.copied.items()) or "nothing",
             ", ".join(source.fresh) or "none", ", ".join(source.freeze) or "none")


def _task_of(layer_name: str, tasks: list) -> str | None:
    for task in sorted(tasks, key=len, reverse=True):
        if layer_name == task or layer_name.startswith(f"{task}_"):
            return task
    return None


def _leaves(layer) -> list:
    """A layer's weighted leaf layers in build order: a nested model (a backbone) by topology, since tf_keras
    numbers some applications' block names per process."""
    from ..tfk import keras

    if isinstance(layer, keras.Model):
        return [leaf for sub in layer.layers if sub.weights for leaf in _leaves(sub)]
    return [layer]


def _weight_pairs(layer, other) -> list | None:
    """(variable, value) pairs setting `layer` from `other`, or None where their weights' shapes differ. Plain
    layers list their weights in one order whether trainable or not (a frozen nested model does not: by leaves)."""
    ours, theirs = _leaves(layer), _leaves(other)
    if len(ours) != len(theirs):
        return None
    pairs = []
    for a, b in zip(ours, theirs):
        if [tuple(w.shape) for w in a.weights] != [tuple(w.shape) for w in b.weights]:
            return None
        pairs += [(w, v) for w, v in zip(a.weights, b.get_weights())]
    return pairs


def _shapes(layer) -> str:
    return ", ".join(str(list(w.shape)) for w in layer.weights[:3]) + (" ..." if len(layer.weights) > 3 else "")


def write_record(source: SourceRun, run: RunDir) -> None:
    """The new run's fingerprint.json (init_run writes it afresh, also on --resume) and, once init_net has run,
    its teacher's metrics.json say where the teacher came from."""
    from ..model_metrics import update_metrics

    path = run.root / FINGERPRINT_FILE
    saved = jsonio.read(path, "run fingerprint") if path.is_file() else {}
    atomic_write_json(path, {**saved, "from_run": {"run": str(source.root), "recipe_hash": source.recipe_hash}})
    if source.initialised:
        update_metrics(run, TEACHER, {"from_run": source.record()})
