"""Multiclass task: one class per row; softmax head, argmax decision, accuracy as the normalised score."""
from collections.abc import Mapping

import numpy as np

from .base import ClassTaskKind, Scores, flat, masked_mean, python_floats, score_index, softmax_kl


class MulticlassKind(ClassTaskKind):
    name = "multiclass"
    decode_rule = "argmax"
    activation = "softmax"
    supports_label_match = True

    def decide(self, output: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        return np.asarray(output).argmax(axis=-1)

    def answerer(self, entry: Mapping):
        labels = entry["labels"]
        index = score_index(labels)

        def answer(output: np.ndarray) -> dict:
            out = flat(output)
            best = int(out.argmax())
            scores = python_floats(out)
            return {"label": labels[best], "score": scores[best], "scores": Scores(index, scores)}
        return answer

    # -- TF half --------------------------------------------------------------------------------------------------
    def loss(self, spec, label_info: Mapping):
        from ..tfk import keras, tf

        n = self.n_outputs(label_info)
        cce = keras.losses.CategoricalCrossentropy(label_smoothing=spec.label_smoothing,
                                                   reduction=keras.losses.Reduction.NONE)

        def multiclass(y, p):
            y = tf.cast(tf.reshape(y, [-1]), tf.int32)
            return masked_mean(cce(tf.one_hot(tf.maximum(y, 0), n), p), y >= 0)
        return multiclass

    def soft_loss(self, spec, label_info: Mapping, temperature: float):
        """KL(teacher || student) of the temperature-softened distributions, times T^2 (Hinton et al. 2015)."""
        return softmax_kl(temperature)
