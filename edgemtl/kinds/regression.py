"""Regression task: one value in label units. The head learns the standardised value (training-split mean/std in
labels.json) and de-standardises in the graph, clipped to the task's min/max where given. That last step is a
label-unit value (years ~2012): int8 cannot hold it (a quantized range always spans 0, a step of ~8 years), so
exports keep it in float (models.layers.float_outputs). Normalised score: 1 - MAE / std (1 is perfect, 0 is as far
off as one standard deviation on average; it can go below 0), never the raw MAE."""
from collections.abc import Mapping

import numpy as np

from .base import TaskKind, is_missing, masked_mean

AGREEMENT_RTOL = 0.01  # an artifact's value "agrees" within 1 % of the reference value (at least 0.01 absolute)


class RegressionKind(TaskKind):
    name = "regression"
    decode_rule = "value"
    metric_names = ("mae", "rmse")
    primary_metric = "mae"
    lower_is_better_metrics = ("mae", "rmse")
    score_meaning = "1 - MAE/std for regression"
    has_classes = False
    has_bounds = True

    def learn_labels(self, spec, values: list) -> dict:
        nums = np.array([float(v) for v in values if not is_missing(v)], dtype=np.float64)
        std = float(nums.std()) if len(nums) else 1.0
        return {"type": self.name, "mean": float(nums.mean()) if len(nums) else 0.0, "std": std if std > 0 else 1.0}

    def encode_labels(self, label_info: Mapping, values: list, separator: str = "|") -> np.ndarray:
        return np.array([np.nan if is_missing(v) else float(v) for v in values], dtype=np.float32)

    def n_outputs(self, label_info: Mapping) -> int:
        return 1

    def decide(self, output: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        return np.asarray(output).reshape(-1)

    def score(self, y_true: np.ndarray, output: np.ndarray, threshold: float = 0.5, std: float = 1.0) -> dict:
        pred = self.decide(output)
        valid = np.isfinite(y_true)
        err = pred[valid] - y_true[valid]
        mae = float(np.mean(np.abs(err))) if valid.any() else float("nan")
        rmse = float(np.sqrt(np.mean(err ** 2))) if valid.any() else float("nan")
        metrics = {"mae": mae, "rmse": rmse}
        return {**metrics, "score": self.normalised(metrics, std), "n": int(valid.sum())}

    def normalised(self, metrics: Mapping, std: float = 1.0) -> float:
        return 1.0 - metrics["mae"] / std

    def format_primary(self, metrics: Mapping) -> str:
        value = metrics.get("mae")
        return "" if value is None else f"MAE {value:.3g}"

    def answer(self, entry: Mapping, output: np.ndarray) -> dict:
        return {"value": float(np.asarray(output, dtype=np.float64).reshape(-1)[0])}

    def float_diff(self, ref: np.ndarray, got: np.ndarray) -> np.ndarray:
        """Relative to the value (label units can be large: years), absolute below 1."""
        return np.abs(got - ref) / np.maximum(1.0, np.abs(ref))

    def agreement(self, ref: np.ndarray, got: np.ndarray, threshold: float = 0.5) -> float:
        return float(np.mean(np.abs(got - ref) <= AGREEMENT_RTOL * np.maximum(1.0, np.abs(ref))))

    # -- TF half --------------------------------------------------------------------------------------------------
    def head(self, x, spec, label_info: Mapping, match=None):
        from ..models.layers import Denormalize
        from ..tfk import keras

        z = keras.layers.Dense(1, name=f"{spec.name}_standardised")(x)
        return Denormalize(label_info["mean"], label_info["std"], low=spec.min, high=spec.max, name=spec.name)(z)

    def loss(self, spec, label_info: Mapping):
        """mse (auto), mae or huber, on the standardised scale."""
        from ..tfk import tf

        std = label_info["std"]
        kind_loss = "mse" if spec.loss == "auto" else spec.loss

        def regression(y, p):
            y = tf.reshape(tf.cast(y, tf.float32), [-1])
            valid = tf.math.is_finite(y)
            err = (tf.reshape(p, [-1]) - tf.where(valid, y, 0.0)) / std
            if kind_loss == "mae":
                per_row = tf.abs(err)
            elif kind_loss == "huber":
                per_row = tf.where(tf.abs(err) < 1.0, 0.5 * tf.square(err), tf.abs(err) - 0.5)
            else:
                per_row = tf.square(err)
            return masked_mean(per_row, valid)
        return regression

    def soft_loss(self, spec, label_info: Mapping, temperature: float):
        """Squared distance to the teacher's prediction on the standardised scale (no temperature)."""
        from ..tfk import tf

        std = label_info["std"]
        return lambda t, s: tf.reduce_mean(tf.square((tf.reshape(s, [-1]) - tf.reshape(t, [-1])) / std))
