"""Train a multitask model: a thin Keras model around the functional net with a custom train step.

The functional net stays a plain Keras model (what is saved and exported); the wrapper holds the masked per-task
losses and the loss combination so that `fit` gives progress, callbacks, distribution and resumable checkpoints.
"""
from .. import kinds
from ..models.heads import unmatched_name, unmatched_view
from ..recipe.schema import TrainingSpec
from ..tfk import keras, tf


class MultitaskTrainer(keras.Model):
    def __init__(self, net, tasks: list, labels: dict, combination, unmatched: bool = False):
        super().__init__(name="trainer")
        self.net = net
        self.task_names = [t.name for t in tasks]
        self.loss_fns = {t.name: kinds.task_kind(t.type).loss(t, labels[t.name]) for t in tasks}
        # tasks whose head's own logits are also trained without the label match (task.unmatched_weight)
        with_unmatched = [t for t in tasks if unmatched and t.unmatched_weight]
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
        x, y = data
        with tf.GradientTape() as tape:
            total, losses = self._forward(x, y, training=True)
            # fit sums gradients over replicas: scale so the update is the mean.
            scaled = total / tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.trained_variables()
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
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
