"""Loss combinations do what they are defined to do, and each one trains the av_digits recipe."""
import json

import numpy as np
import pytest

from conftest import AV_RECIPE, TINY_AV
from edgemtl.recipe.schema import TaskSpec
from edgemtl.tfk import keras, tf
from edgemtl.train.weighting import DynamicWeightAverage, MaxLoss, UncertaintyWeighting, WeightedSum, dwa_weights


def task(name: str, weight: float = 1.0) -> TaskSpec:
    return TaskSpec(name=name, type="regression", weight=weight)


TASKS = [task("a", 1.0), task("b", 2.0)]


def test_weighted_sum_and_max():
    losses = {"a": tf.constant(3.0), "b": tf.constant(1.0)}
    assert float(WeightedSum(TASKS).combine(losses)) == pytest.approx(3.0 + 2.0)
    assert float(MaxLoss(TASKS).combine(losses)) == pytest.approx(3.0)  # max(1*3, 2*1)
    losses["b"] = tf.constant(2.5)
    assert float(MaxLoss(TASKS).combine(losses)) == pytest.approx(5.0)


def test_max_sends_gradient_only_to_the_largest_task():
    a, b = tf.Variable(2.0), tf.Variable(1.0)
    with tf.GradientTape() as tape:
        total = MaxLoss([task("a"), task("b")]).combine(
            {"a": a * a, "b": b * b})
    ga, gb = tape.gradient(total, [a, b])
    assert float(ga) == pytest.approx(4.0) and (gb is None or float(gb) == 0.0)


def test_uncertainty_weights_are_learned_towards_inverse_losses():
    combo = UncertaintyWeighting([task("a"), task("b")])
    opt = keras.optimizers.SGD(0.1)
    losses = {"a": tf.constant(4.0), "b": tf.constant(0.25)}
    for _ in range(600):
        with tf.GradientTape() as tape:
            total = combo.combine(losses)
        opt.apply_gradients(zip(tape.gradient(total, combo.trainable_variables), combo.trainable_variables))
    s = combo.log_vars.numpy()
    np.testing.assert_allclose(np.exp(-s), [1 / 4.0, 1 / 0.25], rtol=0.02)  # optimum: exp(-s_i) = 1 / L_i
    w = combo.task_weights()
    assert w["a"] < w["b"]


def test_dwa_weights_follow_loss_ratios():
    combo = DynamicWeightAverage(TASKS, temperature=2.0)
    combo.end_epoch({"a": 1.0, "b": 1.0})
    assert combo.task_weights() == {"a": 1.0, "b": 2.0}  # first epochs: w = 1 (times the static weights)
    combo.end_epoch({"a": 0.5, "b": 0.9})
    expected = 2 * np.exp(np.array([0.5, 0.9]) / 2) / np.exp(np.array([0.5, 0.9]) / 2).sum()
    np.testing.assert_allclose(combo.weights_var.numpy(), expected, rtol=1e-6)
    assert combo.task_weights()["a"] < combo.task_weights()["b"] / 2  # slower-improving task b gets more weight
    combo.end_epoch({"a": 0.5, "b": 0.45})  # now a stalls (ratio 1.0), b halves (ratio 0.5)
    expected = dwa_weights(np.array([0.5, 0.45]), np.array([0.5, 0.9]), 2.0)
    np.testing.assert_allclose(combo.weights_var.numpy(), expected, rtol=1e-6)
    assert combo.weights_var.numpy()[0] > combo.weights_var.numpy()[1]
    total = combo.combine({"a": tf.constant(1.0), "b": tf.constant(1.0)})
    w = combo.weights_var.numpy()
    assert float(total) == pytest.approx(w[0] * 1.0 + w[1] * 2.0)


@pytest.mark.parametrize("kind", ["sum", "max", "uncertainty", "dwa"])
def test_each_combination_trains_av_digits(kind, av_data, tmp_path):
    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import RunDir
    from edgemtl.train.fit import train_model

    recipe = load_recipe(AV_RECIPE, TINY_AV + ["training.epochs=3", f"training.loss_combination.type={kind}"])
    summary = train_model(recipe, av_data, RunDir(tmp_path), "teacher")
    history = [json.loads(line) for line in (tmp_path / "models/teacher/history.jsonl").read_text().splitlines()]
    assert len(history) == 3 and all(np.isfinite(r["loss"]) for r in history)
    assert history[-1]["digit_loss"] < history[0]["digit_loss"]  # it learns
    weights = summary["loss_weights"]
    if kind == "uncertainty":
        assert weights["digit"] != pytest.approx(0.5) and weights["speaker"] != pytest.approx(0.5)
    if kind == "dwa":
        ratios = np.array([history[2 - 1][f"{t}_loss"] / history[0][f"{t}_loss"] for t in ("digit", "speaker")])
        np.testing.assert_allclose([history[1]["weight_digit"], history[1]["weight_speaker"]],
                                   2 * np.exp(ratios / 2) / np.exp(ratios / 2).sum(), rtol=1e-5)
