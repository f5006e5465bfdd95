"""Multitask loss combinations. Each is one small class with the same interface (LibMTL style):

    combine(task_losses: {task: scalar}) -> total loss
    end_epoch(epoch_losses: {task: float})   called after each epoch with the mean training loss per task
    task_weights() -> {task: float}          the weights in effect, for logs and tests

They are Keras layers so their variables are tracked, trained (uncertainty) and checkpointed (dwa history).
"""
import numpy as np

from ..recipe.schema import LossCombinationSpec
from ..tfk import keras, tf


class LossCombination(keras.layers.Layer):
    def __init__(self, tasks: list, **kwargs):
        super().__init__(**kwargs)
        self.task_names = [t.name for t in tasks]
        self.static = {t.name: float(t.weight) for t in tasks}

    def combine(self, losses: dict):
        raise NotImplementedError

    def end_epoch(self, epoch_losses: dict) -> None:
        pass

    def task_weights(self) -> dict:
        return dict(self.static)


class WeightedSum(LossCombination):
    """sum_i w_i L_i with the recipe's fixed task weights."""

    def combine(self, losses):
        return tf.add_n([self.static[n] * losses[n] for n in self.task_names])


class MaxLoss(LossCombination):
    """max_i w_i L_i: each step trains the task that is currently worst."""

    def combine(self, losses):
        return tf.reduce_max(tf.stack([self.static[n] * losses[n] for n in self.task_names]))


class UncertaintyWeighting(LossCombination):
    """Kendall, Gal & Cipolla 2018: sum_i 0.5 * exp(-s_i) * w_i L_i + 0.5 * s_i, with s_i = log sigma_i^2 learned.

    At the optimum exp(-s_i) = 1 / (w_i L_i): a task with a larger loss gets a smaller weight.
    """

    def __init__(self, tasks, **kwargs):
        super().__init__(tasks, **kwargs)
        self.log_vars = self.add_weight(name="log_vars", shape=(len(self.task_names),), initializer="zeros",
                                        trainable=True)

    def combine(self, losses):
        total = 0.0
        for i, n in enumerate(self.task_names):
            total += 0.5 * tf.exp(-self.log_vars[i]) * self.static[n] * losses[n] + 0.5 * self.log_vars[i]
        return total

    def task_weights(self):
        s = self.log_vars.numpy()
        return {n: float(0.5 * np.exp(-s[i]) * self.static[n]) for i, n in enumerate(self.task_names)}


class DynamicWeightAverage(LossCombination):
    """Liu, Johns & Davison 2019: w_i(t) = K * softmax_i(r_i / T), r_i = L_i(t-1) / L_i(t-2); w = 1 for two epochs."""

    def __init__(self, tasks, temperature: float = 2.0, **kwargs):
        super().__init__(tasks, **kwargs)
        self.temperature = temperature
        k = len(self.task_names)
        self.weights_var = self.add_weight(name="weights", shape=(k,), initializer="ones", trainable=False)
        self.history = self.add_weight(name="history", shape=(2, k), initializer="zeros", trainable=False)
        self.epochs_seen = self.add_weight(name="epochs_seen", shape=(), initializer="zeros", trainable=False)

    def combine(self, losses):
        return tf.add_n([self.weights_var[i] * self.static[n] * losses[n] for i, n in enumerate(self.task_names)])

    def end_epoch(self, epoch_losses):
        latest = np.array([epoch_losses[n] for n in self.task_names], dtype=np.float32)
        history = self.history.numpy()
        history = np.stack([history[1], latest])  # [L(t-1), L(t)] after this epoch
        seen = int(self.epochs_seen.numpy()) + 1
        self.history.assign(history)
        self.epochs_seen.assign(seen)
        if seen >= 2:
            self.weights_var.assign(dwa_weights(history[1], history[0], self.temperature))

    def task_weights(self):
        w = self.weights_var.numpy()
        return {n: float(w[i] * self.static[n]) for i, n in enumerate(self.task_names)}


def dwa_weights(last: np.ndarray, before: np.ndarray, temperature: float) -> np.ndarray:
    ratios = last / np.maximum(before, 1e-12)
    e = np.exp(ratios / temperature)
    return (len(ratios) * e / e.sum()).astype(np.float32)


COMBINATIONS = {"sum": WeightedSum, "max": MaxLoss, "uncertainty": UncertaintyWeighting, "dwa": DynamicWeightAverage}


def make_combination(spec: LossCombinationSpec, tasks: list) -> LossCombination:
    cls = COMBINATIONS[spec.type]
    if cls is DynamicWeightAverage:
        return cls(tasks, temperature=spec.temperature, name="loss_combination")
    return cls(tasks, name="loss_combination")
