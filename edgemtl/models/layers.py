"""Custom layers, each built from ops that TFLite and ONNX carry as builtins (no Lambda layers)."""
import numpy as np

from ..kinds.audio import PCM16_FULL_SCALE
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


def hann_window(frame_length: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_length) / frame_length)).astype(np.float32)


# TFLite dynamic-range quantization turns every constant weight of 1024 or more elements into int8 and quantizes the
# matching activations on the fly; on a power spectrum (values from 1e-6 to 1e3) that ruins the log-mel image. So
# the front-end has no large weights: framing by reshapes, an RFFT op, and the mel filterbank split into matmuls
# below that size. Full-int8 export keeps the layer in float by name (export's fallback).
MAX_UNQUANTIZED_WEIGHTS = 1023
# The samples are scaled by GAIN (and the filterbank by 1 / GAIN^2, so the result is unchanged) only so that the first
# op on the waveform is a multiplication: the int8 converter keeps that in float when asked to, whereas a first
# slice or reshape would take on the int8 input quantization, turning the waveform into 8-bit audio.
GAIN = 2.0  # small: the fp16 artifacts carry the filterbank and the power spectrum in half precision


@register
class LogMelSpectrogram(keras.layers.Layer):
    """Audio samples [batch, samples] -> log-mel image [batch, frames, n_mels, 1] (Hann window, power spectrum).

    dft=True (the TFLite Micro export only, never trained): the spectrum as one strided convolution with constant
    windowed cos/sin weights (TFLite CONV_2D) instead of framing + RFFT2D, which TFLite Micro has no kernel for. The
    same numbers up to float rounding; no weights to train either way."""

    def __init__(self, sample_rate, frame_length, frame_step, n_mels, dft=False, **kwargs):
        super().__init__(**kwargs)
        self.sample_rate, self.frame_length = sample_rate, frame_length
        self.frame_step, self.n_mels, self.dft = frame_step, n_mels, bool(dft)
        self._window = tf.constant(hann_window(frame_length))
        mel = mel_matrix(n_mels, frame_length, sample_rate)
        per_chunk = max(1, MAX_UNQUANTIZED_WEIGHTS // mel.shape[0])
        self._mel_chunks = [tf.constant(mel[:, i:i + per_chunk] / GAIN ** 2) for i in range(0, n_mels, per_chunk)]

    def _frames(self, x):
        """[batch, samples] -> [batch, frames, frame_length]: reshapes and slices where the frame length is a multiple
        of the step (no index table in the model), a gather otherwise."""
        length, step = self.frame_length, self.frame_step
        n = (x.shape[1] - length) // step + 1
        if length % step == 0:
            k = length // step
            blocks = tf.reshape(x[:, :(n + k - 1) * step], [-1, n + k - 1, step])
            return tf.concat([blocks[:, j:j + n] for j in range(k)], axis=-1) if k > 1 else blocks
        index = np.arange(n)[:, None] * step + np.arange(length)[None, :]
        return tf.gather(x, index.astype(np.int32), axis=1)

    def _dft_power(self, samples):
        """[batch, samples] -> power spectrum [batch * frames, frame_length // 2 + 1] by a fixed-weight conv1d."""
        length, bins = self.frame_length, self.frame_length // 2 + 1
        angle = 2 * np.pi * np.outer(np.arange(length), np.arange(bins)) / length
        window = hann_window(length)[:, None]
        kernel = np.concatenate([window * np.cos(angle), -window * np.sin(angle)], axis=1)  # [length, 2 * bins]
        spectrum = tf.nn.conv1d(tf.expand_dims(samples, -1), kernel[:, None, :].astype(np.float32),
                                stride=self.frame_step, padding="VALID")
        spectrum = tf.reshape(spectrum, [-1, 2 * bins])
        re, im = spectrum[:, :bins], spectrum[:, bins:]
        return re * re + im * im

    def call(self, samples):
        if self.dft:  # name scopes: the micro export keeps `spectrum` and `mel` in float, not the input scaling
            n_frames = (samples.shape[1] - self.frame_length) // self.frame_step + 1
            with tf.name_scope("input"):  # int16 PCM (the micro model's audio input) or float samples in [-1, 1]
                pcm = samples.dtype == tf.int16
                scaled = tf.cast(samples, tf.float32) * (GAIN / PCM16_FULL_SCALE if pcm else GAIN)
            with tf.name_scope("spectrum"):
                power = self._dft_power(scaled)
            with tf.name_scope("mel"):
                mel = tf.concat([tf.matmul(power, chunk) for chunk in self._mel_chunks], axis=-1)
                return tf.reshape(tf.math.log(mel + 1e-6), [-1, n_frames, self.n_mels, 1])
        # int16 PCM: the input of an int8io TFLite file whose front-end stays in float (export/pcm.py)
        gain = GAIN / PCM16_FULL_SCALE if samples.dtype == tf.int16 else GAIN
        frames = self._frames(tf.cast(samples, tf.float32) * gain) * self._window
        n_frames = frames.shape[1]
        # 2-D into RFFT and ComplexAbs out of it: the one form tf2onnx converts
        spec = tf.signal.rfft(tf.reshape(frames, [-1, self.frame_length]))
        power = tf.square(tf.math.abs(spec))
        mel = tf.concat([tf.matmul(power, chunk) for chunk in self._mel_chunks], axis=-1)
        return tf.reshape(tf.math.log(mel + 1e-6), [-1, n_frames, self.n_mels, 1])

    def get_config(self):
        dft = {"dft": True} if self.dft else {}  # only the micro export's copy: trained models keep the old config
        return {**super().get_config(), "sample_rate": self.sample_rate, "frame_length": self.frame_length,
                "frame_step": self.frame_step, "n_mels": self.n_mels, **dft}


@register
class Denormalize(keras.layers.Layer):
    """Regression head output in label units: x * std + mean (the head learns the standardised value), clipped to
    [low, high] where given. Int8 exports keep this layer, and the head Dense the converter folds it into, in float
    (float_outputs)."""

    def __init__(self, mean, std, low=None, high=None, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std = float(mean), float(std)
        self.low = None if low is None else float(low)
        self.high = None if high is None else float(high)

    def call(self, x):
        # An fp16 export stores every constant in fp16, whose step near 2012 is 1: the mean becomes a part fp16 holds
        # exactly plus a small rest. x - x keeps the converters from folding the two constants back into one (a
        # zero constant would be shared with other layers', which ONNX's fp16 conversion then types wrongly).
        with np.errstate(over="ignore"):  # a mean past fp16's range is inf there: kept whole below
            exact = float(np.float16(self.mean))
        rest = self.mean - exact
        if rest == 0.0 or not np.isfinite(exact):  # fp16 holds the mean, or no fp16 export can hold it at all
            y = x * self.std + self.mean
        else:
            y = (x * self.std + rest) + ((x - x) + exact)
        if self.low is not None:
            y = tf.maximum(y, self.low)
        if self.high is not None:
            y = tf.minimum(y, self.high)
        return y

    def get_config(self):
        bounds = {k: v for k, v in (("low", self.low), ("high", self.high)) if v is not None}  # none: the old config
        return {**super().get_config(), "mean": self.mean, "std": self.std, **bounds}


def float_outputs(model) -> list[str]:
    """The outputs in label units (regression heads): reduced-precision exports keep them in float, since an int8
    (or fp16) tensor of values like 2012 has steps of years."""
    return [name for name in model.output_names if isinstance(model.get_layer(name), Denormalize)]


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
class AbsentVector(keras.layers.Layer):
    """An encoder's vector, or a learned "absent" vector where the modality is absent: [v] or [v, presence] ->
    p * v + (1 - p) * absent (presence [batch, 1], 1 or 0). drop_rate: in training, each row's presence is also set
    to 0 with that chance (ModDrop), so a dropped modality looks exactly like a missing one. At inference an input
    without a presence input passes through unchanged."""

    def __init__(self, drop_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        self.drop_rate = float(drop_rate)

    def build(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (
            list, tuple, tf.TensorShape)) else input_shape
        self.absent = self.add_weight(name="absent", shape=(int(shape[-1]),), initializer="zeros")

    def call(self, inputs, training=None):
        v, p = (inputs[0], inputs[1]) if isinstance(inputs, (list, tuple)) else (inputs, None)
        dropping = bool(training) and self.drop_rate > 0
        if p is None and not dropping:
            return v
        p = tf.ones_like(v[:, :1]) if p is None else tf.cast(p, v.dtype)
        if dropping:
            p = p * tf.cast(tf.random.uniform(tf.shape(p)) >= self.drop_rate, v.dtype)
        return p * v + (1.0 - p) * self.absent

    def get_config(self):
        return {**super().get_config(), "drop_rate": self.drop_rate}


@register
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned embedding per token position (Transformer text encoder)."""

    def build(self, input_shape):
        self.table = self.add_weight(name="table", shape=(int(input_shape[1]), int(input_shape[2])),
                                     initializer="glorot_uniform")

    def call(self, x):
        return x + self.table


@register
class TokenPresence(keras.layers.Layer):
    """Token ids [batch, length] -> [batch, ids]: 1.0 where the id occurs in the row. The one token comparison that
    every label-matching head on the same text reads (one per head cost three ops each in TFLite, int8 ops of a
    fraction of a microsecond that add up over seven heads). ids end with the sentinel -1, in no text."""

    def __init__(self, ids, **kwargs):
        super().__init__(**kwargs)
        self.ids = [int(i) for i in ids]
        self._ids = tf.constant(np.array(self.ids, np.int32))

    def call(self, tokens):
        # any() over the tokens before the cast: the cast (and the int8 file's quantize) then touch [batch, ids], not
        # [batch, length, ids]; expand_dims, not [:, :, None], which converts to a reshape plus a no-op strided slice
        hits = tf.equal(tf.expand_dims(tokens, 2), self._ids[None, None, :])
        return tf.cast(tf.reduce_any(hits, axis=1), tf.float32)

    def get_config(self):
        return {**super().get_config(), "ids": self.ids}


def presence_ids(forms) -> list[int]:
    """The TokenPresence table of some heads' word forms (match_tables' first part): every id once, then -1."""
    return sorted({i for f in forms for i in f}) + [-1]


@register
class LabelNameMatch(keras.layers.Layer):
    """Token ids [batch, length] -> a logit per class [batch, classes] from whether the text spells the class name:
    a * (fraction of the name's words present) + b * (number of its words, when all are present). The two weights are
    shared by every class, so a class seen a handful of times in training (a rare colour) gets what the common ones
    teach, "the title names it"; the longer full match wins ("coffee brown" over "brown").

    words: for each distinct class-name word, the token ids of its forms; classes: for each class, the indices of its
    words in `words` (-1 for a word outside the vocabulary: never present). The lookups are small int32 tables read
    by gathers (a dense 0/1 matrix per task would add ~100 KB of float weights to a fashion model). Their padding
    points at a sentinel token id (-1, in no text) and at a word of that id alone: always absent, so the graph needs
    no zero columns added at run time (each cost three ops per head in TFLite).

    ids: given, the layer reads a shared TokenPresence over these ids (built by build_model) instead of the tokens;
    models saved without it compare the tokens themselves."""

    def __init__(self, words, classes, ids=None, **kwargs):
        super().__init__(**kwargs)
        self.words, self.classes, self.shared_ids = words, classes, ids
        ids = list(ids) if ids is not None else presence_ids(words)
        sentinel = ids.index(-1)
        forms = [[ids.index(i) for i in f] for f in words] + [[sentinel]]  # the last word: never present
        self._ids = tf.constant(np.array(ids, np.int32))
        self._word_forms = tf.constant(_padded(forms, sentinel))
        self._class_words = tf.constant(_padded([[w if w >= 0 else len(words) for w in m] for m in classes],
                                                len(words)))
        lengths = np.array([max(len(m), 1) for m in classes], np.float32)
        self._lengths, self._inverse_lengths = tf.constant(lengths), tf.constant(1.0 / lengths)

    def build(self, input_shape):
        # a fully spelled name starts 3 logits ahead per word; training moves both weights
        self.weight_fraction = self.add_weight(name="fraction", shape=(), initializer="zeros")
        self.weight_full = self.add_weight(name="full", shape=(), initializer=keras.initializers.Constant(3.0))

    def call(self, tokens):
        if self.shared_ids is not None:
            ids = tokens  # [batch, ids] from the shared TokenPresence
        else:
            hits = tf.cast(tf.equal(tokens[:, :, None], self._ids[None, None, :]), tf.float32)
            ids = tf.reduce_max(hits, axis=1)  # [batch, ids]: which token ids occur
        words = _gathered(ids, self._word_forms, tf.reduce_max)  # [batch, words]: any form occurs
        matched = _gathered(words, self._class_words, tf.reduce_sum)  # [batch, classes]: words present per name
        full = tf.nn.relu(matched - self._lengths + 1.0) * self._lengths  # the length where all are present, else 0
        return matched * (self.weight_fraction * self._inverse_lengths) + self.weight_full * full

    def get_config(self):
        shared = {"ids": self.shared_ids} if self.shared_ids is not None else {}
        return {**super().get_config(), "words": self.words, "classes": self.classes, **shared}


@register
class LabelNameMatches(keras.layers.Layer):
    """Several heads' LabelNameMatch over the same input as one set of ops: a list of logits, one [batch, classes]
    tensor per head, each what that head's LabelNameMatch gives with the same two weights (bit for bit in float).

    Seven heads on a fashion title cost ~70 ops of a few elements each in TFLite (their gathers, which XNNPACK does
    not take, also cut the graph into partitions); one gather / max / gather / sum over all heads' classes, the
    arithmetic once and one split leave about ten. Each head keeps its own two weights (entries of `fraction` and
    `full`, one per head), read per class by a constant index. Export builds this layer from the per-head ones
    (models/fused_match.py); training keeps one LabelNameMatch per head.

    heads: each head's {"words", "classes"}, as LabelNameMatch takes them; ids: as LabelNameMatch."""

    def __init__(self, heads, ids=None, **kwargs):
        super().__init__(**kwargs)
        self.heads = [{"words": h["words"], "classes": h["classes"]} for h in heads]
        self.shared_ids = ids
        ids = list(ids) if ids is not None else presence_ids([f for h in self.heads for f in h["words"]])
        sentinel = ids.index(-1)
        # words with the same forms are one word (their presence is the same), whichever head names them
        union = sorted({tuple(f) for h in self.heads for f in h["words"]})
        position = {f: i for i, f in enumerate(union)}
        never = len(union)  # the sentinel's word, always absent (as in LabelNameMatch)
        rows, head_of = [], []
        for k, h in enumerate(self.heads):
            for m in h["classes"]:
                rows.append([position[tuple(h["words"][w])] if w >= 0 else never for w in m])
                head_of.append(k)
        lengths = np.array([max(len(m), 1) for m in rows], np.float32)
        self._ids = tf.constant(np.array(ids, np.int32))
        self._word_forms = tf.constant(_padded([[ids.index(i) for i in f] for f in union] + [[sentinel]], sentinel))
        self._class_words = tf.constant(_padded(rows, never))
        self._head_of = tf.constant(np.array(head_of, np.int32))
        self._lengths, self._inverse_lengths = tf.constant(lengths), tf.constant(1.0 / lengths)
        self.sizes = [len(h["classes"]) for h in self.heads]

    def build(self, input_shape):
        n = len(self.heads)
        self.weight_fraction = self.add_weight(name="fraction", shape=(n,), initializer="zeros")
        self.weight_full = self.add_weight(name="full", shape=(n,), initializer=keras.initializers.Constant(3.0))

    def call(self, tokens):
        if self.shared_ids is not None:
            ids = tokens
        else:
            ids = tf.cast(tf.reduce_any(tf.equal(tf.expand_dims(tokens, 2), self._ids[None, None, :]), axis=1),
                          tf.float32)
        words = _gathered(ids, self._word_forms, tf.reduce_max)
        matched = _gathered(words, self._class_words, tf.reduce_sum)
        # the per-class weights are gathers of constants once exported: the converter folds them
        fraction = tf.gather(self.weight_fraction, self._head_of) * self._inverse_lengths
        full = tf.nn.relu(matched - self._lengths + 1.0) * self._lengths
        logits = matched * fraction + tf.gather(self.weight_full, self._head_of) * full
        return tf.split(logits, self.sizes, axis=1)

    def compute_output_shape(self, input_shape):
        return [tf.TensorShape([input_shape[0], n]) for n in self.sizes]

    def get_config(self):
        shared = {"ids": self.shared_ids} if self.shared_ids is not None else {}
        return {**super().get_config(), "heads": self.heads, **shared}


def _gathered(x, table, reduce):
    """reduce(x[:, table], axis=2); a one-column table is gathered by its column alone: a reduction over one
    element still converts to an op of its own (a few tenths of a microsecond each in an int8 file)."""
    if table.shape[1] == 1:
        return tf.gather(x, table[:, 0], axis=1)
    return reduce(tf.gather(x, table, axis=1), axis=2)


def _padded(rows: list, pad: int) -> np.ndarray:
    width = max(len(r) for r in rows)
    return np.array([r + [pad] * (width - len(r)) for r in rows], np.int32)


from .towers import ExpertMixture  # noqa: E402  (the trunk's mixing layer lives with the trunk)

CUSTOM_OBJECTS = {c.__name__: c for c in (AbsentVector, LogMelSpectrogram, Denormalize, WeightedFusion, GatedFusion,
                                          PositionEmbedding, TokenPresence, LabelNameMatch, LabelNameMatches,
                                          ExpertMixture)}
