"""Audio input: float32 mono samples in [-1, 1], one clip at the recipe's sample rate (the log-mel front-end is in
the graph).

Files are read with soundfile (libsndfile: WAV of any PCM width or float, FLAC, OGG/Vorbis, any rate) and resampled
with soxr (an anti-aliased polyphase resampler): the same two calls at training and on the device, TF-free.
"""
import io
import struct
from pathlib import Path

import numpy as np

from .base import BadInput, ModalityKind, decode_files, describe

MIN_RATE, MAX_RATE = 4000, 192000  # sample rates the runtime accepts (then resampled to the model's)
MAX_CLIP_SAMPLES = 2 ** 22  # about 87 s at 48 kHz: a recipe's clip, longer would exhaust memory per batch
PCM16_FULL_SCALE = 32768.0  # int16 PCM q is the float sample q / 32768 (the micro export's audio input)
MAX_CLIP_FACTOR = 10  # audio longer than this many clips is refused at run time rather than silently cut
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")  # what libsndfile reads (a watched folder's audio samples)
RESAMPLE_QUALITY = "HQ"  # soxr's high quality: pass band to 0.91 x Nyquist, stop band below -100 dB


def read_audio(source) -> tuple[np.ndarray, int]:
    """Path or bytes of a WAV / FLAC / OGG file -> (float32 mono samples in [-1, 1], sample rate).
    Several channels are averaged; integer PCM of any width (8 to 32 bits) and float files are read as floats."""
    import soundfile  # here, not at import: `import edgemtl.runtime` stays light

    raw = _read_bytes(source)
    short = _wav_cut_short(raw)
    if short:
        raise BadInput(f"audio {describe(source)} is cut short: {short}")
    try:
        samples, rate = soundfile.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, TypeError, ValueError, EOFError) as e:
        reason = str(e).split(": ", 1)[-1] if ": " in str(e) else str(e)
        raise BadInput(f"audio {describe(source)} is not a readable WAV, FLAC or OGG file ({reason})") from None
    if not MIN_RATE <= rate <= MAX_RATE:
        raise BadInput(f"audio {describe(source)}: sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
    return samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0], int(rate)


read_wav = read_audio  # the name earlier releases used


def _read_bytes(source) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    path = Path(source)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"audio file '{source}' not found") from None
    except OSError as e:
        raise BadInput(f"audio {describe(source)} cannot be read ({e.strerror or e.__class__.__name__})") from None
    except ValueError as e:  # a NUL byte in the path
        raise BadInput(f"audio {describe(source)[:80]} is not a file path ({e})") from None


def _wav_cut_short(raw: bytes) -> str | None:
    """A RIFF/WAVE file whose data chunk promises more bytes than the file holds (a copy cut off): libsndfile would
    read the part that is there without a word, so it is checked here. Streaming writers' 0 / 0xFFFFFFFF sizes say
    nothing and pass."""
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(raw):
        chunk, size = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        if chunk == b"data":
            held = len(raw) - pos - 8
            if size not in (0, 0xFFFFFFFF) and size > held:
                return f"its header promises {size} bytes of samples, the file holds {held}"
            return None
        pos += 8 + size + (size & 1)
    return None


MAX_SAMPLE = 1.01  # float samples are in [-1, 1]; a little over is clipping, far over is another scale


def _all_numbers(values: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def resample(samples: np.ndarray, rate: float, target_rate: int) -> np.ndarray:
    """Anti-aliased resampling (soxr, polyphase with a steep low-pass below the lower Nyquist frequency): a tone
    above the target's Nyquist frequency is removed, not folded back. The same call at training and on the device."""
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if rate == target_rate or len(samples) == 0:
        return samples
    import soxr  # here, not at import: `import edgemtl.runtime` stays light

    return soxr.resample(samples, float(rate), float(target_rate), quality=RESAMPLE_QUALITY).astype(np.float32)


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Cut to `length` samples, or pad with silence at the end."""
    if len(samples) >= length:
        return samples[:length].astype(np.float32)
    return np.pad(samples, (0, length - len(samples))).astype(np.float32)


def load_audio(source, sample_rate: int, clip_samples: int, rate: int | None = None) -> np.ndarray:
    """Audio file path/bytes, or a sample array with its `rate` -> float32 [clip_samples] at sample_rate."""
    if isinstance(source, np.ndarray):
        if rate is None:
            raise BadInput("audio given as an array needs its sample rate")
        samples = source.astype(np.float32)
        if samples.ndim != 1:
            raise BadInput(f"audio array has shape {source.shape}; expected one channel [samples]")
    else:
        samples, rate = read_audio(source)
    return fit_length(resample(samples, rate, sample_rate), clip_samples)


def clip_samples(spec) -> int:
    return round(spec.sample_rate * spec.clip_seconds)


class AudioKind(ModalityKind):
    name = "audio"
    dtype = "float32"
    default_encoder = "cnn"
    media = True
    streamable = True  # decoded from its files inside the tf.data pipeline when data.streaming says so
    file_suffixes = AUDIO_SUFFIXES

    def input_shape(self, spec) -> tuple:
        return (clip_samples(spec),)

    def preprocess_entry(self, spec) -> dict:
        return {"sample_rate": spec.sample_rate, "clip_samples": clip_samples(spec)}

    @staticmethod
    def load(pre: dict, source, rate=None) -> np.ndarray:
        """The one audio decoder: an audio file's path/bytes, or samples with their rate -> float32 [clip_samples] at
        the model's rate (training and runtime)."""
        return load_audio(source, pre["sample_rate"], pre["clip_samples"], rate)

    def decode(self, spec, table, tokenizer=None) -> tuple[np.ndarray, dict]:
        pre = self.preprocess_entry(spec)
        return decode_files(spec, table, self.input_shape(spec), np.float32, lambda path: self.load(pre, path))

    def _prepare(self, entry: dict, value, rate, **resources) -> np.ndarray:
        pre = entry["preprocess"]
        if isinstance(value, list):
            value = np.asarray(value, dtype=np.float32) if _all_numbers(value) else value
        if isinstance(value, np.ndarray) and not np.issubdtype(value.dtype, np.floating):
            raise BadInput(f"audio array has dtype {value.dtype}; expected float samples in [-1, 1]")
        if isinstance(value, np.ndarray):
            samples = value
            if rate is None:
                raise BadInput("audio given as an array needs its sample rate (pass rate=...)")
            if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
                raise BadInput(f"rate must be a number of Hz, got {type(rate).__name__} {str(rate)[:40]!r}")
            if samples.ndim != 1 or samples.size == 0:
                raise BadInput(f"audio array has shape {list(samples.shape)}; expected one channel [samples], at "
                               f"least one sample")
            if not np.isfinite(samples).all():
                raise BadInput("audio samples contain NaN or infinite values")
            if np.abs(samples).max() > MAX_SAMPLE:
                raise BadInput(f"audio samples reach {np.abs(samples).max():.4g}; expected floats in [-1, 1] "
                               f"(int16 PCM? divide by 32768)")
        elif isinstance(value, (str, bytes, bytearray)) or hasattr(value, "__fspath__"):
            samples, rate = read_audio(value)
            if len(samples) == 0:
                raise BadInput(f"audio {describe(value)} holds no samples")
        else:
            raise BadInput(f"expected an audio file path or bytes (WAV, FLAC, OGG), or a float sample array with its "
                           f"rate; got {type(value).__name__}")
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
        samples = clip_samples(spec)
        if not MIN_RATE <= spec.sample_rate <= MAX_RATE:
            return [f"{where}.sample_rate: must be {MIN_RATE}-{MAX_RATE} Hz, got {spec.sample_rate}"]
        if samples > MAX_CLIP_SAMPLES:
            return [f"{where}.clip_seconds: {spec.clip_seconds:g} s at {spec.sample_rate} Hz is {samples} samples per "
                    f"clip; at most {MAX_CLIP_SAMPLES} (cut longer recordings into clips)"]
        if spec.frame_length & (spec.frame_length - 1):
            return [f"{where}.frame_length: must be a power of two, got {spec.frame_length}"]
        if spec.frame_length > samples:
            return [f"{where}.frame_length: {spec.frame_length} samples is longer than the clip ({samples} samples "
                    f"= clip_seconds x sample_rate)"]
        if spec.frame_step > spec.frame_length:
            return [f"{where}.frame_step: {spec.frame_step} is longer than frame_length {spec.frame_length} "
                    f"(samples between frames would be skipped)"]
        if spec.n_mels > spec.frame_length // 2 + 1:
            return [f"{where}.n_mels: {spec.n_mels} bands need frame_length of at least {2 * (spec.n_mels - 1)} "
                    f"(frame_length {spec.frame_length} has {spec.frame_length // 2 + 1} frequency bins)"]
        return []

    # -- TF half --------------------------------------------------------------------------------------------------
    def encoders(self) -> dict:
        from ..models.encoders import audio

        return audio.ENCODERS
