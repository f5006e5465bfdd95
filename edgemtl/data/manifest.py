"""Read a manifest (CSV, JSONL or .npz) into columns, apply row filters, and split rows."""
import csv
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EdgemtlError
from ..kinds.base import is_missing
from ..recipe.schema import SplitSpec

log = logging.getLogger("edgemtl")


@dataclass
class Table:
    path: Path
    columns: dict  # name -> list (csv/jsonl) or np.ndarray (npz)
    row_ids: np.ndarray  # 1-based data row numbers in the source file, kept through filtering

    @property
    def n_rows(self) -> int:
        return len(self.row_ids)

    @property
    def base(self) -> Path:
        return self.path.parent

    def take(self, mask_or_index) -> "Table":
        idx = np.arange(self.n_rows)[mask_or_index]
        cols = {k: (v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx]) for k, v in self.columns.items()}
        return Table(self.path, cols, self.row_ids[idx])

    def where(self, row_index: int) -> str:
        return f"{self.path.name} row {self.row_ids[row_index]}"


def read_table(path, fmt: str = "auto") -> Table:
    path = Path(path)
    if fmt == "auto":
        fmt = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".npz": "npz"}.get(path.suffix.lower())
        if fmt is None:
            raise EdgemtlError(f"{path.name}: cannot tell the format from the extension; set data.format")
    try:
        return {"csv": _read_csv, "jsonl": _read_jsonl, "npz": _read_npz}[fmt](path)
    except (UnicodeDecodeError, csv.Error, json.JSONDecodeError, ValueError, OSError) as e:
        if isinstance(e, EdgemtlError):
            raise
        raise EdgemtlError(f"{path.name}: not a readable {fmt} manifest ({e})") from None


# utf-8-sig: a UTF-8 file with a byte-order mark (Excel writes one) reads as without it
ENCODING = "utf-8-sig"


def _read_csv(path: Path) -> Table:
    with open(path, newline="", encoding=ENCODING) as f:
        reader = csv.reader(f)
        names = next(reader, [])
        rows = [r for r in reader if r]
    if not names:
        raise EdgemtlError(f"{path.name}: the CSV has no header row")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise EdgemtlError(f"{path.name}: header names column '{repeated[0]}' more than once")
    for i, r in enumerate(rows, 1):
        if len(r) != len(names):
            raise EdgemtlError(f"{path.name} row {i}: {len(r)} fields, the header has {len(names)} (a missing or "
                               f"unquoted comma?)")
    cols = {n: [r[j] for r in rows] for j, n in enumerate(names)}
    return Table(path, cols, np.arange(1, len(rows) + 1))


def _read_jsonl(path: Path) -> Table:
    rows = []
    for i, line in enumerate(path.read_text(encoding=ENCODING).splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise EdgemtlError(f"{path.name} line {i}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise EdgemtlError(f"{path.name} line {i}: expected a JSON object of column: value, got "
                                   f"{type(row).__name__}")
            rows.append(row)
    names = list(dict.fromkeys(k for r in rows for k in r))
    return Table(path, {n: [r.get(n) for r in rows] for n in names}, np.arange(1, len(rows) + 1))


def _read_npz(path: Path) -> Table:
    with np.load(path, allow_pickle=False) as z:
        cols = {k: z[k] for k in z.files}
    if not cols:
        raise EdgemtlError(f"{path.name}: holds no arrays")
    flat = [k for k, v in cols.items() if v.ndim == 0]
    if flat:
        raise EdgemtlError(f"{path.name}: array '{flat[0]}' is a single value (0-d); every array needs one entry "
                           f"per row")
    lengths = {len(v) for v in cols.values()}
    if len(lengths) != 1:
        raise EdgemtlError(f"{path.name}: arrays have different numbers of rows {sorted(lengths)}")
    cols = {k: (list(v.astype(str)) if v.dtype.kind in "US" else v) for k, v in cols.items()}
    return Table(path, cols, np.arange(1, lengths.pop() + 1))


def apply_filters(table: Table, filters: list) -> Table:
    mask = np.ones(table.n_rows, dtype=bool)
    for f in filters:
        values = table.columns[f.column]
        as_text = [None if is_missing(v) else str(v) for v in values]
        if f.in_ is not None:
            keep = {str(x) for x in f.in_}
            mask &= np.array([v in keep for v in as_text])
        if f.not_in is not None:
            drop = {str(x) for x in f.not_in}
            mask &= np.array([v not in drop for v in as_text])
        if f.not_empty:
            mask &= np.array([v is not None for v in as_text])
    return table.take(mask)


def split_rows(table: Table, split: SplitSpec, seed: int) -> dict[str, np.ndarray]:
    """Return row indices of train / val / test."""
    rng = np.random.default_rng(split.seed if split.seed is not None else seed)
    if split.column:
        values = np.array([str(v) for v in table.columns[split.column]])
        named = [v for v in (split.train, split.val, split.test) if v is not None]
        stray = np.flatnonzero(~np.isin(values, named))
        if len(stray):  # said, not silent: such rows are in no split
            log.warning(f"{table.where(stray[0])}: {split.column} is '{values[stray[0]][:60]}', none of "
                        f"{', '.join(named)}: {len(stray)} such row(s) are left out of every split")
        train = np.flatnonzero(values == split.train)
        test = np.flatnonzero(values == split.test)
        val = np.flatnonzero(values == split.val) if split.val else []
        if split.val and not len(val):  # e.g. the demo recipe run on the full data, which has no val rows
            print(f"{table.path.name}: no row has {split.column} '{split.val}'; holding out data.split."
                  f"val_fraction {split.val_fraction} of the training rows for validation", file=sys.stderr)
        if not len(val):
            train = rng.permutation(train)
            n_val = int(round(len(train) * split.val_fraction))
            val, train = np.sort(train[:n_val]), np.sort(train[n_val:])
    else:
        order = rng.permutation(table.n_rows)
        n_train = int(round(split.ratios[0] * table.n_rows))
        n_val = int(round(split.ratios[1] * table.n_rows))
        train, val, test = (np.sort(order[:n_train]), np.sort(order[n_train:n_train + n_val]),
                            np.sort(order[n_train + n_val:]))
    if split.train_on_val:
        train = np.union1d(train, val)
    return {"train": train, "val": val, "test": test}
