"""Audio encoder: samples in; an in-graph log-mel front-end (fixed-weight STFT convolution) and a CNN over it."""
from ...tfk import keras
from ..layers import LogMelSpectrogram
from .blocks import BN_MOMENTUM, plain_cnn

L = keras.layers


def cnn(x, spec, prefix, ctx):
    inp = ctx.inp
    x = LogMelSpectrogram(inp.sample_rate, inp.frame_length, inp.frame_step, inp.n_mels,
                          name=f"{prefix}_logmel")(x)
    x = L.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_logmel_norm")(x)
    return plain_cnn(x, spec.filters, prefix, spec.pooling, spec.stem_stride)


ENCODERS = {"cnn": cnn}
