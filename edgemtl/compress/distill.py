"""Multi-head knowledge distillation: each task's loss blends the teacher's soft targets with the labels.

Each task kind's soft_loss (edgemtl.kinds) says how its student output matches the teacher's (KL of softened
distributions, per-label BCE, or squared distance for regression). The hard (label) loss masks rows without a
label; the soft loss uses every row, so unlabelled rows still learn. With `mixup`, the student also matches the
teacher on mixed pairs of training inputs, where no label exists ("function matching", Beyer et al. 2022): the
teacher's answers away from the training points; each input mixes by its modality kind's rule.

Cost: the teacher runs once per step. Where a split's inputs are fixed (no augmentation: always the validation
split, the training split when no input augments), its answers are computed once before training (teacher_targets)
and ride in the labels under TEACHER_KEY names; otherwise the clean and the mixed batch go through the teacher in one
call. `mixup_epochs` runs the mixup pass (a second student forward and backward) on only a fraction of the epochs.
"""
from collections.abc import Mapping

from .. import kinds
from ..models.heads import head_input
from ..recipe.schema import DistillSpec
from ..tfk import keras, tf
from ..train.trainer import MultitaskTrainer


def task_settings(distill: DistillSpec, task_name: str) -> tuple[float, float]:
    """(temperature, alpha) of one task: its own where the recipe sets them, else the global ones."""
    own = distill.tasks.get(task_name)
    t = own.temperature if own else None
    a = own.alpha if own else None
    return (distill.temperature if t is None else t), (distill.alpha if a is None else a)


def shared_representation(net, task):
    """The tensor every head reads (the trunk's output), found through `task`'s head (its kind's shared_reader:
    a dense head's gate, not its convolutions over feature maps)."""
    return head_input(net, task.name, kinds.task_kind(task.type).shared_reader)


TEACHER_KEY = "~teacher/"  # labels key prefix of a task's cached teacher output ("~teacher/hint": the features)
HINT_KEY = TEACHER_KEY + "hint"


def teacher_key(task_name: str) -> str:
    return TEACHER_KEY + task_name


def mixup_epoch(epoch, fraction: float):
    """Whether 0-based `epoch` runs the mixup pass: `fraction` of the epochs, spread evenly (0.5: every other one,
    the second first). Works on Python ints and on TF tensors."""
    return tf.math.floor(tf.cast(epoch + 1, tf.float32) * fraction) > tf.math.floor(tf.cast(epoch, tf.float32)
                                                                                    * fraction)


def teacher_targets(teacher, dataset, tasks: list, hint: bool) -> dict:
    """The teacher's outputs on every row of an unshuffled, unaugmented dataset, under teacher_key names (and
    HINT_KEY: its shared representation, with a hint); computed once, they replace its forward pass in each step."""
    import numpy as np

    view = keras.Model(teacher.inputs, [teacher.output, shared_representation(teacher, tasks[0])]) if hint else teacher
    parts = []
    for x, _ in dataset:
        out = view(x, training=False)
        pred, feat = out if hint else (out, None)
        parts.append({**{teacher_key(t.name): pred[t.name].numpy() for t in tasks},
                      **({HINT_KEY: feat.numpy()} if hint else {})})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class DistillTrainer(MultitaskTrainer):
    """MultitaskTrainer whose per-task losses also learn from a frozen teacher; the combination applies on top."""

    def __init__(self, net, tasks: list, labels: dict, combination, teacher, distill: DistillSpec,
                 modalities: Mapping[str, str] | None = None, steps_per_epoch: int = 1):
        """modalities: input name -> modality name (needed with mixup: each input mixes by its kind's rule).
        steps_per_epoch: where the mixup pass runs on a fraction of the epochs (distill.mixup_epochs)."""
        super().__init__(net, tasks, labels, combination)
        teacher.trainable = False
        self.teacher = teacher
        self.settings = {t.name: task_settings(distill, t.name) for t in tasks}
        self.soft_fns = {t.name: kinds.task_kind(t.type).soft_loss(t, labels[t.name], self.settings[t.name][0])
                         for t in tasks}
        self.hint = distill.hint
        if self.hint:
            self.student_view = keras.Model(net.inputs, [net.output, shared_representation(net, tasks[0])])
            self.teacher_view = keras.Model(teacher.inputs, [teacher.output, shared_representation(teacher, tasks[0])])
            self.projection = keras.layers.Dense(self.teacher_view.outputs[-1].shape[-1], name="hint_projection")
            self.projection.build(self.student_view.outputs[-1].shape)
        self.hint_tracker = keras.metrics.Mean(name="hint_loss")
        self.mixup = distill.mixup
        if self.mixup and modalities is None:
            raise ValueError("DistillTrainer: mixup needs the inputs' modalities")
        self.modalities = modalities
        self.mixup_epochs, self.steps_per_epoch = distill.mixup_epochs, max(1, steps_per_epoch)

    @property
    def metrics(self):
        return super().metrics + ([self.hint_tracker] if self.hint else [])

    def _teacher(self, x, y):
        """The teacher's (outputs, features or None) on x: the cached ones where the labels carry them."""
        names = self.task_names
        if teacher_key(names[0]) in y and (HINT_KEY in y or not self.hint):
            return {n: y[teacher_key(n)] for n in names}, y.get(HINT_KEY)
        if self.hint:
            return self.teacher_view(x, training=False)
        return self.teacher(x, training=False), None

    def _mixup_on(self, training: bool):
        """True, False, or (on a fraction of the epochs) a boolean tensor of this step's epoch."""
        if not (training and self.mixup and self.mixup_epochs):
            return False
        if self.mixup_epochs >= 1:
            return True
        return mixup_epoch(self.optimizer.iterations // self.steps_per_epoch, self.mixup_epochs)

    def _forward(self, x, y, training):
        mix_on = self._mixup_on(training)
        cached = teacher_key(self.task_names[0]) in y
        mixed = kinds.mix_batch(x, self.modalities) if mix_on is True else None  # else mixed inside the tf.cond
        t_mix = None
        if mix_on is True and not cached and not self.hint:  # clean and mixed rows in one teacher call
            rows = tf.shape(next(iter(x.values())))[0]
            both = self.teacher({k: tf.concat([x[k], mixed[k]], 0) for k in x}, training=False)
            t_pred = {n: both[n][:rows] for n in self.task_names}
            t_mix = {n: both[n][rows:] for n in self.task_names}
            t_feat = None
        else:
            t_pred, t_feat = self._teacher(x, y)
        pred, s_feat = self.student_view(x, training=training) if self.hint else (self.net(x, training=training), None)
        losses = {}
        for n in self.task_names:
            alpha = self.settings[n][1]
            hard = self.loss_fns[n](y[n], pred[n])
            losses[n] = (1 - alpha) * hard + alpha * self.soft_fns[n](tf.stop_gradient(t_pred[n]), pred[n])
        if mix_on is not False:
            extra = self._mixup_losses(mixed, t_mix) if mix_on is True else tf.cond(
                mix_on, lambda: self._mixup_losses(kinds.mix_batch(x, self.modalities)),
                lambda: {n: tf.constant(0.0) for n in self.task_names})
            for n in self.task_names:
                losses[n] += self.mixup * extra[n]
        total = self.combination.combine(losses)
        if self.net.losses:
            total += tf.add_n(self.net.losses)
        if self.hint:
            hint = tf.reduce_mean(tf.square(self.projection(s_feat) - tf.stop_gradient(t_feat)))
            self.hint_tracker.update_state(hint)
            total += self.hint * hint
        return total, losses

    def _mixup_losses(self, mixed, t_mix=None) -> dict:
        """Each task's soft loss of the student against the teacher on the mixed rows."""
        if t_mix is None:
            t_mix = self.teacher(mixed, training=False)
        s_mix = self.net(mixed, training=True)
        return {n: tf.cast(self.soft_fns[n](tf.stop_gradient(t_mix[n]), s_mix[n]), tf.float32)
                for n in self.task_names}

    def trained_variables(self) -> list:
        return super().trained_variables() + (self.projection.trainable_variables if self.hint else [])
