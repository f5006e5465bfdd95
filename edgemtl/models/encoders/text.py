"""Text encoders over token ids. Recurrent layers are unrolled: fused TFLite RNNs break dynamic batch and int8."""
from ...tfk import keras
from ..layers import PositionEmbedding

L = keras.layers


def conv1d(x, spec, prefix, ctx):
    x = _embed(x, spec, prefix, ctx.vocab_len)
    branches = []
    for k in spec.kernel_sizes:
        b = L.Conv1D(spec.filters, k, padding="same", activation="relu", name=f"{prefix}_conv{k}")(x)
        branches.append(L.GlobalMaxPooling1D(name=f"{prefix}_maxpool{k}")(b))
    return branches[0] if len(branches) == 1 else L.Concatenate(name=f"{prefix}_concat")(branches)


def lstm(x, spec, prefix, ctx):
    return _recurrent(L.LSTM, x, spec, prefix, ctx)


def gru(x, spec, prefix, ctx):
    return _recurrent(L.GRU, x, spec, prefix, ctx)


def _recurrent(cell, x, spec, prefix, ctx):
    x = _embed(x, spec, prefix, ctx.vocab_len)
    layer = cell(spec.units, unroll=True, name=f"{prefix}_{cell.__name__.lower()}")
    if spec.bidirectional:
        layer = L.Bidirectional(layer, name=f"{prefix}_bidirectional")
    return layer(x)


def transformer(x, spec, prefix, ctx):
    x = PositionEmbedding(name=f"{prefix}_position")(_embed(x, spec, prefix, ctx.vocab_len))
    dim = spec.embedding_dim
    for i in range(spec.layers):
        att = L.MultiHeadAttention(spec.heads, max(1, dim // spec.heads), name=f"{prefix}_mha{i}")(x, x)
        x = L.LayerNormalization(name=f"{prefix}_ln{i}a")(L.Add(name=f"{prefix}_res{i}a")([x, att]))
        ff = L.Dense(spec.ff_dim, activation="relu", name=f"{prefix}_ff{i}a")(x)
        ff = L.Dense(dim, name=f"{prefix}_ff{i}b")(ff)
        x = L.LayerNormalization(name=f"{prefix}_ln{i}b")(L.Add(name=f"{prefix}_res{i}b")([x, ff]))
    return L.GlobalAveragePooling1D(name=f"{prefix}_pool")(x)


def _embed(x, spec, prefix, vocab_len):
    return L.Embedding(vocab_len, spec.embedding_dim, name=f"{prefix}_embedding")(x)


ENCODERS = {"conv1d": conv1d, "lstm": lstm, "gru": gru, "transformer": transformer}
