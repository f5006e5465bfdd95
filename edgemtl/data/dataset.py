"""From a recipe to decoded, split, label-encoded arrays; vocabularies learned on the training split only."""
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import jsonio, kinds
from ..errors import EdgemtlError, did_you_mean
from ..kinds.base import is_missing
from ..recipe.schema import Recipe
from ..runcheck import check_labels
from ..rundir import LABELS_FILE, SPLIT_FILE
from .column import CodedColumn, by_row, distinct
from .manifest import Table, apply_filters, read_table, split_rows
from .media import MediaColumn, media_bytes, stream_input, use_streaming
from .optional import decode_optional

SPLITS = ("train", "val", "test")
log = logging.getLogger("edgemtl")


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
    metadata: dict = field(default_factory=dict)  # npz arrays that are not one entry per row (never model input)
    streaming: bool = False  # image/audio inputs are MediaColumns decoded in the tf.data pipeline (data/media.py)

    def __getitem__(self, name) -> Split:
        return self.splits[name]


def load_table(recipe: Recipe) -> Table:
    """The manifest's rows the recipe uses (filtered, limited), with integer label codes named (tasks[].labels)."""
    data = recipe.data
    table = read_table(data.source, data.format, wanted=tuple(c for _, c in recipe_columns(recipe)))
    problems = missing_columns(recipe, table)
    if problems:
        raise EdgemtlError(*problems)
    table = apply_filters(table, data.filters)
    if data.limit:
        table = table.take(slice(0, data.limit))
    if table.n_rows == 0:
        raise EdgemtlError(f"{table.path.name}: no rows left after data.filters")
    return name_label_codes(recipe, table)


def recipe_columns(recipe: Recipe) -> list[tuple[str, str]]:
    """(recipe key, column) for every manifest column the recipe reads."""
    wanted = []
    for i, inp in enumerate(recipe.inputs):
        mk = kinds.modality(inp.type)
        wanted += [(f"inputs[{i}].{mk.column_key(inp)}", c) for c in mk.columns(inp)]
    wanted += [(f"tasks[{i}].column", t.column) for i, t in enumerate(recipe.tasks)]
    split = recipe.data.split
    if split.column:
        wanted.append(("data.split.column", split.column))
    if split.group:
        wanted.append(("data.split.group", split.group))
    wanted += [(f"data.filters[{i}].column", f.column) for i, f in enumerate(recipe.data.filters)]
    return wanted


def missing_columns(recipe: Recipe, table: Table) -> list[str]:
    return [f"{table.path.name}: {where}: no column '{col}'{did_you_mean(col, table.names)}"
            for where, col in recipe_columns(recipe) if col not in table.names]


def label_names(recipe: Recipe, table: Table) -> dict[str, tuple[str, ...]]:
    """Task -> the names of its integer label codes (tasks[].labels, or the npz array tasks[].labels_array)."""
    names, problems = {}, []
    for i, t in enumerate(recipe.tasks):
        if t.labels is not None:
            names[t.name] = tuple(t.labels)
        elif t.labels_array is not None:
            where = f"{table.path.name}: tasks[{i}].labels_array"
            array = table.metadata.get(t.labels_array)
            if array is None and isinstance(table.columns.get(t.labels_array), np.ndarray):
                array = table.columns[t.labels_array]  # as many names as rows: read as a column, still names
            if array is None:
                held = [*table.metadata, *table.columns]
                problems.append(f"{where}: no array '{t.labels_array}'{did_you_mean(t.labels_array, held)}")
            elif array.ndim != 1 or array.dtype.kind not in "US":
                problems.append(f"{where}: array '{t.labels_array}' is {array.dtype.name} of shape "
                                f"{list(array.shape)}; label names are a 1-d array of strings")
            else:
                names[t.name] = tuple(str(n) for n in array)
                if len(set(names[t.name])) != len(array):
                    problems.append(f"{where}: array '{t.labels_array}' names a class more than once")
    if problems:
        raise EdgemtlError(*problems)
    return names


def name_label_codes(recipe: Recipe, table: Table) -> Table:
    """Label columns of integer codes -> their class names; a code outside the names stops with its row."""
    names = label_names(recipe, table)
    if not names:
        return table
    columns, problems = dict(table.columns), []
    for i, t in enumerate(recipe.tasks):
        if t.name not in names:
            continue
        named, n = names[t.name], len(names[t.name])
        out = []
        for row, value in enumerate(table.columns[t.column]):
            code = None if is_missing(value) else _label_code(value)
            if not is_missing(value) and (code is None or code >= n):
                shown = value.item() if isinstance(value, np.generic) else value
                problems.append(f"{table.where(row)}: tasks[{i}] ({t.name}) column '{t.column}' has {shown!r}, not "
                                f"a code 0-{n - 1} of the task's {n} label names")
                break
            out.append(None if code is None else named[code])
        columns[t.column] = CodedColumn.encode(out)
    if problems:
        raise EdgemtlError(*problems)
    return Table(table.path, columns, table.row_ids, table.metadata, table.header)


def _label_code(value) -> int | None:
    """An integer label code (3, 3.0, "3"), or None for a non-integer cell."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() and number >= 0 else None


def label_problems(recipe: Recipe, labels: dict) -> list[str]:
    return [p for i, t in enumerate(recipe.tasks)
            for p in kinds.task_kind(t.type).label_problems(t, labels[t.name], f"tasks[{i}] ({t.name})")]


def prepare(recipe: Recipe, preprocess_dir=None, rows_per_split: int | None = None, splits=SPLITS,
            adopt=None) -> Prepared:
    """Load, filter, split, learn (or reload) vocabularies, decode and encode. Saves vocabularies if given a dir.

    rows_per_split decodes only the first rows of each split (a quick check); vocabularies still see all of train.
    splits: the splits to decode (bench needs only test, so only the test rows' media files must be present).
    adopt(labels, tokenizers) -> (labels, tokenizers): what an incremental run takes from its source run
    (train/from_run.py), applied to freshly learned vocabularies before they are saved.
    """
    table = load_table(recipe)
    problems = label_cell_problems(recipe, table)
    if problems:
        raise EdgemtlError(*problems)
    saved = Path(preprocess_dir) / SPLIT_FILE if preprocess_dir else None
    index = split_rows(table, recipe.data.split, recipe.seed, saved)
    for name, what in (("train", "training"), ("test", "test")):  # evaluate, export and bench read the test rows
        if len(index[name]) == 0:
            raise EdgemtlError(f"{table.path.name}: the {what} split is empty (check data.split)")
    train = table.take(index["train"])
    labels, tokenizers = _learn_or_load(recipe, train, preprocess_dir, adopt)
    problems = label_problems(recipe, labels)
    if problems:
        raise EdgemtlError(*problems)
    for message in unseen_label_warnings(recipe, table, index, labels):
        log.warning(message)
    decoded, skipped = {}, []
    streaming = use_streaming(recipe, sum(len(index[n][:rows_per_split]) for n in splits))
    if streaming:
        size = media_bytes(recipe, sum(len(index[n][:rows_per_split]) for n in splits)) / 2 ** 20
        log.info(f"streaming: image/audio files are decoded in the input pipeline (decoded {size:.0f} MB; "
                 f"data.streaming: {recipe.data.streaming})")
    for name in splits:
        part = table.take(index[name][:rows_per_split])
        decoded[name], bad = _decode_split(recipe, part, labels, tokenizers, training=name == "train",
                                           streaming=streaming)
        skipped += [m for m in bad if m not in skipped]  # a val row is in train too under train_on_val
    if "train" in decoded and len(decoded["train"]) == 0:
        first = f" (first: {skipped[0]})" if skipped else ""
        raise EdgemtlError(f"{table.path.name}: every training row was skipped as bad{first}")
    return Prepared(decoded, labels, tokenizers, skipped, {k: len(v) for k, v in index.items()}, table.metadata,
                    streaming)


def label_cell_problems(recipe: Recipe, table: Table) -> list[str]:
    """Label cells a task cannot read: lists or mappings (JSONL), and for tasks without classes (regression) anything
    but a finite number. Missing cells are fine (masked); the first bad row of each task is named."""
    problems = []
    for i, t in enumerate(recipe.tasks):
        numeric = not kinds.task_kind(t.type).has_classes
        cells, codes = distinct(table.columns[t.column])  # each distinct cell checked once
        bad = by_row({k: p for k, v in enumerate(cells) if (p := _label_cell_problem(v, numeric))}, codes)
        if bad:
            row = min(bad)
            problems.append(f"{table.where(row)}: tasks[{i}] ({t.name}) column '{t.column}' {bad[row]}")
    return problems


def _label_cell_problem(value, numeric: bool) -> str | None:
    if is_missing(value):
        return None
    if isinstance(value, (list, dict)):
        return f"holds a {type(value).__name__}, not one label"
    if not numeric:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"has {str(value)[:60]!r}, not a number"
    return None if math.isfinite(number) else f"has {value!r}: a label must be a finite number"


def unseen_label_warnings(recipe: Recipe, table: Table, index: dict, labels: dict) -> list[str]:
    """One message per task and split whose validation/test rows carry labels absent from the training split: the
    model cannot predict them (masked in training, scored as errors)."""
    messages = []
    for i, t in enumerate(recipe.tasks):
        kind = kinds.task_kind(t.type)
        for split in ("val", "test"):
            column = table.columns[t.column]
            rows = [column[j] for j in index[split]]
            count, examples = kind.unseen_labels(labels[t.name], rows, t.separator)
            if count:
                shown = ", ".join(f"'{e}'" for e in examples)
                no_score = kind.unseen_rows_scored and count == _labelled(rows)
                effect = f"the task has no {split} score" if no_score else kind.unseen_effect
                messages.append(f"tasks[{i}] ({t.name}): {count} of {len(rows)} {split} rows carry labels absent "
                                f"from the training split, e.g. {shown}; {effect}")
    return messages


def _labelled(values) -> int:
    return sum(not is_missing(v) for v in values)


def _learn_or_load(recipe: Recipe, train: Table, preprocess_dir, adopt=None):
    path = Path(preprocess_dir) if preprocess_dir else None
    vocab_inputs = [i for i in recipe.inputs if kinds.modality(i.type).has_vocabulary]
    if path and (path / LABELS_FILE).exists():
        labels = check_labels(jsonio.read(path / LABELS_FILE, "label vocabulary"), recipe, path / LABELS_FILE)
        tokenizers = {i.name: kinds.modality(i.type).load_tokenizer(i, path) for i in vocab_inputs}
        return labels, tokenizers
    names = label_names(recipe, train)  # labels_array resolved: the classes keep the names' order
    labels = {t.name: kinds.task_kind(t.type).learn_labels(replace(t, labels=names.get(t.name)),
                                                           kinds.task_kind(t.type).label_column(train, t.column))
              for t in recipe.tasks}
    tokenizers = {i.name: kinds.modality(i.type).fit_tokenizer(i, train.columns[i.column]) for i in vocab_inputs}
    if adopt is not None:
        labels, tokenizers = adopt(labels, tokenizers)
    if path:
        from ..rundir import atomic_write_json

        path.mkdir(parents=True, exist_ok=True)
        for i in vocab_inputs:
            tokenizers[i.name].save(path / kinds.modality(i.type).vocab_file(i))
        atomic_write_json(path / LABELS_FILE, labels)
    return labels, tokenizers


def _decode_split(recipe: Recipe, table: Table, labels: dict, tokenizers: dict, training: bool = False,
                  streaming: bool = False):
    x, bad = {}, {}
    for inp in recipe.inputs:
        if streaming and kinds.modality(inp.type).streamable:  # file paths only: decoded in the pipeline
            arrays, problems = stream_input(inp, table, training, recipe.seed)
            x.update(arrays)
        elif inp.optional:  # an empty cell: the input is absent for that row (data/optional.py), not a bad row
            arrays, problems = decode_optional(inp, table, tokenizers.get(inp.name), training, recipe.seed)
            x.update(arrays)
        else:
            x[inp.name], problems = kinds.modality(inp.type).decode(inp, table, tokenizers.get(inp.name))
        for i, p in problems.items():
            bad.setdefault(i, p)
    messages = [f"{table.where(i)}: {p}" for i, p in sorted(bad.items())]
    if bad and recipe.data.on_bad_row == "error":
        more = f" (and {len(messages) - 5} more rows)" if len(messages) > 5 else ""
        raise EdgemtlError(*messages[:5], f"{len(messages)} bad row(s){more}; fix them or set data.on_bad_row: skip")
    keep = np.array([i not in bad for i in range(table.n_rows)], dtype=bool)
    if bad:
        log.warning(f"skipped {len(bad)} bad row(s) in {table.path.name} (data.on_bad_row: skip)")
    y = {t.name: kinds.task_kind(t.type).encode_labels(labels[t.name], kinds.task_kind(t.type).label_column(
        table, t.column), t.separator)[keep] for t in recipe.tasks}
    x = {k: (v.take(keep) if isinstance(v, MediaColumn) else v if keep.all() else v[keep]) for k, v in x.items()}
    return Split(x, y, table.row_ids[keep]), messages if bad else []
