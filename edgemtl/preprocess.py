"""Raw input -> model input, in numpy and PIL only.

This is the one implementation of preprocessing: training decodes its data with it and the on-device runtime calls
the same functions, so a bundle sees exactly what the model was trained on. Never import TensorFlow here.
"""
import io
import re
import wave
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

PAD, UNKNOWN = "<pad>", "<unk>"


class BadInput(ValueError):
    """A raw input that cannot be turned into model input; the message says why."""


def load_image(source, size, channels: int) -> np.ndarray:
    """Path, bytes, PIL image or array -> uint8 array [height, width, channels]."""
    height, width = size
    if isinstance(source, np.ndarray):
        image = _array_to_image(source)
    elif isinstance(source, Image.Image):
        image = source
    else:
        try:
            image = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
            image.load()
        except FileNotFoundError:
            raise BadInput(f"image file '{source}' not found") from None
        except (UnidentifiedImageError, OSError) as e:
            raise BadInput(f"image {_describe(source)} is not a readable image ({e.__class__.__name__})") from None
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if channels == 1 else array


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise BadInput(f"image array has shape {array.shape}; expected [height, width] or [height, width, 1|3|4]")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and array.max() <= 1.0:
            array = array * 255.0
        array = np.clip(array, 0, 255).astype(np.uint8)
    return Image.fromarray(array)


def read_wav(source) -> tuple[np.ndarray, int]:
    """Path or bytes -> (float32 mono samples in [-1, 1], sample rate)."""
    try:
        with wave.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source)) as w:
            rate, width, n_channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            raw = w.readframes(w.getnframes())
    except FileNotFoundError:
        raise BadInput(f"audio file '{source}' not found") from None
    except (wave.Error, EOFError, OSError) as e:
        raise BadInput(f"audio {_describe(source)} is not a readable PCM WAV ({e})") from None
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}.get(width)
    if dtype is None:
        raise BadInput(f"audio {_describe(source)}: {8 * width}-bit samples are not supported (8, 16 or 32-bit PCM)")
    samples = np.frombuffer(raw, dtype=dtype).astype(np.float32)
    samples = (samples - 128.0) / 128.0 if dtype is np.uint8 else samples / float(np.iinfo(dtype).max + 1)
    if n_channels > 1:
        samples = samples.reshape(-1, n_channels).mean(axis=1)
    return samples, rate


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Linear-interpolation resampling (enough for speech front-ends; the same at training and on device)."""
    if rate == target_rate or len(samples) == 0:
        return samples.astype(np.float32)
    n_out = int(round(len(samples) * target_rate / rate))
    positions = np.arange(n_out) * (rate / target_rate)
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Cut to `length` samples, or pad with silence at the end."""
    if len(samples) >= length:
        return samples[:length].astype(np.float32)
    return np.pad(samples, (0, length - len(samples))).astype(np.float32)


def load_audio(source, sample_rate: int, clip_samples: int, rate: int | None = None) -> np.ndarray:
    """WAV path/bytes, or a sample array with its `rate` -> float32 [clip_samples] at sample_rate."""
    if isinstance(source, np.ndarray):
        if rate is None:
            raise BadInput("audio given as an array needs its sample rate")
        samples = source.astype(np.float32)
        if samples.ndim != 1:
            raise BadInput(f"audio array has shape {source.shape}; expected one channel [samples]")
    else:
        samples, rate = read_wav(source)
    return fit_length(resample(samples, rate, sample_rate), clip_samples)


def _describe(source) -> str:
    return f"'{source}'" if isinstance(source, (str, Path)) else f"({type(source).__name__})"


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
    return re.findall(r"\w+", text.lower() if lowercase else text)
