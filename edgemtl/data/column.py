"""A manifest column held compactly: each row's integer code into the column's distinct values.

A CSV cell read as a Python string costs ~60 bytes a row and column (the object and its list slot); a label column
has a few dozen distinct values, so codes cost 4 bytes a row and the values are held once. Reading a CSV this way
(and only the columns a recipe reads) keeps `prepare` from growing ~0.9 KB a row (bench/results/memory.md). The
column reads as the list of cells it replaces: len, index, iterate, slice. Work done per cell of such a column
(a missing check, a file check, a tokenization) is done once per distinct value with `distinct`.
"""
from array import array
from collections.abc import Sequence

import numpy as np

CODE = np.int32
CHUNK = 65536  # codes turned into Python ints at a time while iterating


class CodedColumn(Sequence):
    __slots__ = ("codes", "values")

    def __init__(self, codes: np.ndarray, values: list):
        self.codes = codes  # int32, one per row
        self.values = values  # the distinct cells, shared by every slice of the column

    @classmethod
    def encode(cls, cells) -> "CodedColumn":
        """Hashable cells -> a column; the values in order of first appearance."""
        lookup, codes = {}, array("i")
        for cell in cells:
            codes.append(lookup.setdefault(cell, len(lookup)))
        return cls(np.frombuffer(codes, CODE) if codes else np.zeros(0, CODE), list(lookup))

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.values[self.codes[index]]
        return CodedColumn(self.codes[index], self.values)

    def __iter__(self):
        values = self.values
        for start in range(0, len(self.codes), CHUNK):
            for code in self.codes[start:start + CHUNK].tolist():
                yield values[code]

    def __add__(self, other) -> list:  # concatenation gives the list of cells, as a list's would
        return [*self, *other]

    def __radd__(self, other) -> list:
        return [*other, *self]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.array(self.values, dtype=object)[self.codes] if len(self.values) else np.zeros(len(self), object)
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"CodedColumn({len(self)} rows, {len(self.values)} distinct)"


def distinct(column) -> tuple[Sequence, np.ndarray | None]:
    """(the distinct cells this column's rows use, each row's index into them). Any other sequence: its cells as
    they are and None (each row its own cell), so one code path serves both; see expand."""
    if isinstance(column, CodedColumn):
        used, inverse = np.unique(column.codes, return_inverse=True)
        return [column.values[u] for u in used.tolist()], inverse.reshape(-1).astype(CODE)
    return column, None


def expand(values: np.ndarray, codes: np.ndarray | None) -> np.ndarray:
    """An array with one entry per distinct cell (distinct's first item) -> one entry per row."""
    return values if codes is None else values[codes]


def by_row(found: dict, codes: np.ndarray | None) -> dict:
    """{distinct index: x} -> {row: x} for every row holding one of those cells."""
    if codes is None:
        return {int(i): x for i, x in found.items()}
    return {int(i): found[int(codes[i])] for i in np.flatnonzero(np.isin(codes, list(found)))}
