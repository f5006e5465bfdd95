"""Custom layers, each built from ops that TFLite and ONNX carry as builtins (no Lambda layers)."""
import numpy as np

from ..tfk import keras, tf

register = keras.utils.register_keras_serializable(package="edgemtl")


def mel_matrix(n_mels: int, n_fft: int, sample_rate: int) -> np.ndarray:
    """HTK-style triangular mel filterbank, shape [n_fft // 2 + 1, n_mels]."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins[None, :] - lower) / np.maximum(center - lower, 1e-9)
    down = (upper - bins[None, :]) / np.maximum(upper - center, 1e-9)
    return np.maximum(0.0, np.minimum(up, down)).T.astype(np.float32)


def dft_kernel(frame_length: int) -> np.ndarray:
    """Hann-windowed real DFT as a Conv1D kernel [frame_length, 1, 2 * n_bins]: a fixed-weight convolution is an STFT."""
    n_bins = frame_length // 2 + 1
    t = np.arange(frame_length)[:, None]
    k = np.arange(n_bins)[None, :]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_length) / frame_length))[:, None]
    angle = 2 * np.pi * t * k / frame_length
    kernel = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window], axis=1)
    return kernel[:, None, :].astype(np.float32)


@register
class LogMelSpectrogram(keras.layers.Layer):
    """Audio samples [batch, samples] -> log-mel image [batch, frames, n_mels, 1]."""

    def __init__(self, sample_rate, frame_length, frame_step, n_mels, **kwargs):
        super().__init__(**kwargs)
        self.sample_rate, self.frame_length, self.frame_step, self.n_mels = sample_rate, frame_length, frame_step, n_mels
        self._kernel = tf.constant(dft_kernel(frame_length))
        self._mel = tf.constant(mel_matrix(n_mels, frame_length, sample_rate))

    def call(self, samples):
        x = tf.expand_dims(tf.cast(samples, tf.float32), -1)
        spec = tf.nn.conv1d(x, self._kernel, stride=self.frame_step, padding="VALID")
        n_bins = self.frame_length // 2 + 1
        power = tf.square(spec[..., :n_bins]) + tf.square(spec[..., n_bins:])
        mel = tf.matmul(tf.reshape(power, [-1, n_bins]), self._mel)
        frames = (samples.shape[1] - self.frame_length) // self.frame_step + 1
        mel = tf.reshape(mel, [-1, frames, self.n_mels, 1])
        return tf.math.log(mel + 1e-6)

    def get_config(self):
        return {**super().get_config(), "sample_rate": self.sample_rate, "frame_length": self.frame_length,
                "frame_step": self.frame_step, "n_mels": self.n_mels}


@register
class Denormalize(keras.layers.Layer):
    """Regression head output in label units: x * std + mean (the head learns the standardised value)."""

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std = float(mean), float(std)

    def call(self, x):
        return x * self.std + self.mean

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@register
class WeightedFusion(keras.layers.Layer):
    """Sum of modality vectors with one learned, softmax-normalised weight per modality."""

    def build(self, input_shape):
        self.logits = self.add_weight(name="logits", shape=(len(input_shape),), initializer="zeros")

    def call(self, inputs):
        w = tf.nn.softmax(self.logits)
        return tf.add_n([inputs[i] * w[i] for i in range(len(inputs))])


@register
class GatedFusion(keras.layers.Layer):
    """Sum of modality vectors, each scaled by a gate in (0, 1) computed per sample from all modalities."""

    def build(self, input_shape):
        total = sum(int(s[-1]) for s in input_shape)
        self.kernel = self.add_weight(name="kernel", shape=(total, len(input_shape)), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(len(input_shape),), initializer="zeros")

    def call(self, inputs):
        gates = tf.sigmoid(tf.matmul(tf.concat(inputs, axis=-1), self.kernel) + self.bias)
        return tf.add_n([inputs[i] * gates[:, i:i + 1] for i in range(len(inputs))])


@register
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned embedding per token position (Transformer text encoder)."""

    def build(self, input_shape):
        self.table = self.add_weight(name="table", shape=(int(input_shape[1]), int(input_shape[2])),
                                     initializer="glorot_uniform")

    def call(self, x):
        return x + self.table


CUSTOM_OBJECTS = {c.__name__: c for c in (LogMelSpectrogram, Denormalize, WeightedFusion, GatedFusion,
                                          PositionEmbedding)}
