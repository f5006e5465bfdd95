"""From a recipe to decoded, split, label-encoded arrays; vocabularies learned on the training split only."""
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..recipe.schema import Recipe
from ..errors import EdgemtlError
from ..preprocess import Tokenizer
from ..errors import did_you_mean
from .. import jsonio
from ..rundir import LABELS_FILE, vocab_file_name
from .features import decode_input
from .labels import encode_labels, learn_label_spec
from .manifest import Table, apply_filters, read_table, split_rows

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    x: dict  # feature name -> array
    y: dict  # task name -> encoded labels (missing = -1 / NaN)
    rows: np.ndarray  # 1-based row numbers in the manifest

    def __len__(self):
        return len(self.rows)


@dataclass
class Prepared:
    splits: dict  # "train" | "val" | "test" -> Split
    labels: dict  # task -> label spec (classes or mean/std)
    tokenizers: dict  # text input -> Tokenizer
    skipped: list = field(default_factory=list)  # "manifest row N: problem" for rows skipped by on_bad_row: skip
    row_counts: dict = field(default_factory=dict)  # rows per split in the manifest (before any bad-row skip)

    def __getitem__(self, name) -> Split:
        return self.splits[name]


def load_table(recipe: Recipe) -> Table:
    data = recipe.data
    table = read_table(data.source, data.format)
    problems = missing_columns(recipe, table)
    if problems:
        raise EdgemtlError(*problems)
    table = apply_filters(table, data.filters)
    if data.limit:
        table = table.take(slice(0, data.limit))
    if table.n_rows == 0:
        raise EdgemtlError(f"{table.path.name}: no rows left after data.filters")
    return table


def missing_columns(recipe: Recipe, table: Table) -> list[str]:
    wanted = []
    for i, inp in enumerate(recipe.inputs):
        cols = inp.columns if inp.type == "numeric" else [inp.column]
        wanted += [(f"inputs[{i}].column{'s' if inp.type == 'numeric' else ''}", c) for c in cols]
    wanted += [(f"tasks[{i}].column", t.column) for i, t in enumerate(recipe.tasks)]
    split = recipe.data.split
    if split.column:
        wanted.append(("data.split.column", split.column))
    wanted += [(f"data.filters[{i}].column", f.column) for i, f in enumerate(recipe.data.filters)]
    return [f"{table.path.name}: {where}: no column '{col}'{did_you_mean(col, table.columns)}"
            for where, col in wanted if col not in table.columns]


def label_problems(recipe: Recipe, labels: dict) -> list[str]:
    out = []
    for i, t in enumerate(recipe.tasks):
        spec = labels[t.name]
        n = len(spec.get("classes", []))
        if t.type in ("multiclass", "multilabel") and n < 2:
            out.append(f"tasks[{i}] ({t.name}): column '{t.column}' has {n} class(es) in the training split; "
                       f"a classification task needs at least 2")
        if t.type == "binary" and n != 2:
            out.append(f"tasks[{i}] ({t.name}): a binary task needs exactly 2 classes in the training split, "
                       f"column '{t.column}' has {n}: {', '.join(spec['classes'][:5])}")
    return out


def prepare(recipe: Recipe, preprocess_dir=None, rows_per_split: int | None = None, splits=SPLITS) -> Prepared:
    """Load, filter, split, learn (or reload) vocabularies, decode and encode. Saves vocabularies if given a dir.

    rows_per_split decodes only the first rows of each split (a quick check); vocabularies still see all of train.
    splits: the splits to decode (bench needs only test, so only the test rows' media files must be present).
    """
    table = load_table(recipe)
    index = split_rows(table, recipe.data.split, recipe.seed)
    if len(index["train"]) == 0:
        raise EdgemtlError(f"{table.path.name}: the training split is empty (check data.split)")
    train = table.take(index["train"])
    labels, tokenizers = _learn_or_load(recipe, train, preprocess_dir)
    problems = label_problems(recipe, labels)
    if problems:
        raise EdgemtlError(*problems)
    decoded, skipped = {}, []
    for name in splits:
        part = table.take(index[name][:rows_per_split])
        decoded[name], bad = _decode_split(recipe, part, labels, tokenizers)
        skipped += [m for m in bad if m not in skipped]  # a val row is in train too under train_on_val
    return Prepared(decoded, labels, tokenizers, skipped, {k: len(v) for k, v in index.items()})


def _learn_or_load(recipe: Recipe, train: Table, preprocess_dir):
    path = Path(preprocess_dir) if preprocess_dir else None
    if path and (path / LABELS_FILE).exists():
        labels = jsonio.read(path / LABELS_FILE, "label vocabulary")
        tokenizers = {i.name: Tokenizer.load(path / vocab_file_name(i.name), i.lowercase)
                      for i in recipe.inputs if i.type == "text"}
        return labels, tokenizers
    labels = {t.name: learn_label_spec(t, train.columns[t.column]) for t in recipe.tasks}
    tokenizers = {i.name: Tokenizer.fit(train.columns[i.column], i.vocab_size, i.lowercase)
                  for i in recipe.inputs if i.type == "text"}
    if path:
        from ..rundir import atomic_write_json

        path.mkdir(parents=True, exist_ok=True)
        for name, tok in tokenizers.items():
            tok.save(path / vocab_file_name(name))
        atomic_write_json(path / LABELS_FILE, labels)
    return labels, tokenizers


def _decode_split(recipe: Recipe, table: Table, labels: dict, tokenizers: dict):
    x, bad = {}, {}
    for inp in recipe.inputs:
        x[inp.name], problems = decode_input(inp, table, tokenizers.get(inp.name))
        for i, p in problems.items():
            bad.setdefault(i, p)
    messages = [f"{table.where(i)}: {p}" for i, p in sorted(bad.items())]
    if bad and recipe.data.on_bad_row == "error":
        more = f" (and {len(messages) - 5} more rows)" if len(messages) > 5 else ""
        raise EdgemtlError(*messages[:5], f"{len(messages)} bad row(s){more}; fix them or set data.on_bad_row: skip")
    keep = np.array([i not in bad for i in range(table.n_rows)], dtype=bool)
    if bad:
        print(f"skipped {len(bad)} bad row(s) in {table.path.name} (data.on_bad_row: skip)", file=sys.stderr)
    y = {t.name: encode_labels(labels[t.name], table.columns[t.column], t.separator)[keep]
         for t in recipe.tasks}
    return Split({k: v[keep] for k, v in x.items()}, y, table.row_ids[keep]), messages if bad else []
