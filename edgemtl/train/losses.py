"""Per-task losses that mask rows whose label is missing (-1, or NaN for regression)."""
from ..recipe.schema import TaskSpec
from ..tfk import keras, tf


def _masked_mean(per_row, mask):
    mask = tf.cast(mask, per_row.dtype)
    return tf.reduce_sum(per_row * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def task_loss(task: TaskSpec, label_spec: dict):
    """Return fn(y_true, y_pred) -> scalar loss over the rows that have a label."""
    kind = task.type
    if kind == "multiclass":
        n = len(label_spec["classes"])
        cce = keras.losses.CategoricalCrossentropy(label_smoothing=task.label_smoothing,
                                                   reduction=keras.losses.Reduction.NONE)

        def multiclass(y, p):
            y = tf.cast(tf.reshape(y, [-1]), tf.int32)
            return _masked_mean(cce(tf.one_hot(tf.maximum(y, 0), n), p), y >= 0)
        return multiclass
    if kind in ("binary", "multilabel"):
        def binary(y, p):
            y = tf.reshape(tf.cast(y, tf.float32), tf.shape(p))
            eps = 1e-7
            p = tf.clip_by_value(p, eps, 1 - eps)
            bce = -(tf.maximum(y, 0.0) * tf.math.log(p) + (1 - tf.maximum(y, 0.0)) * tf.math.log(1 - p))
            return _masked_mean(tf.reshape(bce, [-1]), tf.reshape(y >= 0, [-1]))
        return binary
    std = label_spec["std"]
    kind_loss = "mse" if task.loss == "auto" else task.loss

    def regression(y, p):
        y = tf.reshape(tf.cast(y, tf.float32), [-1])
        valid = tf.math.is_finite(y)
        err = (tf.reshape(p, [-1]) - tf.where(valid, y, 0.0)) / std  # on the standardised scale
        if kind_loss == "mae":
            per_row = tf.abs(err)
        elif kind_loss == "huber":
            per_row = tf.where(tf.abs(err) < 1.0, 0.5 * tf.square(err), tf.abs(err) - 0.5)
        else:
            per_row = tf.square(err)
        return _masked_mean(per_row, valid)
    return regression
