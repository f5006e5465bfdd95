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


# ---- gradient methods (pcgrad, gradnorm, cagrad) ------------------------------------------------------------------

def _gram(g: np.ndarray):
    return tf.constant(g @ g.T, tf.float32)


def test_pcgrad_projects_two_conflicting_gradients():
    from edgemtl.train.weighting import pcgrad_coefficients

    g = np.array([[1.0, 1.0, 0.0], [-1.0, 0.5, 0.5]], np.float32)  # g1 . g2 = -0.5: they conflict
    c = pcgrad_coefficients(_gram(g), tf.constant(7)).numpy()
    d = c @ g
    dot = g[0] @ g[1]
    expected = (g[0] - dot / (g[1] @ g[1]) * g[1]) + (g[1] - dot / (g[0] @ g[0]) * g[0])
    np.testing.assert_allclose(d, expected, rtol=1e-5)
    assert not np.allclose(d, g.sum(0))  # the sum's update changed
    agreeing = np.array([[1.0, 1.0, 0.0], [1.0, 0.5, 0.5]], np.float32)
    np.testing.assert_allclose(pcgrad_coefficients(_gram(agreeing), tf.constant(7)).numpy(), [1.0, 1.0])


def test_pcgrad_order_is_random_per_step_and_the_same_for_one_step():
    from edgemtl.train.weighting import pcgrad_coefficients

    rng = np.random.default_rng(0)
    g = rng.normal(size=(4, 30)).astype(np.float32)
    g[1], g[3] = -g[0] + 0.3 * g[1], -g[2] + 0.3 * g[3]
    coefficients = tf.function(pcgrad_coefficients)  # one trace, the step a tensor
    runs = [coefficients(_gram(g), tf.constant(s)).numpy() for s in range(6)]
    assert any(not np.allclose(r, runs[0], atol=1e-4) for r in runs)  # the order changed the projections
    np.testing.assert_array_equal(coefficients(_gram(g), tf.constant(3)).numpy(), runs[3])


def test_cagrad_dual_reaches_the_simplex_minimum():
    from edgemtl.train.weighting import cagrad_coefficients, cagrad_dual

    rng = np.random.default_rng(1)
    g = rng.normal(size=(3, 12)).astype(np.float32)
    g[2] = -0.8 * g[0] + 0.2 * g[2]
    a, b = (g @ g.T).astype(np.float64), np.full(3, 1 / 3)
    scale = 0.5 * np.sqrt(b @ a @ b)

    def objective(w):
        return w @ a @ b + scale * np.sqrt(w @ a @ w)

    grid = [np.array([i, j, 1 - i - j]) for i in np.linspace(0, 1, 101) for j in np.linspace(0, 1, 101) if i + j <= 1]
    best = min(objective(w) for w in grid)
    w = tf.function(cagrad_dual)(_gram(g), 0.5).numpy()  # traced, as in the train step (eager loops are slow)
    assert w.min() >= 0 and w.sum() == pytest.approx(1, abs=1e-5)
    assert objective(w) <= best + 1e-4
    d = tf.function(cagrad_coefficients)(_gram(g), 0.5).numpy() @ g
    # the worst task's improvement is larger than under the plain sum (what CAGrad is for)
    assert min(g @ d) / np.linalg.norm(d) > min(g @ g.sum(0)) / np.linalg.norm(g.sum(0))
    np.testing.assert_allclose(cagrad_coefficients(_gram(g), 0.0).numpy(), [1, 1, 1], rtol=1e-6)  # c = 0: sum


def test_gradnorm_raises_the_slower_task_and_keeps_the_sum():
    from edgemtl.train.weighting import gradnorm_step

    w = tf.ones([2])
    norms = tf.constant([1.0, 1.0])
    initial = tf.constant([2.0, 2.0])
    losses = tf.constant([0.5, 1.5])  # task b's loss fell less: r_b > 1
    new = gradnorm_step(w, norms, losses, initial, alpha=1.5, learning_rate=0.1).numpy()
    assert new.sum() == pytest.approx(2.0) and new[1] > new[0]
    # a task whose gradient is too large is pulled down
    new = gradnorm_step(w, tf.constant([4.0, 1.0]), tf.constant([1.0, 1.0]), initial, 1.5, 0.1).numpy()
    assert new[0] < new[1] and new.sum() == pytest.approx(2.0)


def test_gradient_methods_change_the_shared_update_only(av_data, av_recipe):
    """SGD steps from the same weights on the same batch: a gradient method moves the shared variables unlike
    `sum`, while every head still gets its own task's gradient (the same step as under `sum`, times gradnorm's
    weight). GradNorm's first step uses its starting weights (1: the sum's step); its second, the moved ones."""
    from edgemtl.models.build import build_model, numeric_stats
    from edgemtl.recipe.schema import LossCombinationSpec
    from edgemtl.train.trainer import MultitaskTrainer
    from edgemtl.train.weighting import make_combination

    recipe = av_recipe
    keras.utils.set_random_seed(0)
    net = build_model(recipe, av_data.labels, av_data.tokenizers, numeric_stats(recipe, av_data["train"].x))
    start = [w.numpy() for w in net.weights]
    batch = ({k: v[:8] for k, v in av_data["train"].x.items()}, {k: v[:8] for k, v in av_data["train"].y.items()})
    steps, weights = {}, {}
    for kind in ("sum", "pcgrad", "gradnorm", "cagrad"):
        net.set_weights(start)
        combination = make_combination(LossCombinationSpec(type=kind), recipe.tasks)
        trainer = MultitaskTrainer(net, recipe.tasks, av_data.labels, combination)
        trainer.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=True)  # two steps: tracing would dominate
        steps[kind] = []
        for _ in range(2 if kind in ("sum", "gradnorm") else 1):
            before = [w.numpy() for w in net.weights]
            keras.utils.set_random_seed(0)  # the same dropout masks
            logs = trainer.train_on_batch(*batch, return_dict=True)
            assert all(np.isfinite(v) for v in logs.values()), (kind, logs)
            steps[kind].append({w.name: w.numpy() - b for w, b in zip(net.weights, before)})
        weights[kind] = combination.task_weights()
    names = list(steps["sum"][0])
    heads = [n for n in names if n.startswith(("digit", "speaker"))]
    shared = [n for n in names if n.startswith("trunk_dense0/kernel")]
    assert heads and shared

    def same(kind, step, which):
        return all(np.allclose(steps[kind][step][n], steps["sum"][step][n], rtol=1e-4, atol=1e-7) for n in which)

    for kind in ("pcgrad", "cagrad"):
        assert same(kind, 0, heads), kind
    assert not same("cagrad", 0, shared)
    assert same("gradnorm", 0, heads + shared)  # weights 1 at the first step
    assert weights["gradnorm"]["digit"] != pytest.approx(1.0)
    assert weights["gradnorm"]["digit"] + weights["gradnorm"]["speaker"] == pytest.approx(2.0)
    assert not same("gradnorm", 1, shared)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pcgrad", "gradnorm", "cagrad"])
def test_gradient_methods_train_under_mirrored_on_two_logical_cpus(kind, tmp_path):
    """A fresh process (the CPU split into 2 logical devices before TensorFlow starts), one epoch: the task
    gradients are summed over the replicas before the method combines them; gradnorm's weights are assigned
    inside the replicated step."""
    import subprocess
    import sys

    from conftest import REPO, set_args

    out = tmp_path / "run"
    args = [sys.executable, "-m", "edgemtl", "train", str(AV_RECIPE), "--out", str(out)]
    args += set_args(TINY_AV + ["training.distribute=mirrored", "training.epochs=1",
                                f"training.loss_combination.type={kind}"])
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "models/teacher/metrics.json").read_text())
    assert metrics["distribute"] == {"strategy": "MirroredStrategy", "replicas": 2}
    assert np.isfinite(metrics["val"]["loss"]) and metrics["val"]["mean_score"] > 0
    weights = metrics["loss_weights"]
    assert sum(weights.values()) == pytest.approx(2.0, rel=1e-5)
    if kind == "gradnorm":
        assert weights["digit"] != pytest.approx(1.0)
