"""TFLite int8io for a model whose audio front-end stays in float: its audio input becomes int16 PCM, as the micro
target takes it (sample = q / 32768), CAST to float inside the graph where the front-end starts.

The front-end's log-mel ranges do not fit int8 (a quantized front-end loses the spoken digit), so the int8 model keeps
it in float; its first op then reads the float input directly, and the int8 I/O rewrite (which only removes a
QUANTIZE after an input) leaves that input float32. With int16 PCM the input is integer and lossless for 16-bit
recordings (the WAV files themselves); every other input and output is int8 as in any int8io file.
"""
from __future__ import annotations

from ..errors import EdgemtlError


def float_front_ends(model, keep_float: tuple[str, ...]) -> list[str]:
    """The model inputs read by an audio front-end that `keep_float` keeps in float (a layer-name prefix of it)."""
    from ..models.layers import LogMelSpectrogram

    keep = tuple(keep_float)
    return [x.input.name.split(":")[0] for x in model.layers
            if isinstance(x, LogMelSpectrogram) and keep and x.name.startswith(keep) and x.input in model.inputs]


def pcm_model(model, audio: list[str]):
    """The same model (same weights) with each named audio input as int16 PCM."""
    from ..tfk import keras, tf
    from .micro import clone_scope

    inputs = [keras.Input(shape=i.shape[1:], dtype=tf.int16 if i.name.split(":")[0] in audio else i.dtype,
                          name=i.name.split(":")[0]) for i in model.inputs]
    with clone_scope(model):
        copy = keras.models.clone_model(model, input_tensors=inputs,
                                        clone_function=lambda x: x.__class__.from_config(x.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def pcm_samples(samples, audio: list[str]) -> list[dict]:
    """Calibration rows with the named audio inputs as int16 PCM."""
    from .micro import pcm16

    return [{k: pcm16(v) if k in audio else v for k, v in s.items()} for s in samples]


def convert_int8io(model, samples, keep_float: tuple[str, ...]) -> bytes:
    """Full int8 with `keep_float` in float, int16 PCM audio in, every other input and output int8."""
    from .convert import integer_io
    from .tflite import convert

    audio = float_front_ends(model, keep_float)
    converted = convert(pcm_model(model, audio), "int8", pcm_samples(samples, audio), keep_float)
    try:
        return integer_io(converted)
    except (ValueError, RuntimeError) as e:
        raise EdgemtlError(f"int8io: keeping {', '.join(keep_float)} in float leaves float I/O ({e})") from None
