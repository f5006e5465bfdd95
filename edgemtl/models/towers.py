"""The trunk between fusion and the heads: shared dense layers, or task towers over experts (MMoE, PLE/CGC).

    shared  every task reads the same dense stack (trunk_dense{i}).
    mmoe    Ma et al. 2018: `experts` copies of the dense stack (trunk_expert{e}_dense{i}); each task mixes their
            outputs through its own softmax gate over the fused vector (trunk_gate_<task>).
    ple     Tang et al. 2020: one extraction level per `units` entry; a level holds `experts` shared experts
            (trunk_l{l}_shared{e}) and `task_experts` experts per task (trunk_l{l}_<task>{e}); task k's gate mixes
            its own experts and the shared ones, a shared gate (below the last level) mixes them all for the next
            level's shared experts. One level is CGC.

Every piece is a Dense, a softmax or the ExpertMixture below (stack, multiply, sum): builtin TFLite and ONNX ops,
int8-clean; every layer name starts with `trunk_`, so the export's float fallback keeps them together.
"""
import re

from ..recipe.schema import TrunkSpec
from ..tfk import keras, tf

L = keras.layers


@keras.utils.register_keras_serializable(package="edgemtl")
class ExpertMixture(keras.layers.Layer):
    """[gate [batch, E], expert_0 .. expert_{E-1} [batch, D]] -> sum_e gate[:, e] * expert_e  [batch, D]."""

    def call(self, inputs):
        gate, experts = inputs[0], inputs[1:]
        return tf.reduce_sum(tf.stack(experts, axis=1) * gate[:, :, None], axis=1)


def trunk(x, spec: TrunkSpec, task_names: list) -> dict:
    """{task: the tensor its head reads}."""
    reg = keras.regularizers.L1L2(l1=spec.l1, l2=spec.l2) if spec.l1 or spec.l2 else None
    if spec.type == "mmoe":
        return _mmoe(x, spec, task_names, reg)
    if spec.type == "ple":
        return _ple(x, spec, task_names, reg)
    x = _stack(x, spec.units, spec.dropout, reg, "trunk_dense", "trunk_dropout")
    return {n: x for n in task_names}


def _stack(x, units, dropout, reg, name: str, dropout_name: str):
    for i, width in enumerate(units):
        x = _dense(x, width, dropout, reg, f"{name}{i}", f"{dropout_name}{i}")
    return x


def _dense(x, width, dropout, reg, name, dropout_name):
    x = L.Dense(width, activation="relu", kernel_regularizer=reg, name=name)(x)
    return L.Dropout(dropout, name=dropout_name)(x) if dropout else x


def _mix(gate_input, experts: list, name: str):
    if len(experts) == 1:
        return experts[0]
    gate = L.Dense(len(experts), activation="softmax", name=f"trunk_gate_{name}")(gate_input)
    return ExpertMixture(name=f"trunk_mix_{name}")([gate, *experts])


def _mmoe(x, spec: TrunkSpec, task_names, reg) -> dict:
    experts = [_stack(x, spec.units, spec.dropout, reg, f"trunk_expert{e}_dense", f"trunk_expert{e}_dropout")
               for e in range(spec.experts)]
    return {n: _mix(x, experts, n) for n in task_names}


def _ple(x, spec: TrunkSpec, task_names, reg) -> dict:
    shared_in, task_in = x, {n: x for n in task_names}
    last = len(spec.units) - 1
    for level, width in enumerate(spec.units):
        p = f"trunk_l{level}_"
        shared = [_dense(shared_in, width, spec.dropout, reg, f"{p}shared{e}", f"{p}shared{e}_dropout")
                  for e in range(spec.experts)]
        own = {n: [_dense(task_in[n], width, spec.dropout, reg, f"{p}{n}{e}", f"{p}{n}{e}_dropout")
                   for e in range(spec.task_experts)] for n in task_names}
        task_in = {n: _mix(task_in[n], own[n] + shared, f"l{level}_{n}") for n in task_names}
        if level < last:
            shared_in = _mix(shared_in, [e for n in task_names for e in own[n]] + shared, f"l{level}_shared")
    return task_in


# The layers whose gradient norms GradNorm balances ("the last shared layer"): the last dense layer of the shared
# stack, of every MMoE expert, or PLE's last-level shared experts (a tfmot wrapper prefix is allowed).
_LAST_SHARED = (re.compile(r"trunk_dense(\d+)/"), re.compile(r"trunk_expert\d+_dense(\d+)/"),
                re.compile(r"trunk_l(\d+)_shared\d+/"))


def last_shared(variables: list) -> list:
    """The variables (of the shared ones given) of the trunk's last shared layer; all of them when the trunk has no
    dense layer (an empty `units`)."""
    for pattern in _LAST_SHARED:
        found = [(int(m.group(1)), v) for v in variables if (m := pattern.search(v.name))]
        if found:
            top = max(i for i, _ in found)
            return [v for i, v in found if i == top]
    return list(variables)
