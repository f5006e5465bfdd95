"""Model outputs -> per-task answers with label names: the task kind's answer() (edgemtl.kinds)."""
import numpy as np

from .. import kinds


def answer(entry: dict, output: np.ndarray) -> dict:
    """One row's output of one task -> {"label", "score", "scores"} | {"labels", "scores"} | {"value"}."""
    return kinds.task_kind(entry["type"]).answer(entry, output)
