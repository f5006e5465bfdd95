"""Streaming media: an image or audio input held as its file paths and decoded on demand (docs/recipes.md,
"Streaming"). The tf.data pipeline decodes a row through the same `load(pre, path)` the in-memory path and the
runtime use, so the tensors are identical; code that indexes a split's arrays (`x[name][:4]`, calibration rows)
gets decoded numpy rows as from an array."""
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import kinds
from ..kinds.base import MAX_PATH, describe, is_missing
from ..presence import PRESENCE_DTYPE, presence_name
from .column import by_row, distinct, expand

ZEROS = ""  # the path of a row whose input is all zeros (an absent optional input's placeholder)


@dataclass(frozen=True)
class MediaColumn:
    """One input's rows as absolute file paths; decoded rows are never kept."""

    name: str
    paths: np.ndarray  # object array of str, one per row; ZEROS for a placeholder row
    row_shape: tuple
    dtype: np.dtype
    pre: dict  # the kind's preprocess entry: what load() needs
    modality: str

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple:
        return (len(self.paths), *self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    def load(self, path: str) -> np.ndarray:
        """One row, exactly as the in-memory decode gives it."""
        if path == ZEROS:
            return np.zeros(self.row_shape, self.dtype)
        return np.asarray(kinds.modality(self.modality).load(self.pre, path), self.dtype)

    def take(self, index) -> "MediaColumn":
        """The rows of `index` (indices or a boolean mask), still undecoded."""
        return MediaColumn(self.name, self.paths[index], self.row_shape, self.dtype, self.pre, self.modality)

    def __getitem__(self, index) -> np.ndarray:
        """Decoded rows, as indexing an array of them would give."""
        if isinstance(index, (int, np.integer)):
            return self.load(self.paths[index])
        return decode_all(self.take(index))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = decode_all(self)
        return out if dtype is None else out.astype(dtype)


def decode_all(column: MediaColumn) -> np.ndarray:
    """Every row decoded (threads, as the in-memory path decodes)."""
    out = np.zeros(column.shape, column.dtype)

    def work(i):
        out[i] = column.load(column.paths[i])

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        list(pool.map(work, range(len(column))))
    return out


def file_problem(spec, value, base: Path) -> str | None:
    """What stops a media cell from being decoded, checked without decoding it (the file must exist): the same
    words as the in-memory decode. A file that exists but is not readable media stops training when it is reached."""
    if is_missing(value):
        return f"column '{spec.column}' is empty (no {spec.type} file)"
    if not isinstance(value, str) or "\x00" in value or len(value) > MAX_PATH:
        return f"column '{spec.column}' holds {describe(value)[:80]}, not a {spec.type} file path"
    if not (base / value).is_file():
        return f"{spec.type} file '{base / value}' not found"
    return None


def stream_input(inp, table, training: bool, seed: int) -> tuple[dict, dict]:
    """({input name: MediaColumn[, presence name: [n, 1] float32]}, {row index: problem}) without decoding a file.
    Optional inputs get the placeholders the in-memory path gives (data/optional.py): zeros, and in the training split
    a random present row's file, drawn with the same generator so both paths hold the same rows."""
    mk = kinds.modality(inp.type)
    cells, codes = distinct(table.columns[inp.column])  # each distinct cell checked (a stat) once
    gone = np.array([is_missing(v) for v in cells], bool) if inp.optional else np.zeros(len(cells), bool)
    bad = {i: p for i in np.flatnonzero(~gone) if (p := file_problem(inp, cells[i], table.base))}
    paths = expand(np.array([ZEROS if gone[i] or i in bad else str(table.base / cells[i]) for i in range(len(cells))],
                            dtype=object), codes)
    absent = expand(gone, codes)
    problems = by_row(bad, codes)
    present_idx = np.flatnonzero(~absent)
    if inp.optional and training and len(present_idx) and absent.any():
        rng = np.random.default_rng(seed)
        paths[absent] = paths[present_idx[rng.integers(0, len(present_idx), int(absent.sum()))]]
    column = MediaColumn(inp.name, paths, mk.input_shape(inp), np.dtype(mk.dtype),
                         mk.preprocess_entry(inp), inp.type)
    out = {inp.name: column}
    if inp.optional:
        out[presence_name(inp.name)] = (~absent).astype(PRESENCE_DTYPE)[:, None]
    return out, {int(i): p for i, p in problems.items()}


def media_bytes(recipe, n_rows: int) -> int:
    """Decoded size of the streamable inputs over n_rows rows: what the in-memory path would hold."""
    total = 0
    for inp in recipe.inputs:
        mk = kinds.modality(inp.type)
        if mk.streamable:
            total += n_rows * int(np.prod(mk.input_shape(inp))) * np.dtype(mk.dtype).itemsize
    return total


def use_streaming(recipe, n_rows: int) -> bool:
    """data.streaming: stream / memory, or auto: stream when the decoded media would exceed data.stream_above_mb."""
    data = recipe.data
    if data.streaming != "auto":
        return data.streaming == "stream"
    return media_bytes(recipe, n_rows) > data.stream_above_mb * 2 ** 20


def in_memory(x: dict) -> dict:
    """A split's inputs with every MediaColumn decoded: for code that needs arrays (the parity gate, the runtime's
    batched bench); it holds the split's decoded media in memory."""
    return {k: (np.asarray(v) if isinstance(v, MediaColumn) else v) for k, v in x.items()}
