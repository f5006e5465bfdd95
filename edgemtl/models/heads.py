"""Views of a built model's heads (the heads themselves are the task kinds' head(): edgemtl.kinds)."""
from .. import kinds
from ..tfk import keras

L = keras.layers


def unmatched_name(task_name: str) -> str:
    return f"{task_name}_unmatched"


def unmatched_view(net, tasks: list):
    """`net` with, beside its outputs, each task's answer from its head's own logits alone (the label match left
    out): the same layers, so one forward pass trains both; what is saved and exported stays `net`."""
    outputs = dict(net.output)
    for t in tasks:
        logits = net.get_layer(f"{t.name}_logits").output
        outputs[unmatched_name(t.name)] = L.Activation(kinds.task_kind(t.type).activation,
                                                       name=unmatched_name(t.name))(logits)
    return keras.Model(net.inputs, outputs, name=f"{net.name}_with_unmatched")


# tfmot wraps a layer in a new one named after it: a pruned net holds prune_low_magnitude_<name>, a QAT net quant_<name>
WRAPPER_PREFIXES = ("", "prune_low_magnitude_", "quant_")


def head_dense(net, task_name: str):
    """The Dense layer of a task's head: the output layer itself, or the one before the output's transform (a dense
    head's 1x1 Conv2D `<task>_logits`); in a pruned or quantization-aware net, the tfmot wrapper around it."""
    names = {x.name for x in net.layers}
    for name in (task_name, f"{task_name}_logits", f"{task_name}_standardised"):
        for prefix in WRAPPER_PREFIXES:
            layer = net.get_layer(prefix + name) if prefix + name in names else None
            if layer is not None and isinstance(getattr(layer, "layer", layer), (L.Dense, L.Conv2D)):
                return layer
    raise ValueError(f"no Dense head layer for task '{task_name}'")


def head_input(net, task_name: str, reader: str = ""):
    """The tensor a task's head reads from the shared part, in `net`'s own graph: the input of the head's layer
    `reader` (a kind's shared_reader, "{task}_..."; "": the head's Dense). A layer that tfmot's cloning reused keeps
    its first call's node (the source model's graph, "Graph disconnected" in a model over `net`): its newest node is
    the one of the net built last from it."""
    layer = head_dense(net, task_name) if not reader else _wrapped(net, reader.format(task=task_name))
    return layer.get_input_at(len(layer._inbound_nodes) - 1)


def _wrapped(net, name: str):
    """Layer `name` of `net`, or the tfmot wrapper around it."""
    names = {x.name for x in net.layers}
    for prefix in WRAPPER_PREFIXES:
        if prefix + name in names:
            return net.get_layer(prefix + name)
    raise ValueError(f"no layer '{name}' in {net.name}")
