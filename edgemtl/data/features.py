"""Decode each input's column into model-ready arrays with the shared preprocessing (edgemtl.preprocess)."""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..recipe.schema import InputSpec
from .. import preprocess
from ..progress import Progress
from .manifest import Table, is_missing


def clip_samples(inp: InputSpec) -> int:
    return int(round(inp.sample_rate * inp.clip_seconds))


def decode_input(inp: InputSpec, table: Table, tokenizer=None) -> tuple[np.ndarray, dict]:
    """Return (array for all rows, {row index: problem}) for one recipe input."""
    kind = inp.type
    if kind in ("image", "audio"):
        return _decode_media(inp, table)
    if kind == "text":
        texts = table.columns[inp.column]
        return np.stack([tokenizer.encode("" if is_missing(t) else t, inp.max_length) for t in texts]) \
            if texts else np.zeros((0, inp.max_length), np.int32), {}
    if kind == "numeric":
        return _decode_numeric(inp, table)
    return _decode_sequence(inp, table)


def _decode_media(inp: InputSpec, table: Table):
    paths = table.columns[inp.column]
    if inp.type == "image":
        shape, dtype = (*inp.size, inp.channels), np.uint8

        def load(p):
            return preprocess.load_image(table.base / p, inp.size, inp.channels)
    else:
        shape, dtype = (clip_samples(inp),), np.float32

        def load(p):
            return preprocess.load_audio(table.base / p, inp.sample_rate, shape[0])
    out = np.zeros((len(paths), *shape), dtype=dtype)
    bad = {}

    def work(i):
        p = paths[i]
        if is_missing(p):
            bad[i] = f"column '{inp.column}' is empty (no {inp.type} file)"
            return
        try:
            out[i] = load(p)
        except preprocess.BadInput as e:
            bad[i] = str(e)

    bar = Progress(len(paths), f"decode {inp.name}")
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        for _ in pool.map(work, range(len(paths))):
            bar.update()
    bar.close()
    return out, bad


def _decode_numeric(inp: InputSpec, table: Table):
    out = np.zeros((table.n_rows, len(inp.columns)), dtype=np.float32)
    bad = {}
    for j, col in enumerate(inp.columns):
        for i, v in enumerate(table.columns[col]):
            try:
                out[i, j] = float(v)
                if not np.isfinite(out[i, j]):
                    raise ValueError
            except (TypeError, ValueError):
                bad[i] = f"numeric column '{col}' has {v!r}, not a number"
    return out, bad


def _decode_sequence(inp: InputSpec, table: Table):
    column = table.columns[inp.column]
    shape = (inp.length, inp.channels)
    bad = {}
    if isinstance(column, np.ndarray) and column.ndim == 3:
        if column.shape[1:] != shape:
            bad = {i: f"sequence '{inp.column}' has shape {column.shape[1:]}, expected {shape}"
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
