"""tf.data pipelines over a split: shard (multi-worker), shuffle, decode streamed media, batch, training-time
augmentation, prefetch.

Both paths shuffle and shard row NUMBERS, then gather the rows from the split's arrays held once as tensors: a
shuffle buffer of rows held a copy of every training row, and a .cache() over in-memory arrays another. Streaming,
the gathered row holds file paths, decoded by a parallel map through the kinds' own load() (data/media.py): both
paths give the same tensors in the same order, and a worker reads only its shard's files.
"""
import math
import os

import numpy as np

from .. import kinds
from ..errors import EdgemtlError
from ..recipe.schema import Recipe
from ..tfk import tf
from ..train.cluster import worker_shard
from .media import MediaColumn

SHUFFLE_WINDOW = 4096  # rows a cached streaming pipeline shuffles within after its first epoch
DECODE_ERROR = "edgemtl cannot decode"  # marks a streamed file that exists but is not readable media


def make_dataset(split, recipe: Recipe, training: bool, batch_size: int, cache_dir=None, shard=None):
    """shard: (workers, this worker's index) to read only this worker's rows; default from TF_CONFIG when training
    under training.distribute multi_worker. cache_dir: where data.cache disk writes (a streaming split only)."""
    if shard is None and training and recipe.training.distribute == "multi_worker":
        shard = worker_shard(os.environ.get("TF_CONFIG"))
    media = _media(split)
    ds = tf.data.Dataset.range(len(split))
    if shard is not None:
        ds = ds.shard(*shard)
    cache = recipe.data.cache if media else "none"
    if training:  # row numbers: the buffer holds no row (a row per element held a copy of the data)
        ds = ds.shuffle(len(split), seed=recipe.seed, reshuffle_each_iteration=cache == "none")
    ds = _rows(ds, split, media)
    if media:
        ds = ds.map(lambda x, y: (_decode(x, media), y), num_parallel_calls=tf.data.AUTOTUNE)
        if cache != "none":
            ds = ds.cache(_cache_file(cache_dir, training) if cache == "disk" else "")
            if training:
                ds = ds.shuffle(SHUFFLE_WINDOW, seed=recipe.seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training:
        augmenters = {i.name: f for i in recipe.inputs if (f := kinds.modality(i.type).augmenter(i)) is not None}
        if augmenters:
            ds = ds.map(lambda x, y: ({k: augmenters[k](v) if k in augmenters else v for k, v in x.items()}, y),
                        num_parallel_calls=tf.data.AUTOTUNE)
    if shard is not None:  # this worker's rows already: tf.distribute must not shard again
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        ds = ds.with_options(options)
    return ds.prefetch(tf.data.AUTOTUNE)


def input_dataset(split, batch_size: int):
    """The split's model inputs in row order, batched: what predict reads (decoded in the pipeline when streaming)."""
    media = _media(split)
    ds = _rows(tf.data.Dataset.range(len(split)), split, media)
    ds = ds.map(lambda x, y: _decode(x, media), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def predict_split(model, split, batch_size: int = 256):
    """model.predict over a split: its arrays as they are, or a streaming pipeline when it holds MediaColumns."""
    if _media(split):
        return model.predict(input_dataset(split, batch_size), verbose=0)
    return model.predict(split.x, batch_size=batch_size, verbose=0)


def _media(split) -> dict:
    return {k: v for k, v in split.x.items() if isinstance(v, MediaColumn)}


def _rows(index, split, media: dict):
    """Row numbers -> (inputs, labels), gathered from the split's arrays held once as tensors; a streamed input is
    its file path here, each distinct path held once and a row holding its index (rows without a file share a
    placeholder's path: most rows, where an optional photo is mostly absent). The same rows, in the same order, as
    slicing the arrays (from_tensor_slices) would give."""
    x = {k: _files(v.paths) if k in media else tf.constant(v) for k, v in split.x.items()}
    y = {k: tf.constant(v) for k, v in split.y.items()}

    def row(i):
        inputs = {k: tf.gather(v[0], tf.gather(v[1], i)) if k in media else tf.gather(v, i) for k, v in x.items()}
        return inputs, {k: tf.gather(v, i) for k, v in y.items()}

    return index.map(row, num_parallel_calls=tf.data.AUTOTUNE)


def _files(paths) -> tuple:
    """(the distinct paths, each row's index into them) as tensors."""
    files, rows = np.unique(np.asarray(paths, dtype=object), return_inverse=True)
    return tf.constant(files, dtype=tf.string), tf.constant(rows.reshape(-1).astype(np.int32))


def _decode(x: dict, media: dict) -> dict:
    out = dict(x)
    for name, column in media.items():
        value = tf.numpy_function(_loader(column), [x[name]], tf.as_dtype(column.dtype), stateful=False)
        value.set_shape(column.row_shape)
        out[name] = value
    return out


def _loader(column: MediaColumn):
    from ..kinds.base import BadInput

    def load(path):
        path = path.decode() if isinstance(path, bytes) else str(path)
        try:
            return column.load(path)
        except BadInput as e:
            raise ValueError(f"{DECODE_ERROR} input '{column.name}': {e}") from None

    return load


def _cache_file(cache_dir, training: bool) -> str:
    if cache_dir is None:
        raise EdgemtlError("data.cache: disk needs a run directory to write its cache in")
    os.makedirs(cache_dir, exist_ok=True)
    return os.path.join(str(cache_dir), "train" if training else "eval")


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    return max(1, math.ceil(n_rows / batch_size))
