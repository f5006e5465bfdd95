"""Multilabel task: any set of classes per row ("a|b" in one cell); one sigmoid per class, thresholded."""
from collections.abc import Mapping

import numpy as np

from .base import MISSING, Scores, SigmoidTaskKind, flat, is_missing, macro_f1, no_score, python_floats, score_index


class MultilabelKind(SigmoidTaskKind):
    name = "multilabel"
    supports_label_match = True
    unseen_effect = "those classes are left out of the rows' targets"
    unseen_rows_scored = False

    def learn_labels(self, spec, values: list) -> dict:
        present = [v for v in values if not is_missing(v)]
        return {"type": self.name,
                "classes": sorted({c.strip() for v in present for c in str(v).split(spec.separator) if c.strip()})}

    def encode_labels(self, label_info: Mapping, values: list, separator: str = "|") -> np.ndarray:
        index = {c: i for i, c in enumerate(label_info["classes"])}
        out = np.zeros((len(values), len(index)), dtype=np.float32)
        for r, v in enumerate(values):
            if is_missing(v):
                out[r] = MISSING
                continue
            for c in str(v).split(separator):
                if c.strip() in index:
                    out[r, index[c.strip()]] = 1.0
        return out

    def unseen_labels(self, label_info: Mapping, values: list, separator: str = "|") -> tuple[int, list[str]]:
        """Rows naming a class absent from the training split (that class is dropped from the row's targets)."""
        known, rows, names = set(label_info["classes"]), 0, set()
        for v in values:
            extra = set() if is_missing(v) else {c.strip() for c in str(v).split(separator) if c.strip()} - known
            rows += bool(extra)
            names |= extra
        return rows, sorted(names)[:3]

    def covering_rows(self, y: np.ndarray) -> list[int]:
        return [int(np.flatnonzero(y[:, j] == 1)[0]) for j in range(y.shape[1]) if (y[:, j] == 1).any()]

    def decide(self, output: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        return (np.asarray(output) >= threshold).astype(np.int64)

    def score(self, y_true: np.ndarray, output: np.ndarray, threshold: float = 0.5, std: float = 1.0) -> dict:
        """accuracy: per label and row; macro_f1: the mean over labels of each label's macro-F1."""
        pred = self.decide(output, threshold)
        valid = y_true[:, 0] >= 0
        if not valid.any():
            return no_score(self.metric_names, 0)
        t, p = y_true[valid].astype(np.int64), pred[valid]
        acc = float(np.mean(t == p))
        f1 = float(np.mean([macro_f1(t[:, j], p[:, j]) for j in range(t.shape[1])]))
        metrics = {"accuracy": acc, "macro_f1": f1}
        return {**metrics, "score": self.normalised(metrics), "n": int(valid.sum())}

    def answerer(self, entry: Mapping):
        labels, threshold = entry["labels"], entry["threshold"]
        index = score_index(labels)

        def answer(output: np.ndarray) -> dict:
            scores = python_floats(flat(output))
            return {"labels": [label for label, p in zip(labels, scores) if p >= threshold],
                    "scores": Scores(index, scores)}
        return answer
