"""Raw inputs (paths, bytes, PIL images, sample arrays, strings, numbers) -> model input arrays, from a bundle's
manifest. The conversions are edgemtl.preprocess, the code training decoded its data with."""
from pathlib import Path

import numpy as np

from .. import preprocess
from ..errors import EdgemtlError

MIN_RATE, MAX_RATE = 4000, 192000  # sample rates accepted (then resampled to the model's)
MAX_CLIP_FACTOR = 10  # audio longer than this many clips is refused rather than silently cut


class InputPreparer:
    """Turns one raw value per input into the model's array for that input (no batch dimension)."""

    def __init__(self, entry: dict, bundle_dir: Path):
        self.entry, self.name, self.kind = entry, entry["name"], entry["modality"]
        self.pre = entry.get("preprocess", {})
        self.shape = tuple(entry["shape"][1:])
        self.dtype = np.dtype(entry["dtype"])
        if self.kind == "text":
            vocab = bundle_dir / self.pre["vocab"]
            if not vocab.exists():
                raise EdgemtlError(f"{bundle_dir}: vocabulary '{self.pre['vocab']}' of input '{self.name}' is missing")
            self.tokenizer = preprocess.Tokenizer.load(vocab, self.pre["lowercase"])

    def __call__(self, value, rate=None) -> np.ndarray:
        try:
            array = getattr(self, f"_{self.kind}")(value, rate)
        except preprocess.BadInput as e:
            raise EdgemtlError(f"input '{self.name}': {e}") from None
        return array.astype(self.dtype, copy=False)

    def _image(self, value, rate):
        if isinstance(value, np.ndarray) and not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
            raise preprocess.BadInput(f"image array has dtype {value.dtype}; expected numbers (uint8 0-255 or "
                                      f"float 0-1)")
        return preprocess.load_image(value, self.pre["size"], self.pre["channels"])

    def _audio(self, value, rate):
        if isinstance(value, np.ndarray) and not np.issubdtype(value.dtype, np.floating):
            raise preprocess.BadInput(f"audio array has dtype {value.dtype}; expected float samples in [-1, 1]")
        if isinstance(value, np.ndarray):
            samples, rate = value, rate
            if rate is None:
                raise preprocess.BadInput("audio given as an array needs its sample rate (pass rate=...)")
        else:
            samples, rate = preprocess.read_wav(value)
        if not MIN_RATE <= rate <= MAX_RATE:
            raise preprocess.BadInput(f"sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz; is this audio?")
        seconds, clip = len(samples) / rate, self.pre["clip_samples"] / self.pre["sample_rate"]
        if seconds > MAX_CLIP_FACTOR * clip:
            raise preprocess.BadInput(f"{seconds:.1f} s of audio; the model hears {clip:g} s clips (anything past that "
                                      f"is cut), so more than {MAX_CLIP_FACTOR * clip:g} s is refused: split it first")
        return preprocess.load_audio(np.asarray(samples, np.float32), self.pre["sample_rate"],
                                     self.pre["clip_samples"], rate)

    def _text(self, value, rate):
        if not isinstance(value, str):
            raise preprocess.BadInput(f"expected a string, got {type(value).__name__}")
        if not value.strip():
            raise preprocess.BadInput("empty text")
        return self.tokenizer.encode(value, self.pre["max_length"])

    def _numeric(self, value, rate):
        columns = self.pre["columns"]
        if isinstance(value, dict):
            missing = [c for c in columns if c not in value]
            if missing:
                raise preprocess.BadInput(f"missing value(s) for {', '.join(missing)}")
            value = [value[c] for c in columns]
        return self._array(value, (len(columns),), f"one number per column ({', '.join(columns)})")

    def _sequence(self, value, rate):
        return self._array(value, self.shape, f"[length, channels] = {list(self.shape)}")

    def _array(self, value, shape, what: str):
        try:
            array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise preprocess.BadInput(f"expected {what}, got {type(value).__name__} that is not numbers") from None
        if array.shape != tuple(shape):
            raise preprocess.BadInput(f"array has shape {list(array.shape)}; expected {what}")
        if not np.isfinite(array).all():
            raise preprocess.BadInput("contains NaN or infinite values")
        return array
