"""Binary task: two classes [negative, positive], one sigmoid output (the positive class's probability), thresholded.
The positive class is tasks[].positive, else the second class in sorted order."""
from collections.abc import Mapping

import numpy as np

from .base import Scores, SigmoidTaskKind, score_index


class BinaryKind(SigmoidTaskKind):
    name = "binary"
    max_classes = 2
    label_dtype = np.float32  # a sigmoid target

    def n_outputs(self, label_info: Mapping) -> int:
        return 1

    def learn_labels(self, spec, values: list) -> dict:
        """Classes ordered [negative, positive]; "positive" records which one the output's probability is of."""
        info = super().learn_labels(spec, values)
        classes, positive = info["classes"], getattr(spec, "positive", None)
        if positive is not None and positive in classes and len(classes) == 2:
            classes = [c for c in classes if c != positive] + [positive]
        return {**info, "classes": classes, **({"positive": classes[-1]} if len(classes) == 2 else {})}

    def label_problems(self, spec, label_info: Mapping, where: str) -> list[str]:
        classes = label_info.get("classes", [])
        if len(classes) != 2:
            return [(f"{where}: a binary task needs exactly 2 classes in the training split, column '{spec.column}' "
                     f"has {len(classes)}: {', '.join(classes[:5])}")]
        positive = getattr(spec, "positive", None)
        if positive is not None and positive not in classes:
            return [f"{where}.positive: '{positive}' is not a class of column '{spec.column}' in the training split "
                    f"(classes: {', '.join(classes)})"]
        return []

    def decide(self, output: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        return (np.asarray(output).reshape(-1) >= threshold).astype(np.int64)

    def answerer(self, entry: Mapping):
        labels, threshold = entry["labels"], entry["threshold"]
        index = score_index(labels)

        def answer(output: np.ndarray) -> dict:
            p = float(np.asarray(output, dtype=np.float64).reshape(-1)[0])
            positive = p >= threshold
            return {"label": labels[1 if positive else 0], "score": p if positive else 1.0 - p,
                    "scores": Scores(index, [1.0 - p, p])}
        return answer
