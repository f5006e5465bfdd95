"""The one reader and writer of a model's RUN/models/<model>/metrics.json (and reader of its history.jsonl).

Strict JSON: a value that is not a finite number is written as null, and `null_reasons` says why
({"splits.test.age.mae": "not a number (NaN)"}); callers can give their own reasons for values they leave null.
A truncated or corrupt file is an EdgemtlError naming it, never a traceback. TF-free.
"""
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import jsonio
from .errors import EdgemtlError
from .rundir import RunDir, atomic_write_text


def read_metrics(run: RunDir, model: str, missing_ok: bool = True) -> dict[str, Any]:
    """The model's metrics ({} when it has none yet and missing_ok)."""
    path = run.metrics_file(model)
    if not path.exists():
        if missing_ok:
            return {}
        raise EdgemtlError(f"{path}: no metrics for model '{model}'; train or evaluate it first")
    data = jsonio.read(path, "metrics file")
    if not isinstance(data, dict):
        raise EdgemtlError(f"{path}: expected a JSON object of metrics, got {type(data).__name__}; delete it and run "
                           f"'edgemtl evaluate' again")
    return data


def write_metrics(run: RunDir, model: str, metrics: Mapping[str, Any],
                  reasons: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Replace the model's metrics.json atomically; returns what was written. reasons: dotted key -> why that value is
    null (kept with the file's own, for keys still null)."""
    body = {k: v for k, v in metrics.items() if k != jsonio.NULL_REASONS}
    clean, found = jsonio.strict(body)
    given = {**dict(metrics.get(jsonio.NULL_REASONS) or {}), **dict(reasons or {})}
    kept = {k: r for k, r in given.items() if _is_null(clean, k)}
    if found or kept:
        clean[jsonio.NULL_REASONS] = {**kept, **found}
    atomic_write_text(run.metrics_file(model), json.dumps(clean, indent=2, allow_nan=False) + "\n")
    return clean


def update_metrics(run: RunDir, model: str, extra: Mapping[str, Any],
                   reasons: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Merge top-level keys into the model's metrics (what training, evaluation and pruning each add)."""
    return write_metrics(run, model, {**read_metrics(run, model), **extra}, reasons)


def read_history(run: RunDir, model: str) -> list[dict[str, Any]]:
    """history.jsonl rows. A half-written last line (a kill during the append) is dropped; a bad line before it is
    an error naming the file and line."""
    return read_history_file(run.history(model))


def read_history_file(path: Path) -> list[dict[str, Any]]:
    """read_history of a history.jsonl path (a model folder outside a run, as training's callbacks see it)."""
    path = Path(path)
    if not path.exists():
        return []
    lines = [(i, line) for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if line.strip()]
    rows = []
    for n, (i, line) in enumerate(lines):
        try:
            row = json.loads(line, parse_constant=lambda _: None)
        except json.JSONDecodeError:
            if n == len(lines) - 1:
                break
            raise EdgemtlError(f"{path} line {i}: not a JSON row; delete the model folder and train again") from None
        if not isinstance(row, dict):
            raise EdgemtlError(f"{path} line {i}: expected an object per line, got {type(row).__name__}")
        rows.append(row)
    return rows


def _is_null(data: Any, dotted: str) -> bool:
    """Whether the value at a dotted key ("splits.test.age.mae") exists and is null."""
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return data is None
