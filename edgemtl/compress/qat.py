"""Quantization-aware training: fake-quantize the layers int8 TFLite runs in integer (conv, dense, pooling), keep
the sparsity of a pruned model (pruning-preserving QAT), fine-tune.

A whole multimodal model cannot be annotated (int32 token ids hit FakeQuant): only supported layer
types are. Heads are left unwrapped so the outputs keep their task names; int8 conversion calibrates them.
"""
from ..tfk import keras

L = keras.layers
QUANTIZED = (L.Conv1D, L.Conv2D, L.DepthwiseConv2D, L.Dense, L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling2D,
             L.GlobalAveragePooling1D, L.GlobalAveragePooling2D)


def quantize_for_training(net, heads: set, pruned: bool):
    """A QAT copy of `net` (a freshly loaded model: its layers are reused)."""
    import tensorflow_model_optimization as tfmot

    from ..models.layers import CUSTOM_OBJECTS

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
