"""tf.data pipelines over decoded arrays: cache, shuffle, batch, training-time augmentation, prefetch."""
import dataclasses
import math

from ..recipe.schema import InputSpec, Recipe
from ..tfk import keras, tf


def make_dataset(split, recipe: Recipe, training: bool, batch_size: int):
    ds = tf.data.Dataset.from_tensor_slices((split.x, split.y)).cache()
    if training:
        ds = ds.shuffle(len(split), seed=recipe.seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training:
        augmenters = {i.name: _image_augmenter(i) for i in recipe.inputs
                      if i.type == "image" and any(dataclasses.astuple(i.augment))}
        if augmenters:
            ds = ds.map(lambda x, y: ({k: augmenters[k](v) if k in augmenters else v for k, v in x.items()}, y),
                        num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _image_augmenter(inp: InputSpec):
    """Flip / rotation / crop on uint8 batches; the model only ever sees uint8 pixels, as on a device."""
    aug = inp.augment
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


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    return max(1, math.ceil(n_rows / batch_size))
