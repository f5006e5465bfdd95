"""Score a trained model on every split, per task; results go into the model's metrics.json."""
from ..data.dataset import SPLITS
from ..kinds import score_all
from ..models.build import load_model
from ..model_metrics import update_metrics
from ..recipe.schema import Recipe
from ..rundir import RunDir


def evaluate_model(run: RunDir, recipe: Recipe, data, name: str = "teacher") -> dict:
    """{split: {task: raw metrics, "score" (normalised), "n"} | {"mean_score": mean of the normalised scores or None,
    "mean_note"}}, also written to the model's metrics.json."""
    model = load_model(run.require_model(name))
    tasks = [t for t in recipe.tasks if t.name in model.output_names]
    scores = {}
    for split in SPLITS:
        if len(data[split]):
            outputs = model.predict(data[split].x, batch_size=256, verbose=0)
            scores[split] = score_all(tasks, data.labels, data[split].y, outputs)
    update_metrics(run, name, {"splits": scores})
    return scores


def format_scores(scores: dict, tasks: list, split: str = "test") -> str:
    from ..reports.markdown import table

    rows = [[t.name, _f(m.get("accuracy")), _f(m.get("macro_f1")), _f(m.get("mae")), _f(m.get("rmse")), m["n"]]
            for t in tasks if (m := scores[split].get(t.name))]
    return table(["task", "accuracy", "macro-F1", "MAE", "RMSE", "rows"], rows)


def _f(value) -> str:
    return "" if value is None else f"{value:.4f}"
