"""Fusion of per-modality vectors into one (the trunk after it: towers.py)."""
from ..recipe.schema import FusionSpec
from ..tfk import keras
from .layers import AbsentVector, GatedFusion, WeightedFusion

L = keras.layers


def present_vectors(vectors: list, presences: list, names: list, modality_dropout: float) -> list:
    """Each encoder's vector where its modality is present, its learned absent vector where not (AbsentVector).

    Why a presence flag and an absent vector rather than masking inside the fusion: every fusion type (concat,
    average, weighted, gated, attention) then works unchanged, the fused vector always has one size, and the
    exported graph needs only a [batch, 1] float input per optional modality, which LiteRT, ONNX Runtime and int8
    models all take. presences: per input, its presence input (None: always present). modality_dropout: in training
    a row loses each modality with that chance (ModDrop), to the same absent state; a model with one input gets none.
    """
    rate = modality_dropout if len(vectors) >= 2 else 0.0
    out = []
    for v, p, name in zip(vectors, presences, names):
        if p is None and not rate:
            out.append(v)
            continue
        layer = AbsentVector(rate, name=f"{name}_absent")
        out.append(layer(v if p is None else [v, p]))
    return out


def fuse(vectors: list, spec: FusionSpec):
    if spec.type == "concat":
        return vectors[0] if len(vectors) == 1 else L.Concatenate(name="fusion_concat")(vectors)
    # The other fusions combine vectors of one size: project each first.
    projected = [L.Dense(spec.units, activation="relu", name=f"fusion_proj{i}")(v) for i, v in enumerate(vectors)]
    if len(projected) == 1:
        return projected[0]
    if spec.type == "average":
        return L.Average(name="fusion_average")(projected)
    if spec.type == "weighted":
        return WeightedFusion(name="fusion_weighted")(projected)
    if spec.type == "gated":
        return GatedFusion(name="fusion_gated")(projected)
    return _attention(projected, spec)


def _attention(vectors, spec):
    """Self-attention across modalities (each modality one token), then mean over modalities."""
    tokens = [L.Reshape((1, spec.units), name=f"fusion_token{i}")(v) for i, v in enumerate(vectors)]
    x = L.Concatenate(axis=1, name="fusion_tokens")(tokens)
    att = L.MultiHeadAttention(spec.heads, max(1, spec.units // spec.heads), name="fusion_attention")(x, x)
    x = L.LayerNormalization(name="fusion_ln")(L.Add(name="fusion_residual")([x, att]))
    return L.GlobalAveragePooling1D(name="fusion_pool")(x)
