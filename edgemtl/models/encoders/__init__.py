"""Encoders, one module per modality, each with its ENCODERS dict (encoder type -> builder); a modality's kind
(edgemtl.kinds) points at its module's dict. Adding an encoder is a function plus one entry in that dict."""
from ...recipe.schema import InputSpec


class EncoderContext:
    """What an encoder may need beyond its spec: the recipe input, the text vocabulary size, numeric statistics.
    `features`: what an image encoder leaves for dense heads (boxes, masks): {stride: its last feature map at that
    stride}; tensors no head reads do not become part of the model."""

    def __init__(self, inp: InputSpec, vocab_len: int = 0, stats=None):
        self.inp, self.vocab_len, self.stats = inp, vocab_len, stats
        self.features: dict = {}

    def feature(self, x, stride: int):
        """Record x as the feature map at `stride` (input pixels per cell); returns x."""
        self.features[int(stride)] = x
        return x
