"""Train a multitask model: a thin Keras model around the functional net with a custom train step.

The functional net stays a plain Keras model (what is saved and exported); the wrapper holds the masked per-task
losses and the loss combination so that `fit` gives progress, callbacks, distribution and resumable checkpoints.
"""
from .. import kinds
from ..models.heads import unmatched_name, unmatched_view
from ..models.towers import last_shared
from ..recipe.schema import TrainingSpec
from ..tfk import keras, tf


class MultitaskTrainer(keras.Model):
    def __init__(self, net, tasks: list, labels: dict, combination, unmatched: bool = False):
        super().__init__(name="trainer")
        self.net = net
        self.task_names = [t.name for t in tasks]
        self.loss_fns = {t.name: kinds.task_kind(t.type).loss(t, labels[t.name]) for t in tasks}
        # tasks whose head's own logits are also trained without the label match (task.unmatched_weight)
        # (a head built without its match, no class name being in the vocabulary, has nothing to leave out)
        own_logits = {x.name for x in net.layers}
        with_unmatched = [t for t in tasks if unmatched and t.unmatched_weight and f"{t.name}_logits" in own_logits]
        self.unmatched = {t.name: t.unmatched_weight for t in with_unmatched}
        self.train_view = unmatched_view(net, with_unmatched) if with_unmatched else net
        self.combination = combination
        self.trackers = {n: keras.metrics.Mean(name=f"{n}_loss") for n in self.task_names}
        self.total_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.total_tracker, *self.trackers.values()]

    def call(self, x, training=False):
        return self.net(x, training=training)

    def _forward(self, x, y, training):
        pred = self.train_view(x, training=training)
        losses = {n: self.loss_fns[n](y[n], pred[n]) for n in self.task_names}
        for n, weight in self.unmatched.items():
            losses[n] += weight * self.loss_fns[n](y[n], pred[unmatched_name(n)])
        total = self.combination.combine(losses)
        if self.net.losses:
            total += tf.add_n(self.net.losses)
        return total, losses

    def train_step(self, data):
        if self.combination.uses_task_gradients:
            return self._task_gradient_step(data)
        x, y = data
        with tf.GradientTape() as tape:
            total, losses = self._forward(x, y, training=True)
            # fit sums gradients over replicas: scale so the update is the mean.
            scaled = total / tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.trained_variables()
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return self._track(total, losses)

    def _task_gradient_step(self, data):
        """A gradient method's step: one backward pass per task. A variable that two or more tasks' losses reach
        is shared and gets the method's combination of their gradients; one that a single task reaches (its head,
        its tower, its gate) gets that task's gradient (times the method's head scale). Under a distribution
        strategy the task gradients are summed over the replicas first, so every replica combines the same global
        gradients (and applies 1/replicas of the result, which apply_gradients sums back)."""
        x, y = data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.trained_variables()
        with tf.GradientTape(persistent=True) as tape:
            total, losses = self._forward(x, y, training=True)
            weighted = [self.combination.static[n] * losses[n] / replicas for n in self.task_names]
            # what the total holds beside the task losses (regularization, a distillation hint): plain gradients
            rest = (total - self.combination.combine(losses)) / replicas
        per_task = [tape.gradient(w, variables) for w in weighted]
        extra = tape.gradient(rest, variables)
        del tape
        users = [[t for t, g in enumerate(per_task) if g[k] is not None] for k in range(len(variables))]
        shared = [k for k, u in enumerate(users) if len(u) > 1]
        loss_vector = tf.stack([losses[n] for n in self.task_names])
        grads = [[_dense(per_task[t][k]) if per_task[t][k] is not None else tf.zeros_like(variables[k])
                  for k in shared] for t in range(len(per_task))]
        if replicas > 1:
            context = tf.distribute.get_replica_context()
            flat = context.all_reduce("sum", [g for task in grads for g in task] + [loss_vector / replicas])
            loss_vector, flat = flat[-1], flat[:-1]
            grads = [flat[t * len(shared):(t + 1) * len(shared)] for t in range(len(per_task))]
        gram = tf.add_n([_gram([task[i] for task in grads]) for i in range(len(shared))]) if shared else None
        last = {id(v) for v in last_shared([variables[k] for k in shared])}
        last_at = [i for i, k in enumerate(shared) if id(variables[k]) in last]
        last_norms = tf.sqrt(tf.linalg.diag_part(tf.add_n([_gram([task[i] for task in grads]) for i in last_at]))) \
            if last_at else tf.zeros([len(per_task)])
        scales = self.combination.head_scales()  # read before coefficients() may update them (gradnorm)
        coefficients = (self.combination.coefficients(gram, last_norms, loss_vector, self.optimizer.iterations)
                        if shared else None)
        update = [None] * len(variables)
        for i, k in enumerate(shared):
            update[k] = tf.add_n([coefficients[t] * grads[t][i] for t in range(len(per_task))]) / replicas
        for k, u in enumerate(users):
            if len(u) == 1:
                update[k] = scales[u[0]] * _dense(per_task[u[0]][k])
            if extra[k] is not None:
                update[k] = _dense(extra[k]) if update[k] is None else update[k] + _dense(extra[k])
        pairs = [(g, v) for g, v in zip(update, variables) if g is not None]
        self.optimizer.apply_gradients(pairs)
        return self._track(total, losses)

    def trained_variables(self) -> list:
        return self.net.trainable_variables + self.combination.trainable_variables

    def test_step(self, data):
        x, y = data
        total, losses = self._forward(x, y, training=False)
        return self._track(total, losses)

    def _track(self, total, losses):
        self.total_tracker.update_state(total)
        for n, value in losses.items():
            self.trackers[n].update_state(value)
        return {m.name: m.result() for m in self.metrics}


def _dense(gradient):
    """An embedding's IndexedSlices gradient as a dense tensor (the methods take dot products of gradients)."""
    return tf.convert_to_tensor(gradient)


def _gram(gradients: list):
    """[T, T] dot products of one variable's per-task gradients."""
    flat = tf.stack([tf.reshape(g, [-1]) for g in gradients])
    return tf.matmul(flat, flat, transpose_b=True)


def make_optimizer(training: TrainingSpec, steps_per_epoch: int):
    lr = training.learning_rate
    total_steps = max(1, training.epochs * steps_per_epoch)
    if training.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=total_steps, alpha=0.05)
    elif training.schedule == "exponential":
        lr = keras.optimizers.schedules.ExponentialDecay(lr, decay_steps=steps_per_epoch, decay_rate=0.9)
    name = training.optimizer
    if name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=training.weight_decay)
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9)
    return {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}[name](lr)


def make_strategy(kind: str):
    """none: default; mirrored: all GPUs, or the CPU split into 2 logical devices; multi_worker: TF_CONFIG."""
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:
        pass  # TensorFlow already started: use the logical devices it has
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
