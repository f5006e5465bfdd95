"""Sequence input: float32 [length, channels] windows, from an .npz manifest's 3-D array or one .npy file per row
(standardised per channel inside the graph with training-split statistics, as numeric inputs are).

At run time a window is an array (or nested lists), a `.npy` file ([length, channels]) or a `.csv` file (one line per
time step, one column per channel, an optional header line of channel names); on the command line also JSON numbers.
"""
import csv
import io
import json
from pathlib import Path

import numpy as np

from ..errors import EdgemtlError
from .base import BadInput, ModalityKind, as_number_array, describe

WINDOW_FILES = (".npy", ".csv")  # files holding one window


def is_window_file(text) -> bool:
    return isinstance(text, (str, Path)) and Path(str(text)).suffix.lower() in WINDOW_FILES


def read_window(source) -> np.ndarray:
    """A .npy or .csv window file (path) -> float32 array; BadInput says what is wrong with it."""
    path = Path(source)
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            array = _read_csv_window(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise BadInput(f"sequence file '{source}' not found") from None
    except (OSError, ValueError, EOFError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)[:120]
        raise BadInput(f"sequence file {describe(source)} is not a readable {path.suffix} window ({reason})") from None
    if array.dtype.kind not in "iuf":
        raise BadInput(f"sequence file {describe(source)} holds {array.dtype} values, not numbers")
    return array.astype(np.float32)


def _read_csv_window(text: str) -> np.ndarray:
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if rows and not _numbers(rows[0]):
        rows = rows[1:]  # a header of channel names
    if not rows:
        raise ValueError("no rows of numbers")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise ValueError(f"rows have different numbers of values {sorted(widths)}")
    return np.array([[float(x) for x in r] for r in rows], dtype=np.float32)


def _numbers(row: list) -> bool:
    try:
        [float(x) for x in row]
    except ValueError:
        return False
    return True


class SequenceKind(ModalityKind):
    name = "sequence"
    dtype = "float32"
    default_encoder = "conv1d"
    media = True  # in a CSV/JSONL manifest the column holds .npy paths
    json_value = True
    file_suffixes = (".json",) + WINDOW_FILES  # a JSON list of [length][channels] numbers, or a window file
    has_stats = True

    def input_shape(self, spec) -> tuple:
        return (spec.length, spec.channels)

    def preprocess_entry(self, spec) -> dict:
        return {"length": spec.length, "channels": spec.channels}

    @staticmethod
    def stats(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and variance over every time step of the training windows (baked into the graph)."""
        flat = train.reshape(-1, train.shape[-1]).astype(np.float64)
        return flat.mean(axis=0).astype(np.float32), (flat.var(axis=0) + 1e-8).astype(np.float32)

    def decode(self, spec, table, tokenizer=None) -> tuple[np.ndarray, dict]:
        column = table.columns[spec.column]
        shape = self.input_shape(spec)
        bad = {}
        if isinstance(column, np.ndarray) and column.ndim == 3:
            if column.shape[1:] != shape:
                bad = {i: f"sequence '{spec.column}' has shape {column.shape[1:]}, expected {shape}"
                       for i in range(table.n_rows)}
                return np.zeros((table.n_rows, *shape), np.float32), bad
            out = column.astype(np.float32)
            bad = {int(i): f"sequence '{spec.column}' holds NaN or infinite values"
                   for i in np.flatnonzero(~np.isfinite(out).reshape(len(out), -1).all(axis=1))}
            return out, bad
        out = np.zeros((table.n_rows, *shape), dtype=np.float32)
        for i, p in enumerate(column):
            try:
                arr = read_window(table.base / str(p))
                if arr.shape != shape:
                    raise BadInput(f"sequence file '{p}' has shape {arr.shape}, expected {shape}")
                if not np.isfinite(arr).all():
                    raise BadInput(f"sequence file '{p}' holds NaN or infinite values")
                out[i] = arr
            except BadInput as e:
                bad[i] = str(e)
        return out, bad

    def cli_value(self, name: str, text: str):
        """A window file's path (.npy, .csv) as it is, else JSON numbers."""
        if is_window_file(text):
            return text
        try:
            return json.loads(text)
        except ValueError:
            raise EdgemtlError(f"input '{name}': give a .npy or .csv window file, or numbers as JSON "
                               f"([[...], ...], one list per time step)") from None

    def manifest_cell(self, name: str, text: str, base: Path):
        """In a predictions manifest: a window file relative to the manifest (as training reads), or JSON numbers."""
        return str(base / text) if is_window_file(text) else self.cli_value(name, text)

    def _prepare(self, entry: dict, value, rate, **resources) -> np.ndarray:
        shape = tuple(entry["shape"][1:])
        if is_window_file(value):
            value = read_window(value)
        elif isinstance(value, (str, bytes)):
            raise BadInput(f"expected a .npy or .csv window file or an array of [length, channels] = {list(shape)}, "
                           f"got {describe(value)[:80]}")
        return as_number_array(value, shape, f"[length, channels] = {list(shape)}")

    # -- TF half --------------------------------------------------------------------------------------------------
    def encoders(self) -> dict:
        from ..models.encoders import sequence

        return sequence.ENCODERS
