"""Magnitude pruning with tfmot: layer selection, a polynomial schedule to the target sparsity, 2:4 where shapes
allow, and the measures (per-layer sparsity, gzip size) that show what it bought."""
import gzip
import math

import numpy as np

from ..errors import EdgemtlError, did_you_mean
from ..models.heads import head_dense
from ..recipe.schema import PruneSpec, Recipe
from ..tfk import keras

L = keras.layers
PRUNABLE = (L.Conv1D, L.Conv2D, L.SeparableConv1D, L.SeparableConv2D, L.Dense, L.Embedding, L.LSTM, L.GRU,
            L.MultiHeadAttention)
STRUCTURED = (L.Conv2D, L.Dense)  # 2:4 masks work on these when input channels divide by 4


def _tfmot():
    import tensorflow_model_optimization as tfmot

    return tfmot


def head_layers(net) -> set:
    names = set(net.output_names)
    return {head_dense(net, n).name for n in names} | names


def first_convs(net, recipe: Recipe) -> set:
    """The first convolution of each encoder: it sees raw pixels / spectra and has few weights to spare."""
    out = set()
    for inp in recipe.inputs:
        convs = [x.name for x in net.layers
                 if x.name.startswith(f"{inp.name}_") and isinstance(x, (L.Conv1D, L.Conv2D))]
        out |= set(convs[:1])
    return out


def select_layers(net, recipe: Recipe, cfg: PruneSpec) -> list[str]:
    """The names of the layers to prune: cfg.layers if given (each must be prunable), else every prunable layer
    except the kinds in cfg.skip."""
    by_name = {x.name: x for x in net.layers}
    if cfg.layers is not None:
        problems = []
        for name in cfg.layers:
            layer = by_name.get(name)
            if layer is None:
                problems.append(f"compress.prune.layers: no layer '{name}' in the student{did_you_mean(name, by_name)}")
            elif not isinstance(layer, PRUNABLE):
                problems.append(f"compress.prune.layers: layer '{name}' ({type(layer).__name__}) cannot be pruned by "
                                f"tfmot; prunable types: {', '.join(t.__name__ for t in PRUNABLE)}")
        if problems:
            raise EdgemtlError(*problems)
        return list(cfg.layers)
    skip = set()
    if "heads" in cfg.skip:
        skip |= head_layers(net)
    if "first_conv" in cfg.skip:
        skip |= first_convs(net, recipe)
    if "embedding" in cfg.skip:
        skip |= {x.name for x in net.layers if isinstance(x, L.Embedding)}
    return [x.name for x in net.layers if isinstance(x, PRUNABLE) and x.name not in skip]


def structured_ok(layer) -> bool:
    return isinstance(layer, STRUCTURED) and layer.kernel.shape[-2] % 4 == 0


def schedule_steps(steps_per_epoch: int, epochs: int) -> tuple[int, int]:
    """(end_step, frequency): sparsity ramps over the first two thirds of fine-tuning, in about ten steps; end_step
    is a multiple of the frequency, since tfmot only prunes on those steps."""
    total = max(1, steps_per_epoch * epochs)
    frequency = max(1, int(total * 2 / 3) // 10)
    return frequency * max(1, int(total * 2 / 3) // frequency), frequency


def wrap_for_pruning(net, names: list, cfg: PruneSpec, steps_per_epoch: int):
    """The same net (its layers reused: pass a freshly loaded model) with the chosen layers wrapped by tfmot."""
    tfmot = _tfmot()
    sparsity = tfmot.sparsity.keras
    end_step, frequency = schedule_steps(steps_per_epoch, cfg.epochs)
    ramp = sparsity.PolynomialDecay(0.0, cfg.sparsity, begin_step=0, end_step=end_step, frequency=frequency)
    chosen = set(names)

    def wrap(layer):
        if layer.name not in chosen:
            return layer
        if cfg.structured and structured_ok(layer):
            return sparsity.prune_low_magnitude(layer, sparsity.ConstantSparsity(0.5, 0, frequency=frequency),
                                                sparsity_m_by_n=(2, 4))
        return sparsity.prune_low_magnitude(layer, pruning_schedule=ramp)

    from ..models.layers import CUSTOM_OBJECTS

    with keras.utils.custom_object_scope(CUSTOM_OBJECTS):
        return keras.models.clone_model(net, clone_function=wrap)


def expected_sparsity(net, names: list, cfg: PruneSpec) -> float:
    """The overall sparsity of the pruned kernels once every schedule has finished."""
    total = zeros = 0.0
    for name in names:
        layer = net.get_layer(name)
        target = 0.5 if cfg.structured and structured_ok(layer) else cfg.sparsity
        size = sum(int(np.prod(w.shape)) for w in _kernels(layer))
        total, zeros = total + size, zeros + target * size
    return zeros / max(total, 1.0)


def _kernels(layer) -> list:
    """The weights pruning acts on (kernels and embeddings, not biases or normalisation)."""
    return [w for w in layer.trainable_weights if "bias" not in w.name and len(w.shape) >= 2]


def layer_sparsity(net, names: list, find=None) -> dict:
    """{layer: fraction of zero weights} of the pruned layers of a plain (stripped) model, plus 'overall'.
    find(net, name): the layer of that name (default net.get_layer; a QAT net holds wrappers)."""
    out, total, zeros = {}, 0, 0
    for name in names:
        layer = (find or type(net).get_layer)(net, name)
        values = [w.numpy() for w in layer.weights if len(w.shape) >= 2 and not _bookkeeping(w)]
        n, z = sum(v.size for v in values), sum(int((v == 0).sum()) for v in values)
        out[name] = round(z / max(n, 1), 4)
        total, zeros = total + n, zeros + z
    out["overall"] = round(zeros / max(total, 1), 4)
    return out


def _bookkeeping(weight) -> bool:
    """tfmot's own variables beside a kernel (pruning masks, quantizer ranges)."""
    short = weight.name.split("/")[-1]
    return any(k in short for k in ("mask", "_min", "_max", "threshold"))


class SparsityLog(keras.callbacks.Callback):
    """Adds the current sparsity of the pruned kernels (from tfmot's masks) to each epoch's logs."""

    def on_train_begin(self, logs=None):
        from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import collect_prunable_layers

        self.wrapped = collect_prunable_layers(self.model)

    def on_epoch_end(self, epoch, logs=None):
        total = zeros = 0
        for layer in self.wrapped:
            for _, mask, _ in layer.pruning_vars:
                m = mask.numpy()
                total, zeros = total + m.size, zeros + int((m == 0).sum())
        logs["sparsity"] = zeros / max(total, 1)


def strip(net):
    return _tfmot().sparsity.keras.strip_pruning(net)


def update_step_callback():
    return _tfmot().sparsity.keras.UpdatePruningStep()


def gzip_size(content: bytes) -> int:
    return len(gzip.compress(content, compresslevel=9))


def eligible_after(expected: float):
    """Only epochs at (within 1 % of) the final sparsity may become the best pruned model."""
    return lambda row: row.get("sparsity", 0.0) >= expected - 0.01 - 1e-9 and math.isfinite(row.get("loss", 0.0))
