"""tf.data pipelines over decoded arrays: cache, shuffle, batch, training-time augmentation, prefetch."""
import math

from .. import kinds
from ..recipe.schema import Recipe
from ..tfk import tf


def make_dataset(split, recipe: Recipe, training: bool, batch_size: int):
    ds = tf.data.Dataset.from_tensor_slices((split.x, split.y)).cache()
    if training:
        ds = ds.shuffle(len(split), seed=recipe.seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training:
        augmenters = {i.name: f for i in recipe.inputs if (f := kinds.modality(i.type).augmenter(i)) is not None}
        if augmenters:
            ds = ds.map(lambda x, y: ({k: augmenters[k](v) if k in augmenters else v for k, v in x.items()}, y),
                        num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    return max(1, math.ceil(n_rows / batch_size))
