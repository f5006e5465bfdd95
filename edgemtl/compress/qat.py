"""Quantization-aware training: fold each BatchNormalization into the convolution before it, fake-quantize the
layers int8 TFLite runs in integer (conv, dense, pooling, ReLU), keep the sparsity of a pruned model
(pruning-preserving QAT), fine-tune.

Why the fold: the int8 converter folds a BatchNorm into its convolution, but tfmot's QAT wraps only the layers it
is given, so an unannotated BatchNorm trained as a separate float op between two fake-quant points; the converted
graph then quantized it as separate int8 ops with ranges QAT never saw (4-5x wider than post-training int8's). With
the BatchNorm folded into the kernel and bias first, the layers QAT trains are the ones the converter runs.

A whole multimodal model cannot be annotated (int32 token ids hit FakeQuant): only supported layer types are.
Heads are left unwrapped so the outputs keep their task names; int8 conversion calibrates them.
"""
import numpy as np

from ..tfk import keras

L = keras.layers
QUANTIZED = (L.Conv1D, L.Conv2D, L.DepthwiseConv2D, L.Dense, L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling2D,
             L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.ReLU)
FOLDABLE = (L.Conv1D, L.Conv2D, L.DepthwiseConv2D)  # a BatchNorm right after one of these folds into it
QAT_PREFIX = "quant_"  # tfmot's wrapper name for a quantized layer


def quantize_for_training(net, heads: set, pruned: bool):
    """A QAT copy of `net` (a freshly loaded model), BatchNorms folded into their convolutions. A pruned model's
    zeros are kept by KeepZeros during training (tfmot's pruning-preserving scheme does not keep them in every
    layer: not in Conv1D, which it cannot wrap, nor in the convolutions once their BatchNorm is folded)."""
    import tensorflow_model_optimization as tfmot

    from ..models.layers import CUSTOM_OBJECTS

    net = fold_batchnorm(net)
    quant = tfmot.quantization.keras
    scheme = _prune_preserve_scheme() if pruned else quant.default_8bit.Default8BitQuantizeScheme()
    registry = scheme.get_quantize_registry()

    def annotate(layer):
        # Layers the scheme has no config for (Conv1D under pruning preservation) stay float here; int8 export
        # calibrates them like any post-training quantized layer.
        wanted = isinstance(layer, QUANTIZED) and layer.name not in heads and registry.supports(layer)
        return quant.quantize_annotate_layer(layer) if wanted else layer

    with keras.utils.custom_object_scope(CUSTOM_OBJECTS):
        annotated = keras.models.clone_model(net, clone_function=annotate)
    with quant.quantize_scope(CUSTOM_OBJECTS):
        return quant.quantize_apply(annotated, scheme)


class KeepZeros(keras.callbacks.Callback):
    """Pruning-preserving QAT for every layer: the kernels that start with at least a tenth of their weights at
    exactly zero (pruned) get those weights set back to zero after every training step."""

    def on_train_begin(self, logs=None):
        net = getattr(self.model, "net", self.model)  # the trainer holds the net it trains
        self.masks = []
        for w in net.weights:
            if len(w.shape) < 2 or not w.trainable or not _is_kernel(w):
                continue
            keep = w.numpy() != 0
            if keep.size and (~keep).sum() >= 0.1 * keep.size:
                self.masks.append((w, keep.astype(w.dtype.as_numpy_dtype)))

    def on_train_batch_end(self, batch, logs=None):
        for w, mask in self.masks:
            w.assign(w * mask)


def _is_kernel(weight) -> bool:
    short = weight.name.split("/")[-1]
    return any(k in short for k in ("kernel", "embeddings")) and not any(k in short for k in ("_min", "_max"))


def foldable_pairs(net) -> dict[str, str]:
    """BatchNorm name -> the convolution it folds into: the BatchNorm (last axis) reads only that convolution, and
    the convolution feeds only the BatchNorm."""
    consumers: dict[str, list] = {}
    for layer in net.layers:
        for node in layer._inbound_nodes:
            for inbound in node.inbound_layers if isinstance(node.inbound_layers, list) else [node.inbound_layers]:
                consumers.setdefault(inbound.name, []).append(layer.name)
    out = {}
    for layer in net.layers:
        if not isinstance(layer, L.BatchNormalization) or len(layer._inbound_nodes) != 1:
            continue
        source = layer._inbound_nodes[0].inbound_layers
        axis = layer.axis[0] if isinstance(layer.axis, (list, tuple)) else layer.axis
        if (isinstance(source, FOLDABLE) and consumers.get(source.name) == [layer.name]
                and axis in (-1, len(layer.input_shape) - 1)):
            out[layer.name] = source.name
    return out


def fold_batchnorm(net):
    """The same functional model with each foldable BatchNorm merged into its convolution's kernel and bias (the
    moving statistics, as in inference); `net` itself is unchanged."""
    from ..models.layers import CUSTOM_OBJECTS

    pairs = foldable_pairs(net)
    if not pairs:
        return net
    config = net.get_config()
    convs = set(pairs.values())
    layers = []
    for entry in config["layers"]:
        if entry["name"] in pairs:
            continue
        if entry["name"] in convs:
            entry["config"]["use_bias"] = True
        for node in entry["inbound_nodes"]:
            for ref in node:
                ref[0] = pairs.get(ref[0], ref[0])
        layers.append(entry)
    config["layers"] = layers
    for key in ("input_layers", "output_layers"):
        config[key] = _renamed(config[key], pairs)
    with keras.utils.custom_object_scope(CUSTOM_OBJECTS):
        folded = keras.Model.from_config(config)
    bn_of = {conv: bn for bn, conv in pairs.items()}
    for layer in folded.layers:
        source = net.get_layer(layer.name)
        if layer.name in bn_of:
            layer.set_weights(_folded_weights(source, net.get_layer(bn_of[layer.name])))
        elif layer.weights:
            layer.set_weights(source.get_weights())
    return folded


def _renamed(refs, pairs: dict):
    if isinstance(refs, list) and refs and isinstance(refs[0], str):
        return [pairs.get(refs[0], refs[0]), *refs[1:]]
    if isinstance(refs, list):
        return [_renamed(r, pairs) for r in refs]
    if isinstance(refs, dict):
        return {k: _renamed(v, pairs) for k, v in refs.items()}
    return refs


def _folded_weights(conv, bn) -> list:
    """kernel * gamma / sqrt(var + eps) per output channel; bias (beta + (b - mean) * that scale)."""
    weights = conv.get_weights()
    kernel, bias = weights[0], (weights[1] if len(weights) > 1 else 0.0)
    gamma = bn.gamma.numpy() if bn.gamma is not None else 1.0
    beta = bn.beta.numpy() if bn.beta is not None else 0.0
    scale = gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    if isinstance(conv, L.DepthwiseConv2D):  # [h, w, in, multiplier]: output channel c * multiplier + m
        folded = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        folded = kernel * scale
    return [folded.astype(np.float32), (beta + (bias - bn.moving_mean.numpy()) * scale).astype(np.float32)]


def qat_layer(net, name: str):
    """A layer of the model QAT was made from, in a QAT net: its tfmot wrapper where it has one."""
    names = {x.name for x in net.layers}
    return net.get_layer(QAT_PREFIX + name if QAT_PREFIX + name in names else name)


def _prune_preserve_scheme():
    """tfmot's pruning-preserving scheme, except that it claims layers (e.g. Rescaling) that only need their output
    quantized but that its underlying default registry then refuses; ask both registries."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
        prune_preserve_quantize_registry as prune_preserve,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as default_8bit,
    )

    class Registry(prune_preserve.Default8bitPrunePreserveQuantizeRegistry):
        def supports(self, layer):
            return super().supports(layer) and default_8bit.Default8BitQuantizeRegistry().supports(layer)

    class Scheme(tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme):
        def get_quantize_registry(self):
            return Registry()

    return Scheme()
