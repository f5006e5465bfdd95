"""The kinds registry: one class per input modality and one per task type, keyed by the recipe's names.

Adding a modality or a task type is one module here (a ModalityKind or TaskKind subclass, see base.py) and one line
in MODALITIES or TASKS. Importing this package loads numpy, PIL and the standard library only: the runtime and the
recipe checks use it without TensorFlow; the TF half of each kind imports TensorFlow inside its methods.
"""
from collections.abc import Mapping

from ..errors import EdgemtlError
from .audio import AudioKind
from .base import MISSING, BadInput, ModalityKind, TaskKind, macro_f1, mean_score
from .binary import BinaryKind
from .boxes import BoxesKind
from .image import ImageKind
from .mask import MaskKind
from .multiclass import MulticlassKind
from .multilabel import MultilabelKind
from .numeric import NumericKind
from .regression import RegressionKind
from .sequence import SequenceKind
from .text import TextKind

MODALITIES: dict[str, ModalityKind] = {
    "image": ImageKind(),
    "text": TextKind(),
    "audio": AudioKind(),
    "numeric": NumericKind(),
    "sequence": SequenceKind(),
}
TASKS: dict[str, TaskKind] = {
    "multiclass": MulticlassKind(),
    "binary": BinaryKind(),
    "multilabel": MultilabelKind(),
    "regression": RegressionKind(),
    "boxes": BoxesKind(),
    "mask": MaskKind(),
}

__all__ = ["MISSING", "MODALITIES", "TASKS", "BadInput", "ModalityKind", "TaskKind", "higher_is_better", "macro_f1",
           "mean_score", "mix_batch", "modality", "score_all", "score_tasks", "task_kind"]


def modality(name: str) -> ModalityKind:
    """The kind of an input modality (an InputSpec's or a manifest entry's type)."""
    try:
        return MODALITIES[name]
    except KeyError:
        raise EdgemtlError(f"unknown modality '{name}' (one of {', '.join(MODALITIES)})") from None


def task_kind(type_: str) -> TaskKind:
    """The kind of a task type (a TaskSpec's or a manifest output's type)."""
    try:
        return TASKS[type_]
    except KeyError:
        raise EdgemtlError(f"unknown task type '{type_}' (one of {', '.join(TASKS)})") from None


def score_tasks(tasks, labels: Mapping, y: Mapping, outputs: Mapping) -> dict:
    """{task: its kind's score()} for the tasks (TaskSpecs) that have an output; labels: labels.json."""
    return {t.name: task_kind(t.type).score(y[t.name], outputs[t.name], t.threshold,
                                            labels[t.name].get("std", 1.0))
            for t in tasks if t.name in outputs}


def score_all(tasks, labels: Mapping, y: Mapping, outputs: Mapping) -> dict:
    """score_tasks plus "mean_score": the mean of the normalised scores of the tasks that are exported (None when
    none scored), and "mean_note" naming the tasks left out of it, where any was (metrics.json, bench results).

    Auxiliary tasks are scored but kept out of the mean: a teacher has them and its students and artifacts do not,
    so a mean with them would compare a teacher and its student over different tasks."""
    per = score_tasks(tasks, labels, y, outputs)
    value, note = mean_score({t.name: per[t.name] for t in tasks if t.name in per and not t.auxiliary})
    return {**per, "mean_score": value, **({"mean_note": note} if note else {})}


def higher_is_better(monitor: str) -> bool:
    """Whether a training monitor (val_loss, val_mean_score, val_<task>_<metric>) improves upwards."""
    lower = {"loss", *(m for kind in TASKS.values() for m in kind.lower_is_better_metrics)}
    return not any(monitor.endswith(s) for s in lower)


def mix_batch(x: Mapping, modalities: Mapping[str, str]) -> dict:
    """TF (mixup): each row of a batch blended with another row, one weight per row for every input, each input by
    its modality's rule. modalities: input name -> modality name."""
    from ..tfk import tf

    batch = tf.shape(next(iter(x.values())))[0]
    partner = tf.random.shuffle(tf.range(batch))
    lam = tf.random.uniform([batch])
    out = {}
    for name, v in x.items():
        w = tf.reshape(lam, [-1] + [1] * (len(v.shape) - 1))
        # a presence flag (an optional input's `<name>_present`) blends as a number: a partly present modality
        out[name] = modality(modalities.get(name, "numeric")).mix(v, tf.gather(v, partner), w)
    return out
