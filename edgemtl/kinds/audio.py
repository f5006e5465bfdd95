"""Audio input: float32 mono samples in [-1, 1], one clip at the recipe's sample rate (the log-mel front-end is in
the graph)."""
import numpy as np

from .. import preprocess
from .base import BadInput, ModalityKind, decode_files

MIN_RATE, MAX_RATE = 4000, 192000  # sample rates the runtime accepts (then resampled to the model's)
MAX_CLIP_FACTOR = 10  # audio longer than this many clips is refused at run time rather than silently cut


def clip_samples(spec) -> int:
    return round(spec.sample_rate * spec.clip_seconds)


class AudioKind(ModalityKind):
    name = "audio"
    dtype = "float32"
    default_encoder = "cnn"
    media = True

    def input_shape(self, spec) -> tuple:
        return (clip_samples(spec),)

    def preprocess_entry(self, spec) -> dict:
        return {"sample_rate": spec.sample_rate, "clip_samples": clip_samples(spec)}

    @staticmethod
    def load(pre: dict, source, rate=None) -> np.ndarray:
        """The one audio decoder: a WAV path/bytes, or samples with their rate -> float32 [clip_samples] at the
        model's rate (training and runtime)."""
        return preprocess.load_audio(source, pre["sample_rate"], pre["clip_samples"], rate)

    def decode(self, spec, table, tokenizer=None) -> tuple[np.ndarray, dict]:
        pre = self.preprocess_entry(spec)
        return decode_files(spec, table, self.input_shape(spec), np.float32, lambda path: self.load(pre, path))

    def _prepare(self, entry: dict, value, rate, **resources) -> np.ndarray:
        pre = entry["preprocess"]
        if isinstance(value, np.ndarray) and not np.issubdtype(value.dtype, np.floating):
            raise BadInput(f"audio array has dtype {value.dtype}; expected float samples in [-1, 1]")
        if isinstance(value, np.ndarray):
            samples = value
            if rate is None:
                raise BadInput("audio given as an array needs its sample rate (pass rate=...)")
        else:
            samples, rate = preprocess.read_wav(value)
        if not MIN_RATE <= rate <= MAX_RATE:
            raise BadInput(f"sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz; is this audio?")
        seconds, clip = len(samples) / rate, pre["clip_samples"] / pre["sample_rate"]
        if seconds > MAX_CLIP_FACTOR * clip:
            raise BadInput(f"{seconds:.1f} s of audio; the model hears {clip:g} s clips (anything past that is cut), "
                           f"so more than {MAX_CLIP_FACTOR * clip:g} s is refused: split it first")
        return self.load(pre, np.asarray(samples, np.float32), rate)

    def float_parts(self, spec) -> tuple:
        """Log-mel ranges do not fit int8: an int8 export first keeps the front-end in float."""
        return (f"{spec.name}_logmel",)

    def problems(self, spec, where: str) -> list[str]:
        if spec.frame_length & (spec.frame_length - 1):
            return [f"{where}.frame_length: must be a power of two, got {spec.frame_length}"]
        return []

    # -- TF half --------------------------------------------------------------------------------------------------
    def encoders(self) -> dict:
        from ..models.encoders import audio

        return audio.ENCODERS
