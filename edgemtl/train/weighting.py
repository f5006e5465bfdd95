"""Multitask loss combinations. Each is one small class with the same interface (LibMTL style):

    combine(task_losses: {task: scalar}) -> total loss
    end_epoch(epoch_losses: {task: float})   called after each epoch with the mean training loss per task
    task_weights() -> {task: float}          the weights in effect, for logs and tests

They are Keras layers so their variables are tracked, trained (uncertainty) and checkpointed (dwa history).

Gradient methods (GradientCombination: pcgrad, gradnorm, cagrad) also see each task's gradient of the shared
variables: the trainer takes one backward pass per task and asks them for

    coefficients(gram, last_norms, losses, step) -> [T]   the shared update is sum_t coefficient_t * g_t
    head_scales() -> [T]                                  the factor on each task's own (head) gradient

where g_t is the gradient of task t's weighted loss (w_t L_t, the recipe's task weight) with respect to the shared
variables, gram[s, t] = g_s . g_t, last_norms[t] = |g_t| over the last shared layer's variables and losses[t] = L_t.
Every method works in the T-dimensional span of the task gradients, so no [T, P] matrix is ever built.
"""
import numpy as np

from ..recipe.schema import LossCombinationSpec
from ..tfk import keras, tf


class LossCombination(keras.layers.Layer):
    uses_task_gradients = False  # True: a gradient method (the trainer takes one backward pass per task)

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


class GradientCombination(LossCombination):
    """A combination of the tasks' gradients of the shared variables (module docstring); the loss it reports is
    the weighted sum (times head_scales)."""

    uses_task_gradients = True

    def combine(self, losses):
        scales = self.head_scales()
        return tf.add_n([scales[i] * self.static[n] * losses[n] for i, n in enumerate(self.task_names)])

    def head_scales(self):
        return tf.ones([len(self.task_names)])

    def coefficients(self, gram, last_norms, losses, step):
        raise NotImplementedError


class PCGrad(GradientCombination):
    """Yu et al. 2020, gradient surgery: each task's gradient, in a random order of the others drawn anew per task
    and step, loses its component along every task gradient it conflicts with (negative dot product), projected
    against the original gradients; the update is the sum of the projected gradients."""

    def coefficients(self, gram, last_norms, losses, step):
        return pcgrad_coefficients(gram, tf.cast(step, tf.int32))


def pcgrad_coefficients(gram, step, eps: float = 1e-12):
    """PCGrad in the span of the task gradients: projected g_i = sum_k a[i, k] g_k, so g_i^PC . g_j = a_i . gram[:, j].
    The orders come from a stateless draw seeded by the step (every replica draws the same)."""
    t = gram.shape[0]
    total = tf.zeros([t], gram.dtype)
    eye = tf.eye(t, dtype=gram.dtype)
    for i in range(t):
        order = tf.argsort(tf.random.stateless_uniform([t], seed=tf.stack([step, tf.constant(i, tf.int32)])))
        a = eye[i]
        for k in range(t):
            j = order[k]
            dot = tf.reduce_sum(a * gram[:, j])
            a = a - tf.minimum(dot, 0.0) / (gram[j, j] + eps) * eye[j]
        total += a
    return total


class GradNorm(GradientCombination):
    """Chen et al. 2018: task weights w_i (sum T, start 1) trained so that the gradient norms G_i = w_i |g_i| at the
    last shared layer approach mean(G) * r_i^alpha, r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0)): a task whose loss
    falls slower gets a larger gradient. Each step: the update uses the current weights, then the weights take one
    gradient step of the GradNorm loss sum_i |G_i - target_i| (targets held constant, divided by mean(G) so the rate
    is scale-free), are clipped positive and renormalised to sum to T. L_i(0): a task's first non-zero loss."""

    def __init__(self, tasks, alpha: float = 1.5, learning_rate: float = 0.025, **kwargs):
        super().__init__(tasks, **kwargs)
        self.alpha, self.learning_rate = alpha, learning_rate
        k = len(self.task_names)
        # assigned inside the replicated train step: every replica computes the same value
        shared = {"synchronization": tf.VariableSynchronization.ON_WRITE,
                  "aggregation": tf.VariableAggregation.ONLY_FIRST_REPLICA}
        self.weights_var = self.add_weight(name="weights", shape=(k,), initializer="ones", trainable=False, **shared)
        self.initial = self.add_weight(name="initial_losses", shape=(k,), initializer="zeros", trainable=False,
                                       **shared)

    def head_scales(self):
        return tf.convert_to_tensor(self.weights_var)

    def coefficients(self, gram, last_norms, losses, step):
        w = tf.convert_to_tensor(self.weights_var)
        initial = tf.where(self.initial > 0, self.initial, losses)
        self.initial.assign(initial)
        self.weights_var.assign(gradnorm_step(w, last_norms, losses, initial, self.alpha, self.learning_rate))
        return w

    def task_weights(self):
        w = self.weights_var.numpy()
        return {n: float(w[i] * self.static[n]) for i, n in enumerate(self.task_names)}


def gradnorm_step(w, norms, losses, initial, alpha: float, learning_rate: float, eps: float = 1e-12):
    """The task weights after one GradNorm step (see GradNorm)."""
    t = tf.cast(tf.size(w), w.dtype)
    ratio = losses / tf.maximum(initial, eps)
    r = ratio / tf.maximum(tf.reduce_mean(ratio), eps)
    g = w * norms
    mean_g = tf.reduce_mean(g)
    target = tf.stop_gradient(mean_g * r ** alpha)
    grad = tf.sign(g - target) * norms / tf.maximum(mean_g, eps)
    w = tf.maximum(w - learning_rate * grad, 1e-3)
    return t * w / tf.reduce_sum(w)


class CAGrad(GradientCombination):
    """Liu et al. 2021, conflict-averse gradient: d = g0 + (sqrt(phi) / |g_w|) g_w with g0 the mean task gradient,
    phi = c^2 |g0|^2 and w on the task simplex minimising g_w . g0 + sqrt(phi) |g_w| (the dual, solved on the Gram
    matrix by exponentiated gradient descent); rescaled by 1 / (1 + c^2) as the authors' code does, and by T so
    that c = 0 is the sum of the task gradients (the `sum` update)."""

    def __init__(self, tasks, c: float = 0.5, **kwargs):
        super().__init__(tasks, **kwargs)
        self.c = c

    def coefficients(self, gram, last_norms, losses, step):
        return cagrad_coefficients(gram, self.c)


def cagrad_coefficients(gram, c: float, iterations: int = 200, eps: float = 1e-12):
    t = gram.shape[0]
    mean = tf.fill([t], 1.0 / t)
    if c == 0:
        return mean * t
    w = cagrad_dual(gram, c, iterations, eps)
    root_phi = c * tf.sqrt(tf.maximum(tf.tensordot(mean, tf.linalg.matvec(gram, mean), 1), 0.0) + eps)
    gw_norm = tf.sqrt(tf.maximum(tf.tensordot(w, tf.linalg.matvec(gram, w), 1), 0.0) + eps)
    return (mean + root_phi / gw_norm * w) * t / (1.0 + c * c)


@tf.function  # a graph also when called eagerly (200 eager loop steps take seconds); one trace per T
def cagrad_dual(gram, c: float, iterations: int = 200, eps: float = 1e-12):
    """argmin over the simplex of F(w) = w . (gram b) + c |g0| sqrt(w' gram w), b = 1/T (convex): exponentiated
    gradient with steps 1/sqrt(k+1) on the gradient scaled to max 1, keeping the best iterate."""
    t = gram.shape[0]
    b = tf.fill([t], 1.0 / t)
    gb = tf.linalg.matvec(gram, b)
    scale = c * tf.sqrt(tf.maximum(tf.tensordot(b, gb, 1), 0.0) + eps)

    def objective(w):
        return tf.tensordot(w, gb, 1) + scale * tf.sqrt(tf.maximum(tf.tensordot(w, tf.linalg.matvec(gram, w), 1),
                                                                   0.0) + eps)

    def body(k, w, best, best_value):
        quad = tf.sqrt(tf.maximum(tf.tensordot(w, tf.linalg.matvec(gram, w), 1), 0.0) + eps)
        grad = gb + scale * tf.linalg.matvec(gram, w) / quad
        grad = grad / (tf.reduce_max(tf.abs(grad)) + eps)
        w = w * tf.exp(-grad / tf.sqrt(tf.cast(k, gram.dtype) + 1.0))
        w = w / tf.reduce_sum(w)
        value = objective(w)
        better = value < best_value
        return k + 1, w, tf.where(better, w, best), tf.where(better, value, best_value)

    _, _, best, _ = tf.while_loop(lambda k, *_: k < iterations, body, (tf.constant(0), b, b, objective(b)))
    return best


COMBINATIONS = {"sum": WeightedSum, "max": MaxLoss, "uncertainty": UncertaintyWeighting, "dwa": DynamicWeightAverage,
                "pcgrad": PCGrad, "gradnorm": GradNorm, "cagrad": CAGrad}


def make_combination(spec: LossCombinationSpec, tasks: list) -> LossCombination:
    cls = COMBINATIONS[spec.type]
    if cls is DynamicWeightAverage:
        return cls(tasks, temperature=spec.temperature, name="loss_combination")
    if cls is GradNorm:
        return cls(tasks, alpha=spec.alpha, learning_rate=spec.gradnorm_lr, name="loss_combination")
    if cls is CAGrad:
        return cls(tasks, c=spec.c, name="loss_combination")
    return cls(tasks, name="loss_combination")
