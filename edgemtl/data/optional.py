"""Optional inputs in data preparation: an empty cell marks the input absent for that row (presence 0), never a
bad row. The absent rows get a placeholder array: zeros, as the runtime feeds, except in the training split, where
they copy a random present row's value (the graph discards the encoder's vector of an absent row, but batch
normalisation inside the encoder still sees the placeholder in training: real values keep its statistics those of
real inputs)."""
import numpy as np

from .. import kinds
from ..kinds.base import is_missing
from ..presence import PRESENCE_DTYPE, presence_name
from .column import distinct, expand


def absent_rows(inp, table) -> np.ndarray:
    """True where every column the input reads is empty."""
    absent = np.ones(table.n_rows, bool)
    for c in kinds.modality(inp.type).columns(inp):
        cells, codes = distinct(table.columns[c])
        absent &= expand(np.array([is_missing(v) for v in cells], bool), codes)
    return absent


def decode_optional(inp, table, tokenizer, training: bool, seed: int) -> tuple[dict, dict]:
    """({input name: array, presence name: [n, 1] float32}, {row index: problem}) for an optional input."""
    mk = kinds.modality(inp.type)
    absent = absent_rows(inp, table)
    present_idx = np.flatnonzero(~absent)
    values, problems = mk.decode(inp, table.take(present_idx), tokenizer)
    out = np.zeros((table.n_rows, *values.shape[1:]), values.dtype)
    out[present_idx] = values
    if training and len(present_idx) and absent.any():
        rng = np.random.default_rng(seed)
        out[absent] = values[rng.integers(0, len(present_idx), int(absent.sum()))]
    presence = (~absent).astype(PRESENCE_DTYPE)[:, None]
    return {inp.name: out, presence_name(inp.name): presence}, {int(present_idx[i]): p for i, p in problems.items()}
