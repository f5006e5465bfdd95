"""Multi-head knowledge distillation: each task's loss blends the teacher's soft targets with the labels.

Each task kind's soft_loss (edgemtl.kinds) says how its student output matches the teacher's (KL of softened
distributions, per-label BCE, or squared distance for regression). The hard (label) loss masks rows without a
label; the soft loss uses every row, so unlabelled rows still learn. With `mixup`, the student also matches the
teacher on mixed pairs of training inputs, where no label exists ("function matching", Beyer et al. 2022): the
teacher's answers away from the training points; each input mixes by its modality kind's rule.
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


class DistillTrainer(MultitaskTrainer):
    """MultitaskTrainer whose per-task losses also learn from a frozen teacher; the combination applies on top."""

    def __init__(self, net, tasks: list, labels: dict, combination, teacher, distill: DistillSpec,
                 modalities: Mapping[str, str] | None = None):
        """modalities: input name -> modality name (needed with mixup: each input mixes by its kind's rule)."""
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
            mixed = kinds.mix_batch(x, self.modalities)
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
