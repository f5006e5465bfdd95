"""The exported graph's label match: every head's LabelNameMatch on the same input merged into one LabelNameMatches.

Models are trained (and saved) with one LabelNameMatch per head: pruning, distillation and weight copying find each
head's layers by name, and models saved by earlier versions have them. Export rebuilds the model from its own config
with each group of heads reading the same tensor replaced by one fused layer, and copies every weight across, so a
run's saved models get the fused graph without training again. The function is the same: the fused layer computes
each head's logits with the same ops on the same numbers (float outputs are bit-identical).
"""
import json

import numpy as np

from ..tfk import keras
from .layers import CUSTOM_OBJECTS, LabelNameMatches

PER_HEAD = "LabelNameMatch"


def fuse_label_matches(model):
    """`model` with its label-matching heads on one input merged (a new model over copied weights), or `model`
    itself where no two heads match on the same input."""
    config = model.get_config()
    groups = _groups(config["layers"])
    if not groups:
        return model
    taken = {entry["name"] for entry in config["layers"]}
    fused, moved = {}, {}  # first member's name -> fused entry; per-head name -> (fused name, output index)
    for members in groups:
        entry = _fused_entry(members, taken)
        taken.add(entry["name"])
        fused[members[0]["name"]] = entry
        moved.update({m["name"]: (entry["name"], i) for i, m in enumerate(members)})
    layers = []
    for entry in config["layers"]:
        if entry["name"] in fused:
            layers.append(fused[entry["name"]])
        elif entry["name"] not in moved:
            entry["inbound_nodes"] = _rewired(entry["inbound_nodes"], moved)
            layers.append(entry)
    config["layers"] = layers
    config["output_layers"] = _rewired(config["output_layers"], moved)
    net = _from_config(config, model)
    _copy_weights(net, model, groups, fused)
    return net


def _groups(entries: list) -> list:
    """The LabelNameMatch entries reading the same tensor with the same ids, in graph order; groups of two or more."""
    found: dict[str, list] = {}
    for entry in entries:
        if entry["class_name"] == PER_HEAD and len(entry["inbound_nodes"]) == 1:
            key = json.dumps([entry["inbound_nodes"], entry["config"].get("ids")])
            found.setdefault(key, []).append(entry)
    return [members for members in found.values() if len(members) > 1]


def _fused_entry(members: list, taken: set) -> dict:
    first = members[0]
    source = first["inbound_nodes"][0][0][0]
    name = f"{source.removesuffix('_token_presence')}_label_matches"
    while name in taken:
        name += "_"
    config = {"name": name, "trainable": first["config"].get("trainable", True),
              "dtype": first["config"].get("dtype", "float32"),
              "heads": [{"words": m["config"]["words"], "classes": m["config"]["classes"]} for m in members]}
    if first["config"].get("ids") is not None:
        config["ids"] = first["config"]["ids"]
    return {"module": LabelNameMatches.__module__, "class_name": LabelNameMatches.__name__, "config": config,
            "registered_name": f"edgemtl>{LabelNameMatches.__name__}", "name": name,
            "inbound_nodes": first["inbound_nodes"]}


def _rewired(value, moved: dict):
    """Inbound-node structures with every [per-head name, node, 0, ...] turned into [fused name, node, index, ...]."""
    if isinstance(value, dict):
        return {k: _rewired(v, moved) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) >= 3 and isinstance(value[0], str) and value[0] in moved and value[2] == 0:
            name, index = moved[value[0]]
            return [name, value[1], index, *value[3:]]
        return [_rewired(v, moved) for v in value]
    return value


def _from_config(config: dict, model):
    if any(layer.__class__.__name__.startswith("Quantize") for layer in model.layers):
        import tensorflow_model_optimization as tfmot  # a quantization-aware model's wrappers

        with tfmot.quantization.keras.quantize_scope(CUSTOM_OBJECTS):
            return keras.Model.from_config(config)
    return keras.Model.from_config(config, custom_objects=CUSTOM_OBJECTS)


def _copy_weights(net, model, groups: list, fused: dict) -> None:
    for layer in net.layers:
        if isinstance(layer, LabelNameMatches):
            continue
        layer.set_weights(model.get_layer(layer.name).get_weights())
    for members in groups:
        heads = [model.get_layer(m["name"]) for m in members]
        net.get_layer(fused[members[0]["name"]]["name"]).set_weights(
            [np.array([float(h.weight_fraction.numpy()) for h in heads], np.float32),
             np.array([float(h.weight_full.numpy()) for h in heads], np.float32)])
