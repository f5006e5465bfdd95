"""Encoder registry: modality -> encoder type -> builder. Adding an encoder is a function plus one entry here."""
from ...recipe.schema import InputSpec
from . import audio, image, numeric, sequence, text

REGISTRY = {"image": image.ENCODERS, "text": text.ENCODERS, "audio": audio.ENCODERS, "numeric": numeric.ENCODERS,
            "sequence": sequence.ENCODERS}


class EncoderContext:
    """What an encoder may need beyond its spec: the recipe input, the text vocabulary size, numeric statistics."""

    def __init__(self, inp: InputSpec, vocab_len: int = 0, stats=None):
        self.inp, self.vocab_len, self.stats = inp, vocab_len, stats
