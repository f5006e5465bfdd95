"""Text input: int32 token ids [max_length] from a word vocabulary learned on the training split."""
import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..data.column import distinct, expand
from ..errors import EdgemtlError
from .base import BadInput, ModalityKind, is_missing

PAD, UNKNOWN = "<pad>", "<unk>"
WORD = re.compile(r"\w+")


class Tokenizer:
    """Word-level tokenizer: id 0 pads, id 1 is an unknown word, then words by training-split frequency."""

    def __init__(self, vocab: list[str], lowercase: bool = True):
        self.vocab = vocab
        self.lowercase = lowercase
        self.index = {w: i for i, w in enumerate(vocab)}

    @classmethod
    def fit(cls, texts, vocab_size: int, lowercase: bool = True) -> "Tokenizer":
        counts = Counter(w for t in texts for w in split_words(t, lowercase))
        words = sorted(counts, key=lambda w: (-counts[w], w))[:vocab_size]
        return cls([PAD, UNKNOWN] + words, lowercase)

    def encode(self, text: str, max_length: int) -> np.ndarray:
        ids = [self.index.get(w, 1) for w in split_words(text, self.lowercase)][:max_length]
        out = np.zeros(max_length, dtype=np.int32)
        out[:len(ids)] = ids
        return out

    def save(self, path) -> None:
        Path(path).write_text("\n".join(self.vocab) + "\n")

    @classmethod
    def load(cls, path, lowercase: bool = True) -> "Tokenizer":
        return cls(Path(path).read_text().splitlines(), lowercase)


def split_words(text, lowercase: bool) -> list[str]:
    text = "" if text is None else str(text)
    return WORD.findall(text.lower() if lowercase else text)



class TextKind(ModalityKind):
    name = "text"
    dtype = "int32"
    default_encoder = "conv1d"
    has_vocabulary = True
    file_suffixes = (".txt",)  # the file's content is the text

    def input_shape(self, spec) -> tuple:
        return (spec.max_length,)

    def vocab_file(self, spec) -> str:
        """The vocabulary's file name, in RUN/preprocess/ and in a bundle."""
        return f"vocab_{spec.name}.txt"

    def preprocess_entry(self, spec) -> dict:
        return {"vocab": self.vocab_file(spec), "max_length": spec.max_length, "lowercase": spec.lowercase}

    def fit_tokenizer(self, spec, texts) -> Tokenizer:
        """The vocabulary from the training split's texts."""
        return Tokenizer.fit(texts, spec.vocab_size, spec.lowercase)

    def load_tokenizer(self, spec, folder: Path) -> Tokenizer:
        return Tokenizer.load(Path(folder) / self.vocab_file(spec), spec.lowercase)

    @staticmethod
    def encode(pre: dict, tokenizer: Tokenizer, text: str) -> np.ndarray:
        """The one text encoder: a string -> int32 ids [max_length] (training and runtime)."""
        return tokenizer.encode(text, pre["max_length"])

    def decode(self, spec, table, tokenizer=None) -> tuple[np.ndarray, dict]:
        texts, codes = distinct(table.columns[spec.column])  # a repeated text is tokenized once
        pre = self.preprocess_entry(spec)
        out = np.zeros((len(texts), spec.max_length), np.int32)
        for i, t in enumerate(texts):
            out[i] = self.encode(pre, tokenizer, "" if is_missing(t) else t)
        return expand(out, codes), {}

    def runtime_resources(self, entry: dict, bundle_dir: Path) -> dict:
        pre = entry["preprocess"]
        vocab = Path(bundle_dir) / pre["vocab"]
        if not vocab.exists():
            raise EdgemtlError(f"{bundle_dir}: vocabulary '{pre['vocab']}' of input '{entry['name']}' is missing")
        return {"tokenizer": Tokenizer.load(vocab, pre["lowercase"])}

    def _prepare(self, entry: dict, value, rate, tokenizer=None, **resources) -> np.ndarray:
        if not isinstance(value, str):
            raise BadInput(f"expected a string, got {type(value).__name__}")
        if not value.strip():
            raise BadInput("empty text")
        return self.encode(entry["preprocess"], tokenizer, value)

    # -- TF half --------------------------------------------------------------------------------------------------
    def encoders(self) -> dict:
        from ..models.encoders import text

        return text.ENCODERS

    def mix(self, v, other, w):
        """Token ids cannot mix: a row keeps the tokens of its larger share."""
        from ..tfk import tf

        return tf.where(w >= 0.5, v, other)
