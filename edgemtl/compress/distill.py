"""Multi-head knowledge distillation: each task's loss blends the teacher's soft targets with the labels.

multiclass: KL(teacher || student) of the temperature-softened distributions, times T^2 (Hinton et al. 2015);
binary / multilabel: per-label binary cross-entropy to the softened teacher probabilities, times T^2;
regression: squared distance to the teacher's prediction on the standardised scale.
The hard (label) loss masks rows without a label; the soft loss uses every row, so unlabelled rows still learn.
With `mixup`, the student also matches the teacher on mixed pairs of training inputs, where no label exists
("function matching", Beyer et al. 2022): the teacher's answers away from the training points.
"""
from ..recipe.schema import DistillSpec, TaskSpec
from ..models.heads import head_dense
from ..tfk import keras, tf
from ..train.trainer import MultitaskTrainer

EPS = 1e-7


def _logits(p, kind: str):
    """Heads output probabilities: recover logits (up to a per-row constant for softmax, which T leaves alone)."""
    p = tf.clip_by_value(p, EPS, 1 - EPS) if kind != "multiclass" else tf.maximum(p, EPS)
    return tf.math.log(p) if kind == "multiclass" else tf.math.log(p) - tf.math.log(1 - p)


def soft_loss(task: TaskSpec, label_spec: dict, temperature: float):
    kind = task.type
    if kind == "regression":
        std = label_spec["std"]
        return lambda t, s: tf.reduce_mean(tf.square((tf.reshape(s, [-1]) - tf.reshape(t, [-1])) / std))
    t2 = temperature ** 2

    def multiclass(t, s):
        log_t = tf.nn.log_softmax(_logits(t, kind) / temperature)
        log_s = tf.nn.log_softmax(_logits(s, kind) / temperature)
        return t2 * tf.reduce_mean(tf.reduce_sum(tf.exp(log_t) * (log_t - log_s), axis=-1))

    def binary(t, s):
        target = tf.sigmoid(_logits(t, kind) / temperature)
        z = _logits(s, kind) / temperature
        return t2 * tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=z))

    return multiclass if kind == "multiclass" else binary


def task_settings(distill: DistillSpec, task_name: str) -> tuple[float, float]:
    """(temperature, alpha) of one task: its own where the recipe sets them, else the global ones."""
    own = distill.tasks.get(task_name)
    t = own.temperature if own else None
    a = own.alpha if own else None
    return (distill.temperature if t is None else t), (distill.alpha if a is None else a)


def shared_representation(net):
    """The tensor every head reads (the trunk's output): the input of the first task's head Dense layer."""
    return head_dense(net, net.output_names[0]).input


class DistillTrainer(MultitaskTrainer):
    """MultitaskTrainer whose per-task losses also learn from a frozen teacher; the combination applies on top."""

    def __init__(self, net, tasks: list, labels: dict, combination, teacher, distill: DistillSpec):
        super().__init__(net, tasks, labels, combination)
        teacher.trainable = False
        self.teacher = teacher
        self.settings = {t.name: task_settings(distill, t.name) for t in tasks}
        self.soft_fns = {t.name: soft_loss(t, labels[t.name], self.settings[t.name][0]) for t in tasks}
        self.hint = distill.hint
        if self.hint:
            self.student_view = keras.Model(net.inputs, [net.output, shared_representation(net)])
            self.teacher_view = keras.Model(teacher.inputs, [teacher.output, shared_representation(teacher)])
            self.projection = keras.layers.Dense(self.teacher_view.outputs[-1].shape[-1], name="hint_projection")
            self.projection.build(self.student_view.outputs[-1].shape)
        self.hint_tracker = keras.metrics.Mean(name="hint_loss")
        self.mixup = distill.mixup

    @property
    def metrics(self):
        return super().metrics + ([self.hint_tracker] if self.hint else [])

    def _forward(self, x, y, training):
        if self.hint:
            t_pred, t_feat = self.teacher_view(x, training=False)
            pred, s_feat = self.student_view(x, training=training)
        else:
            t_pred, pred = self.teacher(x, training=False), self.net(x, training=training)
        losses = {}
        for n in self.task_names:
            alpha = self.settings[n][1]
            hard = self.loss_fns[n](y[n], pred[n])
            losses[n] = (1 - alpha) * hard + alpha * self.soft_fns[n](tf.stop_gradient(t_pred[n]), pred[n])
        if training and self.mixup:
            mixed = mix_inputs(x)
            t_mix, s_mix = self.teacher(mixed, training=False), self.net(mixed, training=True)
            for n in self.task_names:
                losses[n] += self.mixup * self.soft_fns[n](tf.stop_gradient(t_mix[n]), s_mix[n])
        total = self.combination.combine(losses)
        if self.net.losses:
            total += tf.add_n(self.net.losses)
        if self.hint:
            hint = tf.reduce_mean(tf.square(self.projection(s_feat) - tf.stop_gradient(t_feat)))
            self.hint_tracker.update_state(hint)
            total += self.hint * hint
        return total, losses

    def trained_variables(self) -> list:
        return super().trained_variables() + (self.projection.trainable_variables if self.hint else [])


def mix_inputs(x: dict) -> dict:
    """Each row blended with another row of the batch, one weight per row for every input: numbers and pixels
    mix linearly (pixels stay uint8); token ids cannot mix, so a row keeps the tokens of its larger share."""
    batch = tf.shape(next(iter(x.values())))[0]
    partner = tf.random.shuffle(tf.range(batch))
    lam = tf.random.uniform([batch])
    out = {}
    for name, v in x.items():
        other = tf.gather(v, partner)
        w = tf.reshape(lam, [-1] + [1] * (len(v.shape) - 1))
        if v.dtype.is_integer and v.dtype != tf.uint8:
            out[name] = tf.where(w >= 0.5, v, other)
        else:
            mixed = w * tf.cast(v, tf.float32) + (1 - w) * tf.cast(other, tf.float32)
            out[name] = tf.cast(tf.round(mixed), v.dtype) if v.dtype == tf.uint8 else tf.cast(mixed, v.dtype)
    return out
