"""Read a manifest (CSV, JSONL or .npz) into columns, apply row filters, and split rows."""
import csv
import io
import json
import logging
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import EdgemtlError
from ..kinds.base import is_missing
from ..recipe.schema import SplitSpec
from .column import CODE, CodedColumn

log = logging.getLogger("edgemtl")


@dataclass
class Table:
    path: Path
    columns: dict  # name -> CodedColumn (csv), list (jsonl) or np.ndarray (npz)
    row_ids: np.ndarray  # 1-based data row numbers in the source file, kept through filtering
    metadata: dict = field(default_factory=dict)  # npz arrays that are not one entry per row: name -> array
    header: tuple = ()  # every column the file has, read or not (a CSV read for a recipe holds only its columns)

    @property
    def names(self) -> tuple:
        """The file's column names: what a recipe may name (and what a misspelt name is matched against)."""
        return self.header or tuple(self.columns)

    @property
    def n_rows(self) -> int:
        return len(self.row_ids)

    @property
    def base(self) -> Path:
        return self.path.parent

    def take(self, mask_or_index) -> "Table":
        idx = np.arange(self.n_rows)[mask_or_index]
        cols = {k: (v[idx] if isinstance(v, (np.ndarray, CodedColumn)) else [v[i] for i in idx])
                for k, v in self.columns.items()}
        return Table(self.path, cols, self.row_ids[idx], self.metadata, self.header)

    def where(self, row_index: int) -> str:
        return f"{self.path.name} row {self.row_ids[row_index]}"


def read_table(path, fmt: str = "auto", wanted: tuple = ()) -> Table:
    """wanted: the columns a recipe reads (an npz's row count is theirs; arrays of another length are metadata; a CSV
    keeps only these, when given)."""
    path = Path(path)
    if fmt == "auto":
        fmt = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".npz": "npz"}.get(path.suffix.lower())
        if fmt is None:
            raise EdgemtlError(f"{path.name}: cannot tell the format from the extension; set data.format")
    try:
        if fmt == "npz":
            return _read_npz(path, tuple(wanted))
        if fmt == "csv":
            return _read_csv(path, tuple(wanted))
        return _read_jsonl(path)
    except (UnicodeDecodeError, csv.Error, json.JSONDecodeError, ValueError, OSError) as e:
        if isinstance(e, EdgemtlError):
            raise
        raise EdgemtlError(f"{path.name}: not a readable {fmt} manifest ({e})") from None


# utf-8-sig: a UTF-8 file with a byte-order mark (Excel writes one) reads as without it
ENCODING = "utf-8-sig"


def _read_csv(path: Path, wanted: tuple = ()) -> Table:
    """Every column, or only `wanted` (and any it names that the header lacks is left to the caller to report), each
    a CodedColumn filled row by row: the rows themselves are never held."""
    with open(path, newline="", encoding=ENCODING) as f:
        reader = csv.reader(f)
        names = next(reader, [])
        if not names:
            raise EdgemtlError(f"{path.name}: the CSV has no header row")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise EdgemtlError(f"{path.name}: header names column '{repeated[0]}' more than once")
        keep = [j for j, n in enumerate(names) if not wanted or n in wanted]
        lookups, codes = [{} for _ in keep], [array("i") for _ in keep]
        n_rows = 0
        for r in reader:
            if not r:
                continue
            n_rows += 1
            if len(r) != len(names):
                raise EdgemtlError(f"{path.name} row {n_rows}: {len(r)} fields, the header has {len(names)} (a "
                                   f"missing or unquoted comma?)")
            for j, lookup, out in zip(keep, lookups, codes):
                out.append(lookup.setdefault(r[j], len(lookup)))
    cols = {names[j]: CodedColumn(np.frombuffer(c, CODE) if c else np.zeros(0, CODE), list(lookup))
            for j, lookup, c in zip(keep, lookups, codes)}
    return Table(path, cols, np.arange(1, n_rows + 1), header=tuple(names))


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


def _read_npz(path: Path, wanted: tuple = ()) -> Table:
    """Arrays with one entry per row are columns; 0-d arrays and arrays whose first dimension is not the row count
    (channel names, class names, a sample rate) are metadata. The row count is the first dimension the recipe's
    columns share (without them: the most common one)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if not arrays:
        raise EdgemtlError(f"{path.name}: holds no arrays")
    read = [k for k in wanted if k in arrays]
    flat = [k for k in read if arrays[k].ndim == 0]
    if flat:
        raise EdgemtlError(f"{path.name}: array '{flat[0]}' is a single value (0-d, metadata); the recipe reads it as "
                           f"a column, which needs one entry per row")
    lengths = {k: len(arrays[k]) for k in read}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"'{k}' {n}" for k, n in lengths.items())
        raise EdgemtlError(f"{path.name}: the arrays the recipe reads have different numbers of rows: {listed}")
    if lengths:
        n_rows = next(iter(lengths.values()))
    else:
        counts = Counter(len(v) for v in arrays.values() if v.ndim)
        if not counts:
            raise EdgemtlError(f"{path.name}: every array is a single value (0-d); none has one entry per row")
        n_rows = max(counts, key=lambda n: (counts[n], n))
    cols = {k: v for k, v in arrays.items() if v.ndim and len(v) == n_rows}
    metadata = {k: v for k, v in arrays.items() if k not in cols}
    cols = {k: (list(v.astype(str)) if v.dtype.kind in "US" else v) for k, v in cols.items()}
    return Table(path, cols, np.arange(1, n_rows + 1), metadata)


def describe_metadata(metadata: dict) -> list[str]:
    """One short line per metadata array: `channels: 16 str ['ax', 'ay', ...]`, `sample_rate: 50 (0-d)`."""
    lines = []
    for name, v in metadata.items():
        if v.ndim == 0:
            lines.append(f"{name}: {v.item()!r} (0-d)")
            continue
        shown = ", ".join(repr(x.item() if hasattr(x, "item") else x) for x in v.reshape(-1)[:4])
        more = ", ..." if v.size > 4 else ""
        dtype = "str" if v.dtype.kind in "US" else v.dtype.name
        lines.append(f"{name}: {'x'.join(map(str, v.shape))} {dtype} [{shown}{more}]")
    return lines


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


SPLIT_NAMES = ("train", "val", "test")


def split_rows(table: Table, split: SplitSpec, seed: int, saved: Path | None = None) -> dict[str, np.ndarray]:
    """Row indices of train / val / test. saved: a split file (RUN/preprocess/split.csv) to reuse when it exists
    (and to write when it does not), so evaluate, --resume, export and bench read the rows training split."""
    if saved is not None and Path(saved).is_file():
        base = read_split(Path(saved), table, split)
    else:
        base = assign_splits(table, split, seed)
        if saved is not None:
            write_split(Path(saved), table, base, split)
    train = np.union1d(base["train"], base["val"]) if split.train_on_val else base["train"]
    return {"train": train, "val": base["val"], "test": base["test"]}


def assign_splits(table: Table, split: SplitSpec, seed: int) -> dict[str, np.ndarray]:
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
        val = np.flatnonzero(values == split.val) if split.val else np.array([], dtype=np.int64)
        if split.val and not len(val):  # e.g. the demo recipe run on the full data, which has no val rows
            log.info(f"{table.path.name}: no row has {split.column} '{split.val}'; holding out data.split."
                     f"val_fraction {split.val_fraction} of the training rows for validation")
        if not len(val):
            train = rng.permutation(train)
            n_val = int(round(len(train) * split.val_fraction))
            val, train = np.sort(train[:n_val]), np.sort(train[n_val:])
        return {"train": train, "val": val, "test": test}
    if split.group:
        return _group_split(table, split, rng)
    order = rng.permutation(table.n_rows)
    n_train = int(round(split.ratios[0] * table.n_rows))
    n_val = int(round(split.ratios[1] * table.n_rows))
    return {"train": np.sort(order[:n_train]), "val": np.sort(order[n_train:n_train + n_val]),
            "test": np.sort(order[n_train + n_val:])}


def group_keys(table: Table, column: str) -> np.ndarray:
    """Each row's group as text; a row with an empty group cell is a group of its own."""
    return np.array([f"\x00row{table.row_ids[i]}" if is_missing(v) else str(v)
                     for i, v in enumerate(table.columns[column])], dtype=object)


def _group_split(table: Table, split: SplitSpec, rng) -> dict[str, np.ndarray]:
    """Groups shuffled with the seed, then filled into train, val and test in turn: a group joins the split its
    middle row falls in by the ratios of rows. With 2 groups or more, train and test get at least one each."""
    keys = group_keys(table, split.group)
    empty = sum(k.startswith("\x00") for k in keys)
    if empty:
        log.warning(f"{table.path.name}: {empty} row(s) have an empty data.split.group '{split.group}'; each is split "
                    f"as a group of its own")
    groups, inverse, sizes = np.unique(keys, return_inverse=True, return_counts=True)
    order = rng.permutation(len(groups))
    middle = (np.cumsum(sizes[order]) - sizes[order] / 2) / table.n_rows
    bounds = np.cumsum(split.ratios)[:2]
    where = np.searchsorted(bounds, middle, side="right")  # 0 train, 1 val, 2 test, by position in `order`
    if len(groups) >= 2:
        if not (where == 2).any():
            where[-1] = 2
        if not (where == 0).any():
            where[0] = 0
    if split.ratios[1] > 0 and not (where == 1).any() and (where == 0).sum() >= 2:
        where[np.flatnonzero(where == 0)[-1]] = 1  # the last train group validates
    split_of_group = np.empty(len(groups), dtype=np.int64)
    split_of_group[order] = where
    row_split = split_of_group[inverse]
    return {name: np.flatnonzero(row_split == i) for i, name in enumerate(SPLIT_NAMES)}


SPLIT_HEADER = ("row", "split")  # then the group column's values, when data.split.group is set


def write_split(path: Path, table: Table, index: dict, split: SplitSpec) -> None:
    """RUN/preprocess/split.csv: `row` (the 1-based data row of the manifest, as in error messages), `split`
    (train | val | test; rows in no split are not listed) and, with data.split.group, the group column."""
    from ..rundir import atomic_write_text

    group = group_keys(table, split.group) if split.group else None
    header = SPLIT_HEADER + ((split.group,) if group is not None else ())
    rows = sorted((int(i), name) for name in SPLIT_NAMES for i in index[name])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for i, name in rows:
        cell = [] if group is None else ["" if group[i].startswith("\x00") else group[i]]
        writer.writerow([int(table.row_ids[i]), name, *cell])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buf.getvalue())


def read_split(path: Path, table: Table, split: SplitSpec) -> dict[str, np.ndarray]:
    """A split file back to row indices of `table`; it must describe this manifest's rows (and groups)."""
    with open(path, newline="", encoding=ENCODING) as f:
        records = list(csv.reader(f))
    if not records or tuple(records[0][:2]) != SPLIT_HEADER:
        raise EdgemtlError(f"{path}: not a split file (its header must start with {','.join(SPLIT_HEADER)})")
    position = {int(r): i for i, r in enumerate(table.row_ids)}
    group = group_keys(table, split.group) if split.group else None
    index = {name: [] for name in SPLIT_NAMES}
    for n, record in enumerate(records[1:], 2):
        where = f"{path} line {n}"
        if len(record) < 2 or record[1] not in index or not record[0].isdigit():
            raise EdgemtlError(f"{where}: expected a manifest row number and one of {', '.join(SPLIT_NAMES)}")
        i = position.get(int(record[0]))
        if i is None:
            raise EdgemtlError(f"{where}: row {record[0]} is not among the {table.n_rows} rows of {table.path.name} "
                               f"this recipe reads; the data changed since the run was split (use another --out, "
                               f"or --overwrite to split again)")
        if group is not None and len(record) > 2 and record[2] != ("" if group[i].startswith("\x00") else group[i]):
            raise EdgemtlError(f"{where}: row {record[0]} has {split.group} '{record[2]}' here and "
                               f"'{group[i]}' in {table.path.name}; the data changed since the run was split")
        index[record[1]].append(i)
    listed = sum(len(v) for v in index.values())
    log.debug(f"{path}: reused the split of {listed} rows")
    return {name: np.array(sorted(v), dtype=np.int64) for name, v in index.items()}
