"""Sequence encoders for multichannel time series windows [length, channels]."""
from ...tfk import keras
from .blocks import BN_MOMENTUM

L = keras.layers


def conv1d(x, spec, prefix, ctx):
    for i, f in enumerate(spec.filters):
        x = L.Conv1D(f, spec.kernel_size, padding="same", use_bias=False, name=f"{prefix}_conv{i}")(x)
        x = L.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_bn{i}")(x)
        x = L.ReLU(name=f"{prefix}_relu{i}")(x)
    return L.GlobalAveragePooling1D(name=f"{prefix}_gap")(x)


def gru(x, spec, prefix, ctx):
    layer = L.GRU(spec.units, unroll=True, name=f"{prefix}_gru")
    if spec.bidirectional:
        layer = L.Bidirectional(layer, name=f"{prefix}_bidirectional")
    return layer(x)


ENCODERS = {"conv1d": conv1d, "gru": gru}
