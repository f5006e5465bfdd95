"""Score a trained model on every split, per task; results go into the model's metrics.json (and the test split's
decisions into test_predictions.npz, for the report's confusion matrices)."""
import numpy as np

from ..data.dataset import SPLITS
from ..data.pipeline import predict_split
from ..kinds import score_all
from ..model_metrics import update_metrics
from ..models.build import load_model
from ..presence import has_patterns, patterns
from ..recipe.schema import Recipe
from ..rundir import RunDir, atomic_save


def evaluate_model(run: RunDir, recipe: Recipe, data, name: str = "teacher") -> dict:
    """{split: {task: raw metrics, "score" (normalised), "n"} | {"mean_score": mean of the normalised scores or None,
    "mean_note"}}, also written to the model's metrics.json."""
    model = load_model(run.require_model(name))
    tasks = [t for t in recipe.tasks if t.name in model.output_names]
    scores, by_pattern = {}, {}
    for split in SPLITS:
        if len(data[split]):
            outputs = predict_split(model, data[split])
            scores[split] = score_all(tasks, data.labels, data[split].y, outputs)
            if split == "test":
                save_test_predictions(run, name, tasks, data[split].y, outputs)
            if has_patterns(data[split].x):
                by_pattern[split] = pattern_scores(tasks, data.labels, data[split].x, data[split].y, outputs,
                                                   [i.name for i in recipe.inputs])
    update_metrics(run, name, {"splits": scores, **({"patterns": by_pattern} if by_pattern else {})})
    return scores


def pattern_scores(tasks, labels, x: dict, y: dict, outputs: dict, input_names: list) -> dict:
    """{pattern: scores as score_all gives them, plus "rows"} for each presence pattern of the rows (an optional
    input present or absent: 'image+title', 'title'), most rows first."""
    rows = patterns(x, input_names)
    out = {}
    for pattern in sorted(set(rows), key=lambda p: (-int((rows == p).sum()), p)):
        mask = rows == pattern
        out[pattern] = {**score_all(tasks, labels, {k: v[mask] for k, v in y.items()},
                                    {k: v[mask] for k, v in outputs.items()}), "rows": int(mask.sum())}
    return out


def format_patterns(by_pattern: dict | None, tasks: list, split: str = "test") -> str:
    """Optional inputs: each task's primary metric per presence pattern of the split's rows ('' without patterns)."""
    from ..kinds import task_kind
    from ..reports.markdown import table

    groups = (by_pattern or {}).get(split)
    if not groups:
        return ""
    rows = []
    for t in tasks:
        metric = task_kind(t.type).primary_metric
        if all(t.name in g for g in groups.values()):
            rows.append([t.name, metric, *(_f(g[t.name].get(metric), g[t.name]) for g in groups.values())])
    header = ["task", "metric", *(f"{p} ({g['rows']} rows)" for p, g in groups.items())]
    return f"per presence pattern ({split}):\n" + table(header, rows)


def save_test_predictions(run: RunDir, name: str, tasks: list, y: dict, outputs: dict) -> None:
    """Each task's encoded labels and its kind's decision (class index, label matrix or value) on the test rows."""
    from ..kinds import task_kind

    arrays = {}
    for t in tasks:
        arrays[f"{t.name}.true"] = np.asarray(y[t.name])
        arrays[f"{t.name}.pred"] = np.asarray(task_kind(t.type).decide(np.asarray(outputs[t.name]), t.threshold))
    atomic_save(run.test_predictions(name), lambda tmp: np.savez_compressed(tmp, **arrays))


# the dense kinds' metrics (boxes, mask): columns shown only where a task has them
DENSE_COLUMNS = {"map50": "mAP@.5", "map": "mAP@[.5:.95]", "miou": "mIoU", "pixel_accuracy": "pixel accuracy"}


def format_scores(scores: dict, tasks: list, split: str = "test") -> str:
    """The split's table: raw metrics per task ("—" and the reason where a task has no scorable row), the rows whose
    label training never saw (scored as errors), and the mean normalised score with what it left out."""
    from ..reports.markdown import table
    from ..reports.scores import NO_SCORE, mean_cell, score_name

    per_split = scores.get(split) or {}
    rows, reasons = [], []
    keys = ["accuracy", "macro_f1", "mae", "rmse"]
    keys += [k for k in DENSE_COLUMNS if any(k in (per_split.get(t.name) or {}) for t in tasks)]
    for t in tasks:
        if (m := per_split.get(t.name)) is None:
            continue
        if m.get("reason"):
            reasons.append(f"{t.name}: {NO_SCORE} ({m['reason']})")
        cells = [_f(m.get(k), m) for k in [*keys, "score"]]
        rows.append([t.name, *cells, m["n"], m.get("unseen", "")])
    headers = ["accuracy", "macro-F1", "MAE", "RMSE", *(DENSE_COLUMNS[k] for k in keys[4:]), "score"]
    text = table(["task", *headers, "rows", "unseen labels"], rows)
    scored = [t for t in tasks if t.name in per_split and not t.auxiliary]
    mean, note = mean_cell({t.name: per_split.get(t.name) for t in scored})
    aux = [t.name for t in tasks if t.auxiliary and t.name in per_split]
    notes = [note] + ([f"auxiliary, not in the mean: {', '.join(aux)}"] if aux else [])
    meaning = f" (the score column's mean; score = {score_name(scored)})" if scored else ""
    lines = [text, *reasons, f"mean score ({split}): {mean}{meaning}" + "".join(f" — {n}" for n in notes if n)]
    return "\n".join(lines)


def _f(value, metrics) -> str:
    if value is None:
        return "—" if metrics.get("reason") else ""
    return f"{value:.4f}"
