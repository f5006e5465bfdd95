"""Numeric encoder: raw numbers in, normalised in the graph with training-split statistics, then an MLP."""
from ...tfk import keras

L = keras.layers


def mlp(x, spec, prefix, ctx):
    mean, variance = ctx.stats
    x = L.Normalization(mean=mean, variance=variance, name=f"{prefix}_norm")(x)
    for i, units in enumerate(spec.units):
        x = L.Dense(units, activation="relu", name=f"{prefix}_dense{i}")(x)
    return x


ENCODERS = {"mlp": mlp}
