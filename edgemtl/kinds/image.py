"""Image input: uint8 pixels [height, width, channels] at the recipe's size (scaling to [0, 1] happens in the graph)."""
import numpy as np

from .. import preprocess
from .base import BadInput, ModalityKind, decode_files


class ImageKind(ModalityKind):
    name = "image"
    dtype = "uint8"
    default_encoder = "cnn"
    media = True

    def input_shape(self, spec) -> tuple:
        return (*spec.size, spec.channels)

    def preprocess_entry(self, spec) -> dict:
        return {"size": list(spec.size), "channels": spec.channels}

    @staticmethod
    def load(pre: dict, source) -> np.ndarray:
        """The one image decoder: path, bytes, PIL image or array -> uint8 [h, w, c] (training and runtime)."""
        return preprocess.load_image(source, pre["size"], pre["channels"])

    def decode(self, spec, table, tokenizer=None) -> tuple[np.ndarray, dict]:
        pre = self.preprocess_entry(spec)
        return decode_files(spec, table, self.input_shape(spec), np.uint8, lambda path: self.load(pre, path))

    def _prepare(self, entry: dict, value, rate, **resources) -> np.ndarray:
        if isinstance(value, np.ndarray) and not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
            raise BadInput(f"image array has dtype {value.dtype}; expected numbers (uint8 0-255 or float 0-1)")
        return self.load(entry["preprocess"], value)

    # -- TF half --------------------------------------------------------------------------------------------------
    def encoders(self) -> dict:
        from ..models.encoders import image

        return image.ENCODERS

    def augmenter(self, spec):
        """Flip / rotation / crop on uint8 batches; the model only ever sees uint8 pixels, as on a device."""
        aug = spec.augment
        if not (aug.flip or aug.rotation or aug.crop):
            return None
        from ..tfk import keras, tf

        layers = []
        if aug.flip:
            layers.append(keras.layers.RandomFlip("horizontal"))
        if aug.rotation:
            layers.append(keras.layers.RandomRotation(aug.rotation, fill_mode="constant"))
        if aug.crop:
            layers.append(keras.layers.RandomZoom((-aug.crop, 0.0), fill_mode="constant"))

        def apply(images):
            x = tf.cast(images, tf.float32)
            for layer in layers:
                x = layer(x, training=True)
            return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)

        return apply

    def mix(self, v, other, w):
        """Pixels mix linearly and stay uint8 (rounded)."""
        from ..tfk import tf

        mixed = w * tf.cast(v, tf.float32) + (1 - w) * tf.cast(other, tf.float32)
        return tf.cast(tf.round(mixed), v.dtype)
