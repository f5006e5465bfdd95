"""Label vocabularies (learned from the training split) and label encoding. Missing labels encode as masked."""
import numpy as np

from ..recipe.schema import TaskSpec
from .manifest import is_missing

MISSING = -1  # class index / multi-hot value of a missing label; regression uses NaN


def learn_label_spec(task: TaskSpec, values: list) -> dict:
    """What a task's labels are, learned from training values only."""
    present = [v for v in values if not is_missing(v)]
    if task.type == "regression":
        nums = np.array([float(v) for v in present], dtype=np.float64)
        std = float(nums.std()) if len(nums) else 1.0
        return {"type": "regression", "mean": float(nums.mean()) if len(nums) else 0.0, "std": std if std > 0 else 1.0}
    if task.type == "multilabel":
        classes = sorted({c.strip() for v in present for c in str(v).split(task.separator) if c.strip()})
    else:
        classes = _sorted_classes({_as_label(v) for v in present})
    return {"type": task.type, "classes": classes}


def _as_label(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _sorted_classes(classes: set) -> list[str]:
    try:
        return sorted(classes, key=float)
    except ValueError:
        return sorted(classes)


def encode_labels(spec: dict, values: list, separator: str = "|") -> np.ndarray:
    """Encode raw values; missing or unseen labels become MISSING (NaN for regression) so their loss is masked."""
    if spec["type"] == "regression":
        return np.array([np.nan if is_missing(v) else float(v) for v in values], dtype=np.float32)
    index = {c: i for i, c in enumerate(spec["classes"])}
    if spec["type"] == "multilabel":
        out = np.zeros((len(values), len(index)), dtype=np.float32)
        for r, v in enumerate(values):
            if is_missing(v):
                out[r] = MISSING
                continue
            for c in str(v).split(separator):
                if c.strip() in index:
                    out[r, index[c.strip()]] = 1.0
        return out
    codes = np.array([index.get(_as_label(v), MISSING) if not is_missing(v) else MISSING for v in values])
    return codes.astype(np.float32 if spec["type"] == "binary" else np.int32)


def n_outputs(spec: dict) -> int:
    return 1 if spec["type"] in ("regression", "binary") else len(spec["classes"])
