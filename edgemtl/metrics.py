"""Per-task metrics in numpy (used by training, evaluation, the runtime checks and benchmarks alike)."""
import numpy as np

CLASS_METRICS = ("accuracy", "macro_f1")
REGRESSION_METRICS = ("mae", "rmse")
LOWER_IS_BETTER = ("loss", "mae", "rmse")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean F1 over the classes present in y_true or y_pred."""
    classes = np.union1d(y_true, y_pred)
    if len(classes) == 0:
        return float("nan")
    f1s = []
    for c in classes:
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(f1s))


def decide(task_type: str, output: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Model output -> predicted class index (multiclass/binary), label matrix (multilabel) or value (regression)."""
    output = np.asarray(output)
    if task_type == "multiclass":
        return output.argmax(axis=-1)
    if task_type == "binary":
        return (output.reshape(-1) >= threshold).astype(np.int64)
    if task_type == "multilabel":
        return (output >= threshold).astype(np.int64)
    return output.reshape(-1)


def score_task(task_type: str, y_true: np.ndarray, output: np.ndarray, threshold: float = 0.5, std: float = 1.0):
    """Metrics of one task over the rows that have a label (missing labels: -1, or NaN for regression)."""
    pred = decide(task_type, output, threshold)
    if task_type == "regression":
        valid = np.isfinite(y_true)
        err = pred[valid] - y_true[valid]
        mae = float(np.mean(np.abs(err))) if valid.any() else float("nan")
        rmse = float(np.sqrt(np.mean(err ** 2))) if valid.any() else float("nan")
        return {"mae": mae, "rmse": rmse, "score": 1.0 - mae / std, "n": int(valid.sum())}
    if task_type == "multilabel":
        valid = y_true[:, 0] >= 0
        t, p = y_true[valid].astype(np.int64), pred[valid]
        acc = float(np.mean(t == p)) if valid.any() else float("nan")
        f1 = float(np.mean([macro_f1(t[:, j], p[:, j]) for j in range(t.shape[1])])) if valid.any() else float("nan")
        return {"accuracy": acc, "macro_f1": f1, "score": acc, "n": int(valid.sum())}
    valid = y_true >= 0
    t, p = y_true[valid].astype(np.int64), pred[valid]
    acc = float(np.mean(t == p)) if valid.any() else float("nan")
    return {"accuracy": acc, "macro_f1": macro_f1(t, p) if valid.any() else float("nan"), "score": acc,
            "n": int(valid.sum())}


def score_all(tasks: list, labels: dict, y: dict, outputs: dict) -> dict:
    """{task: metrics} plus 'mean_score': mean accuracy over class tasks and 1 - MAE/std over regression tasks."""
    result = {}
    for t in tasks:
        if t.name in outputs:
            std = labels[t.name].get("std", 1.0)
            result[t.name] = score_task(t.type, y[t.name], outputs[t.name], t.threshold, std)
    scores = [m["score"] for m in result.values() if np.isfinite(m["score"])]
    result["mean_score"] = float(np.mean(scores)) if scores else float("nan")
    return result


def higher_is_better(monitor: str) -> bool:
    return not any(monitor.endswith(s) for s in LOWER_IS_BETTER)
