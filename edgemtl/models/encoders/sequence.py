"""Sequence encoders for multichannel time series windows [length, channels]: each channel standardised in the
graph with training-split statistics first (raw sensor values in, as a device reads them)."""
from ...tfk import keras
from .blocks import BN_MOMENTUM

L = keras.layers


def standardise(x, prefix, ctx):
    """Per-channel (x - mean) / std with the training split's statistics; none given (a bare build): unchanged."""
    if ctx.stats is None:
        return x
    mean, variance = ctx.stats
    return L.Normalization(axis=-1, mean=mean, variance=variance, name=f"{prefix}_norm")(x)


def conv1d(x, spec, prefix, ctx):
    x = standardise(x, prefix, ctx)
    for i, f in enumerate(spec.filters):
        x = L.Conv1D(f, spec.kernel_size, padding="same", use_bias=False, name=f"{prefix}_conv{i}")(x)
        x = L.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_bn{i}")(x)
        x = L.ReLU(name=f"{prefix}_relu{i}")(x)
    return L.GlobalAveragePooling1D(name=f"{prefix}_gap")(x)


def gru(x, spec, prefix, ctx):
    x = standardise(x, prefix, ctx)
    layer = L.GRU(spec.units, unroll=True, name=f"{prefix}_gru")
    if spec.bidirectional:
        layer = L.Bidirectional(layer, name=f"{prefix}_bidirectional")
    return layer(x)


ENCODERS = {"conv1d": conv1d, "gru": gru}
