"""Model outputs -> per-task answers with label names, as the bundle's manifest says to decode them."""
import numpy as np


def answer(entry: dict, output: np.ndarray) -> dict:
    """One row's output of one task -> {"label", "score", "scores"} | {"labels", "scores"} | {"value"}."""
    kind, out = entry["type"], np.asarray(output, dtype=np.float64).reshape(-1)
    if kind == "regression":
        return {"value": float(out[0])}
    labels = entry["labels"]
    if kind == "multiclass":
        best = int(out.argmax())
        return {"label": labels[best], "score": float(out[best]),
                "scores": {str(label): float(p) for label, p in zip(labels, out)}}
    if kind == "binary":
        p = float(out[0])
        positive = p >= entry["threshold"]
        return {"label": labels[1 if positive else 0], "score": p if positive else 1.0 - p,
                "scores": {str(labels[0]): 1.0 - p, str(labels[1]): p}}
    scores = {str(label): float(p) for label, p in zip(labels, out)}
    return {"labels": [label for label, p in zip(labels, out) if p >= entry["threshold"]], "scores": scores}
