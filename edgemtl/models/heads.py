"""One head per task; the output layer carries the task's name so Keras, TFLite and ONNX outputs are named by it."""
import sys

from ..recipe.schema import TaskSpec
from ..data.labels import n_outputs
from ..preprocess import split_words
from ..tfk import keras
from .layers import Denormalize, LabelNameMatch

L = keras.layers
ACTIVATION = {"multiclass": "softmax", "binary": "sigmoid", "multilabel": "sigmoid"}


def head(x, task: TaskSpec, label_spec: dict, match=None):
    """The task's output from the shared vector `x`; `match` (a LabelNameMatch output) is added to the logits."""
    name = task.name
    if task.type == "regression":
        z = L.Dense(1, name=f"{name}_standardised")(x)
        return Denormalize(label_spec["mean"], label_spec["std"], name=name)(z)
    if match is None:
        return L.Dense(n_outputs(label_spec), activation=ACTIVATION[task.type], name=name)(x)
    logits = L.Dense(n_outputs(label_spec), name=f"{name}_logits")(x)
    logits = L.Add(name=f"{name}_logits_matched")([logits, match])
    return L.Activation(ACTIVATION[task.type], name=name)(logits)


def unmatched_name(task_name: str) -> str:
    return f"{task_name}_unmatched"


def unmatched_view(net, tasks: list):
    """`net` with, beside its outputs, each task's answer from its head's own logits alone (the label match left
    out): the same layers, so one forward pass trains both; what is saved and exported stays `net`."""
    outputs = dict(net.output)
    for t in tasks:
        logits = net.get_layer(f"{t.name}_logits").output
        outputs[unmatched_name(t.name)] = L.Activation(ACTIVATION[t.type], name=unmatched_name(t.name))(logits)
    return keras.Model(net.inputs, outputs, name=f"{net.name}_with_unmatched")


def head_dense(net, task_name: str):
    """The Dense layer of a task's head: the output layer itself, or the one before the output's transform."""
    for name in (task_name, f"{task_name}_logits", f"{task_name}_standardised"):
        if name in {x.name for x in net.layers} and isinstance(net.get_layer(name), L.Dense):
            return net.get_layer(name)
    raise ValueError(f"no Dense head layer for task '{task_name}'")


def label_match(tokens, task_name: str, label_spec: dict, tokenizer, where: str):
    """LabelNameMatch logits of a task's classes over `tokens` (the ids of its `match_labels` text input)."""
    words, classes = match_tables(label_spec["classes"], tokenizer)
    if not words:  # a warning, not an error: `check` learns its vocabulary from a few rows only
        print(f"warning: {where}: no word of the class names (e.g. '{label_spec['classes'][0]}') is among the "
              f"{len(tokenizer.vocab) - 2:,} words learned from the training rows; this head matches nothing",
              file=sys.stderr)  # every class then points at LabelNameMatch's always-absent word
    return LabelNameMatch(words, classes, name=f"{task_name}_label_match")(tokens)


def match_tables(class_names: list, tokenizer) -> tuple[list, list]:
    """(token ids of each distinct class-name word's forms, word indices of each class): the LabelNameMatch tables.
    A word's forms are itself and its plural or singular by a trailing s / es, where the vocabulary has them."""
    names = [split_words(c, tokenizer.lowercase) for c in class_names]
    words, forms = [], []
    for word in sorted({w for name in names for w in name}):
        ids = sorted({tokenizer.index[f] for f in _forms(word) if tokenizer.index.get(f, 0) > 1})  # not pad/unknown
        if ids:
            words.append(word)
            forms.append(ids)
    return forms, [[words.index(w) if w in words else -1 for w in name] for name in names]


def _forms(word: str) -> set:
    forms = {word, word + "s", word + "es"}
    if word.endswith("es"):
        forms.add(word[:-2])
    if word.endswith("s"):
        forms.add(word[:-1])
    return forms
