"""Per-class results of class tasks from a model's saved test decisions (RUN/models/<m>/test_predictions.npz):
confusion matrices and per-class precision / recall / F1. numpy only (no TensorFlow)."""
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np

from ..kinds.base import MISSING, UNSEEN

MAX_MATRIX_CLASSES = 25  # more classes than this: the most frequent confusions instead of the matrix
UNSEEN_LABEL = "(unseen in training)"


@dataclass(frozen=True)
class ClassResults:
    task: str
    classes: list  # class names; the last one is UNSEEN_LABEL where test rows had classes training never saw
    matrix: np.ndarray  # rows: true class, columns: predicted class (counts)
    n: int

    def per_class(self) -> list[dict]:
        """{class, support, predicted, precision, recall, f1} per class (None where undefined: no row)."""
        out = []
        for i, name in enumerate(self.classes):
            tp = int(self.matrix[i, i]) if i < self.matrix.shape[1] else 0
            support = int(self.matrix[i].sum())
            predicted = int(self.matrix[:, i].sum()) if i < self.matrix.shape[1] else 0
            precision = tp / predicted if predicted else None
            recall = tp / support if support else None
            f1 = (2 * tp / (support + predicted)) if support + predicted else None
            out.append({"class": name, "support": support, "predicted": predicted, "precision": precision,
                        "recall": recall, "f1": f1})
        return out

    def top_confusions(self, k: int = 12) -> list[tuple[str, str, int]]:
        rows, cols = np.nonzero(self.matrix)
        off = [(self.classes[i], self.classes[j], int(self.matrix[i, j])) for i, j in zip(rows, cols) if i != j]
        return sorted(off, key=lambda t: -t[2])[:k]


def load_predictions(path: Path) -> dict:
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def class_results(task: str, classes: list, true: np.ndarray, pred: np.ndarray) -> ClassResults:
    """The confusion matrix of one class task over its labelled test rows (multiclass or binary decisions: one
    class index per row). Rows of classes absent from training get their own true-class row."""
    true, pred = np.asarray(true).reshape(-1).astype(np.int64), np.asarray(pred).reshape(-1).astype(np.int64)
    keep = true != MISSING
    true, pred = true[keep], pred[keep]
    k = len(classes)
    unseen = true == UNSEEN
    names = list(classes) + ([UNSEEN_LABEL] if unseen.any() else [])
    matrix = np.zeros((len(names), k), dtype=np.int64)
    rows = np.where(unseen, k, true)
    np.add.at(matrix, (rows, np.clip(pred, 0, k - 1)), 1)
    return ClassResults(task, names, matrix, int(keep.sum()))


def label_results(task: str, classes: list, true: np.ndarray, pred: np.ndarray) -> list[dict]:
    """Multilabel: per label {class, support, predicted, precision, recall, f1} over rows with labels."""
    true, pred = np.asarray(true), np.asarray(pred).astype(bool)
    labelled = (true != MISSING).all(axis=-1) if true.ndim == 2 else np.ones(len(true), bool)
    t, p = true[labelled] > 0, pred[labelled]
    out = []
    for i, name in enumerate(classes):
        tp, support, predicted = int((t[:, i] & p[:, i]).sum()), int(t[:, i].sum()), int(p[:, i].sum())
        out.append({"class": name, "support": support, "predicted": predicted,
                    "precision": tp / predicted if predicted else None, "recall": tp / support if support else None,
                    "f1": 2 * tp / (support + predicted) if support + predicted else None})
    return out


def _cell(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def per_class_table(rows: list[dict]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("class", "test rows", "predicted", "precision", "recall", "F1"))
    body = "".join(f"<tr><td>{escape(str(r['class']))}</td>" + "".join(
        f'<td class="num">{v}</td>' for v in (r["support"], r["predicted"], _cell(r["precision"]),
                                                _cell(r["recall"]), _cell(r["f1"]))) + "</tr>" for r in rows)
    return f'<div class="table"><table class="per-class"><tr>{head}</tr>{body}</table></div>'


def confusion_table(res: ClassResults) -> str:
    """The matrix as a table, cells shaded by their share of the true class's rows (diagonal blue, errors red)."""
    k = res.matrix.shape[1]
    head = ('<tr><th rowspan="2" class="true">true ↓ / predicted →</th>'
            f'<th colspan="{k}" class="pred">predicted</th><th rowspan="2">rows</th></tr><tr>'
            + "".join(f'<th class="pred">{escape(str(c))}</th>' for c in res.classes[:k]) + "</tr>")
    body = []
    for i, name in enumerate(res.classes):
        total = int(res.matrix[i].sum())
        cells = []
        for j in range(k):
            v = int(res.matrix[i, j])
            share = v / total if total else 0.0
            rgb = (11, 92, 173) if i == j else (204, 51, 51)
            ink = ";color:#fff" if share > 0.55 else ""  # dark cells: white figures
            style = f' style="background:rgba({rgb[0]},{rgb[1]},{rgb[2]},{0.08 + 0.75 * share:.2f}){ink}"' if v else ""
            cells.append(f'<td class="num"{style}>{v if v else ""}</td>')
        body.append(f'<tr><th class="true">{escape(str(name))}</th>{"".join(cells)}<td class="num">{total}</td></tr>')
    return (f'<div class="table"><table class="confusion" data-task="{escape(res.task)}">{head}{"".join(body)}'
            f"</table></div>")


def confusions_list(res: ClassResults) -> str:
    pairs = res.top_confusions()
    if not pairs:
        return "<p>No test row is confused.</p>"
    rows = "".join(f"<tr><td>{escape(str(t))}</td><td>{escape(str(p))}</td><td class='num'>{n}</td></tr>"
                   for t, p, n in pairs)
    return ('<div class="table"><table class="confusion-pairs"><tr><th>true class</th><th>predicted as</th>'
            f"<th>rows</th></tr>{rows}</table></div>")
