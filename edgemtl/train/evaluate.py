"""Score a trained model on every split, per task; results go into the model's metrics.json."""
import json

from ..recipe.schema import Recipe
from ..data.dataset import SPLITS
from ..metrics import score_all
from ..models.build import load_model
from ..rundir import RunDir, atomic_write_json


def evaluate_model(run: RunDir, recipe: Recipe, data, name: str = "teacher") -> dict:
    model = load_model(run.require_model(name))
    tasks = [t for t in recipe.tasks if t.name in model.output_names]
    scores = {}
    for split in SPLITS:
        if len(data[split]):
            outputs = model.predict(data[split].x, batch_size=256, verbose=0)
            scores[split] = score_all(tasks, data.labels, data[split].y, outputs)
    path = run.model_dir(name) / "metrics.json"
    metrics = json.loads(path.read_text()) if path.exists() else {}
    metrics["splits"] = scores
    atomic_write_json(path, metrics)
    return scores


def format_scores(scores: dict, tasks: list, split: str = "test") -> str:
    from ..reports.markdown import table

    rows = [[t.name, _f(m.get("accuracy")), _f(m.get("macro_f1")), _f(m.get("mae")), _f(m.get("rmse")), m["n"]]
            for t in tasks if (m := scores[split].get(t.name))]
    return table(["task", "accuracy", "macro-F1", "MAE", "RMSE", "rows"], rows)


def _f(value) -> str:
    return "" if value is None else f"{value:.4f}"
