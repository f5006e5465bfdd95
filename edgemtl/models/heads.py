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


def head_dense(net, task_name: str):
    """The Dense layer of a task's head: the output layer itself, or the one before the output's transform."""
    for name in (task_name, f"{task_name}_logits", f"{task_name}_standardised"):
        if name in {x.name for x in net.layers} and isinstance(net.get_layer(name), L.Dense):
            return net.get_layer(name)
    raise ValueError(f"no Dense head layer for task '{task_name}'")
