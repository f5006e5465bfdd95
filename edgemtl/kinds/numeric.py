"""Numeric input: float32 raw numbers, one per manifest column (standardised inside the graph with training-split
statistics)."""
import numpy as np

from .base import BadInput, ModalityKind, as_number_array


class NumericKind(ModalityKind):
    name = "numeric"
    dtype = "float32"
    default_encoder = "mlp"
    json_value = True
    file_suffixes = (".json",)  # a JSON list of numbers
    has_stats = True

    def input_shape(self, spec) -> tuple:
        return (len(spec.columns),)

    def columns(self, spec) -> tuple:
        return tuple(spec.columns)

    def column_key(self, spec) -> str:
        return "columns"

    def preprocess_entry(self, spec) -> dict:
        return {"columns": list(spec.columns)}

    def decode(self, spec, table, tokenizer=None) -> tuple[np.ndarray, dict]:
        out = np.zeros((table.n_rows, len(spec.columns)), dtype=np.float32)
        bad = {}
        for j, col in enumerate(spec.columns):
            for i, v in enumerate(table.columns[col]):
                try:
                    out[i, j] = float(v)
                    if not np.isfinite(out[i, j]):
                        raise ValueError
                except (TypeError, ValueError):
                    bad[i] = f"numeric column '{col}' has {v!r}, not a number"
        return out, bad

    @staticmethod
    def stats(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-column mean and variance on the training split (baked into the graph)."""
        return train.mean(axis=0), train.var(axis=0) + 1e-8

    def _prepare(self, entry: dict, value, rate, **resources) -> np.ndarray:
        columns = entry["preprocess"]["columns"]
        if isinstance(value, dict):
            missing = [c for c in columns if c not in value]
            if missing:
                raise BadInput(f"missing value(s) for {', '.join(missing)}")
            value = [value[c] for c in columns]
        return as_number_array(value, (len(columns),), f"one number per column ({', '.join(columns)})")

    # -- TF half --------------------------------------------------------------------------------------------------
    def encoders(self) -> dict:
        from ..models.encoders import numeric

        return numeric.ENCODERS
