"""Sequence input: float32 [length, channels] windows, from an .npz manifest's 3-D array or one .npy file per row."""
import numpy as np

from .base import ModalityKind, as_number_array


class SequenceKind(ModalityKind):
    name = "sequence"
    dtype = "float32"
    default_encoder = "conv1d"
    media = True  # in a CSV/JSONL manifest the column holds .npy paths
    json_value = True
    file_suffixes = (".json",)  # a JSON list of [length][channels] numbers

    def input_shape(self, spec) -> tuple:
        return (spec.length, spec.channels)

    def preprocess_entry(self, spec) -> dict:
        return {"length": spec.length, "channels": spec.channels}

    def decode(self, spec, table, tokenizer=None) -> tuple[np.ndarray, dict]:
        column = table.columns[spec.column]
        shape = self.input_shape(spec)
        bad = {}
        if isinstance(column, np.ndarray) and column.ndim == 3:
            if column.shape[1:] != shape:
                bad = {i: f"sequence '{spec.column}' has shape {column.shape[1:]}, expected {shape}"
                       for i in range(table.n_rows)}
            return column.astype(np.float32), bad
        out = np.zeros((table.n_rows, *shape), dtype=np.float32)
        for i, p in enumerate(column):
            try:
                arr = np.load(table.base / str(p), allow_pickle=False)
                if arr.shape != shape:
                    raise ValueError(f"has shape {arr.shape}, expected {shape}")
                out[i] = arr
            except (OSError, ValueError) as e:
                bad[i] = f"sequence file '{p}' {e if isinstance(e, ValueError) else 'not found or unreadable'}"
        return out, bad

    def _prepare(self, entry: dict, value, rate, **resources) -> np.ndarray:
        shape = tuple(entry["shape"][1:])
        return as_number_array(value, shape, f"[length, channels] = {list(shape)}")

    # -- TF half --------------------------------------------------------------------------------------------------
    def encoders(self) -> dict:
        from ..models.encoders import sequence

        return sequence.ENCODERS
