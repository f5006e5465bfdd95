"""What every modality kind and every task kind provides, plus the pieces several kinds share.

A kind has a TF-free half (this module and the kind modules import numpy, PIL and the standard library only, so the
runtime and the recipe checks can use them) and a TF half: methods that import `from ..tfk import keras, tf` inside
their body, called only by the model, training and compression code.

Spec arguments are the typed recipe specs (InputSpec per modality, TaskSpec), read by attribute. `label_info` is one
task's entry of preprocess/labels.json: {"type", "classes"} for class tasks, {"type", "mean", "std"} for regression.
A manifest `entry` is one item of a bundle manifest's "inputs" or "outputs" list.
"""
import functools
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgemtlError
from ..progress import Progress

log = logging.getLogger("edgemtl")

MISSING = -1  # class index / multi-hot value of a missing label; regression uses NaN
UNSEEN = -2  # class index of a label absent from the training split: masked in training, an error when scored


class BadInput(ValueError):
    """What decode and prepare raise for a raw value that cannot become model input; the message says why."""


def describe(source) -> str:
    return f"'{source}'" if isinstance(source, (str, Path)) else f"({type(source).__name__})"


def is_missing(value) -> bool:
    """An empty cell: None, NaN or a blank string (a CSV's empty field)."""
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


# --- modalities ------------------------------------------------------------------------------------------------------
class ModalityKind:
    """One input modality: its model input (dtype, shape), how a raw value becomes that input, its manifest entry."""

    name: str = ""
    dtype: str = "float32"  # the model input's dtype: what a device feeds
    default_encoder: str = ""  # the encoder type a recipe gets when it names none
    media: bool = False  # the manifest column holds a file path (pack copies the file, predict resolves it)
    streamable: bool = False  # decoded file by file inside the tf.data pipeline (load(pre, path)) when streaming
    json_value: bool = False  # on the command line the value is JSON numbers, not a path or a string
    file_suffixes: tuple = ()  # files that hold one value of this modality (a watched folder's samples)
    has_stats: bool = False  # standardised in the graph with training-split statistics (stats(train_array))
    has_vocabulary: bool = False  # a tokenizer is learned on the training split (fit_tokenizer / load_tokenizer)

    # -- TF-free half ---------------------------------------------------------------------------------------------
    def input_shape(self, spec) -> tuple:
        """The model input's shape without the batch dimension."""
        raise NotImplementedError

    def columns(self, spec) -> tuple:
        """The manifest columns this input reads."""
        return (spec.column,)

    def column_key(self, spec) -> str:
        """The recipe key naming those columns (for messages: `inputs[0].column`)."""
        return "column"

    def preprocess_entry(self, spec) -> dict:
        """The manifest's preprocess block: everything the runtime needs to turn a raw value into model input.
        Training decodes through the same block, so both sides share one implementation."""
        raise NotImplementedError

    def manifest_entry(self, spec, dtype: str | None = None, shape=None) -> dict:
        """A bundle manifest's input entry. dtype / shape (no batch dimension): the exported signature's, where the
        caller has it; they equal the kind's own."""
        shape = self.input_shape(spec) if shape is None else shape
        return {"name": spec.name, "modality": self.name, "dtype": dtype or self.dtype,
                "shape": [None, *[None if d is None else int(d) for d in shape]],
                "column": getattr(spec, "column", None), "preprocess": self.preprocess_entry(spec)}

    def decode(self, spec, table, tokenizer=None) -> tuple[np.ndarray, dict]:
        """Training: (array for every row of `table`, {row index: problem}) for this input's column(s)."""
        raise NotImplementedError

    def runtime_resources(self, entry: dict, bundle_dir: Path) -> dict:
        """What prepare needs beyond the entry, loaded once per bundle (text: its tokenizer)."""
        return {}

    def prepare(self, entry: dict, value, rate=None, dtype: np.dtype | None = None, **resources) -> np.ndarray:
        """Runtime: one raw value -> the model's array for this input (no batch dimension), in the entry's dtype
        (`dtype`: that dtype, looked up once by the caller). resources: runtime_resources(entry, ...). A value that
        cannot become input: EdgemtlError naming the input."""
        try:
            array = self._prepare(entry, value, rate, **resources)
        except BadInput as e:
            raise EdgemtlError(f"input '{entry['name']}': {e}") from None
        return array.astype(np.dtype(entry["dtype"]) if dtype is None else dtype, copy=False)

    def _prepare(self, entry: dict, value, rate, **resources) -> np.ndarray:
        raise NotImplementedError

    def cli_value(self, name: str, text: str):
        """Input `name`'s value given on the command line (`predict --name VALUE`): JSON numbers where json_value,
        else the text (a path or a string)."""
        if not self.json_value:
            return text
        try:
            return json.loads(text)
        except ValueError:
            raise EdgemtlError(f"input '{name}': give numbers as JSON, e.g. '[1.5, 2]'") from None

    def manifest_cell(self, name: str, text: str, base: Path):
        """Input `name`'s value in a predictions manifest's cell: media paths resolve against the manifest's folder."""
        if self.json_value:
            return self.cli_value(name, text)
        return str(base / text) if self.media else text

    def float_parts(self, spec) -> tuple:
        """Layer names an int8 export keeps in float first (the audio front-end); none for most modalities."""
        return ()

    def problems(self, spec, where: str) -> list[str]:
        """Recipe-level problems of this input that the schema cannot express."""
        return []

    # -- TF half ----------------------------------------------------------------------------------------------------
    def encoders(self) -> dict:
        """Encoder type -> builder fn(x, encoder_spec, prefix, ctx) for this modality."""
        raise NotImplementedError

    def augmenter(self, spec):
        """A fn(batch) -> batch applied to training batches, or None (no augmentation for this input)."""

    def mix(self, v, other, w):
        """Mixup: each row of `v` blended with its partner row `other` with weight `w` (broadcast per row). Numbers mix
        linearly and keep their dtype."""
        from ..tfk import tf

        return tf.cast(w * tf.cast(v, tf.float32) + (1 - w) * tf.cast(other, tf.float32), v.dtype)


MAX_PATH = 4096  # longer is no file path any system opens


def decode_files(spec, table, shape: tuple, dtype, load) -> tuple[np.ndarray, dict]:
    """Decode a column of media file paths in threads: load(path) -> array, BadInput -> a problem for that row."""
    paths = table.columns[spec.column]
    out = np.zeros((len(paths), *shape), dtype=dtype)
    bad = {}

    def work(i):
        p = paths[i]
        if is_missing(p):
            bad[i] = f"column '{spec.column}' is empty (no {spec.type} file)"
            return
        if not isinstance(p, str) or "\x00" in p or len(p) > MAX_PATH:
            bad[i] = f"column '{spec.column}' holds {describe(p)[:80]}, not a {spec.type} file path"
            return
        try:
            out[i] = load(table.base / p)
        except BadInput as e:
            bad[i] = str(e)

    bar = Progress(len(paths), f"decode {spec.name}")
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        for _ in pool.map(work, range(len(paths))):
            bar.update()
    bar.close()
    return out, bad


def as_number_array(value, shape: tuple, what: str) -> np.ndarray:
    """A runtime value that must be finite numbers of one shape -> float32 array; BadInput says what was expected."""
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise BadInput(f"expected {what}, got {type(value).__name__} that is not numbers") from None
    if array.shape != tuple(shape):
        raise BadInput(f"array has shape {list(array.shape)}; expected {what}")
    if not np.isfinite(array).all():
        raise BadInput("contains NaN or infinite values")
    return array


# --- tasks -----------------------------------------------------------------------------------------------------------
class TaskKind:
    """One task type: labels, the head's output and how it is decided, scored, answered and compared.

    score() returns the raw metrics (shown in tables) plus "score", the normalised score: higher is better and
    comparable across task kinds, the only value a mean, monitor or comparison may use, and "n", the rows scored.
    """

    name: str = ""
    decode_rule: str = ""  # how a device turns the output into an answer (the manifest's "decode")
    metric_names: tuple = ()  # the raw metrics score() reports, in the order tables show them
    primary_metric: str = ""  # the raw metric a table shows for the task (and the parity gate reports)
    lower_is_better_metrics: tuple = ()
    min_classes, max_classes = 0, None  # how many class names a task of this kind has
    has_classes: bool = True  # labels are named classes (labels.json "classes", the manifest's "labels")
    has_bounds: bool = False  # the task takes min/max (a clip of its value)
    supports_label_match: bool = False  # a head that can add LabelNameMatch logits (tasks.*.match_labels)
    activation: str | None = None  # the output layer's activation over the head's logits
    unseen_effect: str = "they are scored as errors"  # what becomes of rows whose label training never saw
    unseen_rows_scored: bool = True  # such rows are scored (as errors); a split of them only has no score
    score_meaning: str = ""  # what the normalised score is, for report legends ("accuracy for class tasks")
    dense: bool = False  # the head reads an image encoder's feature maps (boxes, masks): head(..., features=...)
    shared_reader: str = ""  # the head's layer that reads the shared vector, "{task}_..." ("": the head's Dense)

    # -- labels ---------------------------------------------------------------------------------------------------
    def label_column(self, table, column: str) -> list:
        """The label cells learn_labels and encode_labels read (kinds whose labels are files resolve their paths)."""
        return table.columns[column]

    def learn_labels(self, spec, values: list) -> dict:
        """What a task's labels are (labels.json entry), learned from training values only."""
        raise NotImplementedError

    def encode_labels(self, label_info: Mapping, values: list, separator: str = "|") -> np.ndarray:
        """Raw values -> training targets; missing or unseen labels become MISSING (NaN for regression): masked."""
        raise NotImplementedError

    def n_outputs(self, label_info: Mapping) -> int:
        raise NotImplementedError

    def unseen_labels(self, label_info: Mapping, values: list, separator: str = "|") -> tuple[int, list[str]]:
        """(rows whose label is absent from the training split, a few such labels): what data preparation warns
        about for validation and test rows. None for kinds without classes."""
        return 0, []

    def label_problems(self, spec, label_info: Mapping, where: str) -> list[str]:
        """Problems of the learned labels that make the task untrainable (too few classes)."""
        return []

    def covering_rows(self, y: np.ndarray) -> list[int]:
        """Row indices that together show every class of encoded labels `y` once (int8 calibration coverage)."""
        return []

    # -- outputs --------------------------------------------------------------------------------------------------
    def decide(self, output: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Model output -> class index (multiclass/binary), label matrix (multilabel) or value (regression)."""
        raise NotImplementedError

    def score(self, y_true: np.ndarray, output: np.ndarray, threshold: float = 0.5, std: float = 1.0) -> dict:
        """Raw metrics over the rows that have a label, "score" (normalised) and "n"."""
        raise NotImplementedError

    def normalised(self, metrics: Mapping, std: float = 1.0) -> float:
        """The normalised score (higher is better, comparable across kinds) from this kind's raw metrics."""
        raise NotImplementedError

    def lower_is_better(self, metric: str) -> bool:
        return metric == "loss" or metric in self.lower_is_better_metrics

    def format_primary(self, metrics: Mapping) -> str:
        """The primary raw metric as a table cell."""
        value = metrics.get(self.primary_metric)
        return "" if value is None else f"{value:.4f}"

    def output_entry(self, spec, label_info: Mapping) -> dict:
        """A bundle manifest's output entry: what the runtime needs to answer."""
        entry = {"task": spec.name, "type": self.name, "decode": self.decode_rule}
        if self.has_classes:
            entry["labels"] = list(label_info["classes"])
        return entry

    def answer(self, entry: Mapping, output: np.ndarray) -> dict:
        """One row's output -> the runtime's answer with label names."""
        return self.answerer(entry)(output)

    def answerer(self, entry: Mapping) -> Callable[[np.ndarray], dict]:
        """answer() for one output entry, what the runtime calls on every row: a kind reads the entry (label names,
        threshold) once here rather than per call. A kind overrides answer() or this."""
        if type(self).answer is TaskKind.answer:
            raise NotImplementedError(f"task kind '{self.name}' has no answer()")
        return functools.partial(type(self).answer, self, entry)

    # -- parity ---------------------------------------------------------------------------------------------------
    def float_diff(self, ref: np.ndarray, got: np.ndarray) -> np.ndarray:
        """Per-value difference a float artifact is judged by (against FLOAT_ATOL): absolute for probabilities."""
        return np.abs(got - ref)

    def agreement(self, ref: np.ndarray, got: np.ndarray, threshold: float = 0.5) -> float:
        """Share of decisions an artifact takes as the reference model does."""
        return float(np.mean(self.decide(ref, threshold) == self.decide(got, threshold)))

    # -- TF half --------------------------------------------------------------------------------------------------
    def head(self, x, spec, label_info: Mapping, match=None):
        """The task's output tensor (named spec.name) from the shared vector x; `match`: LabelNameMatch logits."""
        raise NotImplementedError

    def loss(self, spec, label_info: Mapping):
        """fn(y_true, y_pred) -> scalar loss over the rows that have a label."""
        raise NotImplementedError

    def soft_loss(self, spec, label_info: Mapping, temperature: float):
        """Distillation: fn(teacher_output, student_output) -> scalar, over every row (labelled or not)."""
        raise NotImplementedError


PLAIN_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))  # tolist() gives Python floats


def flat(output) -> np.ndarray:
    """One row's output as a 1-D array (a runtime row already is one: no conversion on the answer's path)."""
    return output if type(output) is np.ndarray and output.ndim == 1 else np.asarray(output).reshape(-1)


def python_floats(values: np.ndarray) -> list:
    """A 1-D array as Python floats in one C call (float() per element costs most of an answer). A float32 or
    float16 value becomes the float its float64 conversion is (exact), so floats are listed as they are."""
    return (values if values.dtype in PLAIN_FLOATS else values.astype(np.float64)).tolist()


class Scores(Mapping):
    """An answer's class scores, label -> score: a read-only mapping over the row's scores listed once, not a dict.
    Most callers read an answer's label and score only, and a dict of every class cost more than the rest of the
    answer (fashion's 73 article types: 2.5 of 5 µs). dict(scores) copies it; json.dumps(answers, default=dict)
    writes it, as `edgemtl predict --json` does."""
    __slots__ = ("_index", "_values")

    def __init__(self, index: Mapping[str, int], values: list):
        self._index, self._values = index, values  # index: label name -> position, shared by every answer

    def __getitem__(self, name):
        return self._values[self._index[name]]

    def __iter__(self):
        return iter(self._index)

    def __len__(self):
        return len(self._index)

    def __repr__(self):
        return repr(dict(zip(self._index, self._values)))


def score_index(labels) -> dict[str, int]:
    """Label name -> its position in the outputs: what Scores looks names up in, built once per bundle output."""
    return {str(label): i for i, label in enumerate(labels)}


def no_score(metric_names, n: int, unseen: int = 0) -> dict:
    """score() of a split without a scorable row: every metric None, and "reason" saying why."""
    if unseen:
        reason = f"all {unseen} labelled row(s) have classes absent from the training split"
    else:
        reason = "no labelled row"
    return {**{m: None for m in metric_names}, "score": None, "n": n, "unseen": unseen, "reason": reason}


def masked_mean(per_row, mask):
    """TF: mean of per_row over the rows where mask holds (0 when none does)."""
    from ..tfk import tf

    mask = tf.cast(mask, per_row.dtype)
    return tf.reduce_sum(per_row * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


DISTILL_EPS = 1e-7


def probability_logits(p, softmax: bool):
    """TF: heads output probabilities; recover logits (up to a per-row constant for softmax, which a temperature
    leaves alone)."""
    from ..tfk import tf

    if softmax:
        return tf.math.log(tf.maximum(p, DISTILL_EPS))
    p = tf.clip_by_value(p, DISTILL_EPS, 1 - DISTILL_EPS)
    return tf.math.log(p) - tf.math.log(1 - p)


def softmax_kl(temperature: float):
    """TF loss(teacher, student) on softmax outputs: KL(teacher || student) of the temperature-softened
    distributions over the last axis, times T^2 (Hinton et al. 2015), averaged over every other axis (rows, or
    rows x pixels for a mask)."""
    from ..tfk import tf

    t2 = temperature ** 2

    def kl(t, s):
        log_t = tf.nn.log_softmax(probability_logits(t, softmax=True) / temperature)
        log_s = tf.nn.log_softmax(probability_logits(s, softmax=True) / temperature)
        return t2 * tf.reduce_mean(tf.reduce_sum(tf.exp(log_t) * (log_t - log_s), axis=-1))
    return kl


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean F1 over the classes present in y_true or y_pred."""
    classes = np.union1d(y_true, y_pred)
    if len(classes) == 0:
        return float("nan")
    f1s = []
    for c in classes:
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(f1s))


def as_label(value) -> str:
    """A label cell as its class name: 3.0 and "3" are the same class."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def sorted_classes(classes: set) -> list[str]:
    """Numeric class names in numeric order ("2" before "10"), others alphabetically."""
    try:
        return sorted(classes, key=float)
    except ValueError:
        return sorted(classes)


class ClassTaskKind(TaskKind):
    """Shared by the class tasks: accuracy and macro-F1 (normalised score: accuracy), class-name labels."""

    metric_names = ("accuracy", "macro_f1")
    primary_metric = "accuracy"
    score_meaning = "accuracy for class tasks"
    min_classes = 2
    max_classes: int | None = None  # binary: exactly 2 (negative, positive)

    def learn_labels(self, spec, values: list) -> dict:
        """The classes of the training values: in the order of the task's label names where it has them
        (tasks[].labels), else sorted."""
        present = {as_label(v) for v in values if not is_missing(v)}
        named = getattr(spec, "labels", None)
        classes = [n for n in named if n in present] if named else sorted_classes(present)
        return {"type": self.name, "classes": classes}

    def encode_labels(self, label_info: Mapping, values: list, separator: str = "|") -> np.ndarray:
        index = {c: i for i, c in enumerate(label_info["classes"])}
        codes = np.array([index.get(as_label(v), UNSEEN) if not is_missing(v) else MISSING for v in values])
        return codes.astype(self.label_dtype)

    def unseen_labels(self, label_info: Mapping, values: list, separator: str = "|") -> tuple[int, list[str]]:
        known = set(label_info["classes"])
        unseen = [as_label(v) for v in values if not is_missing(v) and as_label(v) not in known]
        return len(unseen), sorted(set(unseen))[:3]

    label_dtype = np.int32

    def n_outputs(self, label_info: Mapping) -> int:
        return len(label_info["classes"])

    def label_problems(self, spec, label_info: Mapping, where: str) -> list[str]:
        n = len(label_info.get("classes", []))
        if n < self.min_classes:
            return [(f"{where}: column '{spec.column}' has {n} class(es) in the training split; "
                     f"a classification task needs at least {self.min_classes}")]
        return []

    def covering_rows(self, y: np.ndarray) -> list[int]:
        return [int(np.flatnonzero(y == c)[0]) for c in np.unique(y[y >= 0])]

    def score(self, y_true: np.ndarray, output: np.ndarray, threshold: float = 0.5, std: float = 1.0) -> dict:
        """Rows whose class was absent from training (UNSEEN) count in n and are wrong (macro-F1 sees them as one
        extra class); a split with no row of a known class has no score (None, with the reason)."""
        y_true = np.asarray(y_true)
        pred = self.decide(output, threshold)
        labelled, known = y_true != MISSING, y_true >= 0
        unseen = int((labelled & ~known).sum())
        if not known.any():
            return no_score(self.metric_names, int(labelled.sum()), unseen)
        t, p = y_true[labelled].astype(np.int64), pred[labelled]
        metrics = {"accuracy": float(np.mean(t == p)), "macro_f1": macro_f1(t, p)}
        return {**metrics, "score": self.normalised(metrics), "n": int(labelled.sum()), "unseen": unseen}

    def normalised(self, metrics: Mapping, std: float = 1.0) -> float:
        return metrics["accuracy"]

    # -- label-name match (multiclass, multilabel) ------------------------------------------------------------------
    def match_tables(self, class_names: list, tokenizer) -> tuple[list, list]:
        """(token ids of each distinct class-name word's forms, word indices of each class): the LabelNameMatch
        tables. A word's forms are itself and its plural or singular by a trailing s / es, where the vocabulary
        has them."""
        from .text import split_words

        names = [split_words(c, tokenizer.lowercase) for c in class_names]
        words, forms = [], []
        for word in sorted({w for name in names for w in name}):
            ids = sorted({tokenizer.index[f] for f in _word_forms(word) if tokenizer.index.get(f, 0) > 1})  # no pad/unk
            if ids:
                words.append(word)
                forms.append(ids)
        return forms, [[words.index(w) if w in words else -1 for w in name] for name in names]

    def label_match(self, tokens, spec, label_info: Mapping, tokenizer, where: str, presence=None):
        """TF: LabelNameMatch logits of the task's classes over `tokens` (its match_labels text input's ids).
        presence: (TokenPresence output, its ids) shared by the heads on that text, read instead of the tokens."""
        from ..models.layers import LabelNameMatch

        words, classes = self.match_tables(label_info["classes"], tokenizer)
        if not words:  # a warning, not an error: `check` learns its vocabulary from a few rows only
            # no match layer then: its logits would be a constant 0, whose calibrated int8 range collapses (scale
            # ~1e-8) and makes LiteRT abort (SIGABRT in the int8 ADD's Prepare) on loading the full-int8 file
            log.warning(f"{where}: no word of the class names (e.g. '{label_info['classes'][0]}') is among the "
                        f"{len(tokenizer.vocab) - 2:,} words learned from the training rows; this head matches nothing "
                        f"and is built without the match")
            return None
        if presence is not None:
            return LabelNameMatch(words, classes, ids=presence[1], name=f"{spec.name}_label_match")(presence[0])
        return LabelNameMatch(words, classes, name=f"{spec.name}_label_match")(tokens)

    def head(self, x, spec, label_info: Mapping, match=None):
        from ..tfk import keras

        layers = keras.layers
        if match is None:
            return layers.Dense(self.n_outputs(label_info), activation=self.activation, name=spec.name)(x)
        logits = layers.Dense(self.n_outputs(label_info), name=f"{spec.name}_logits")(x)
        logits = layers.Add(name=f"{spec.name}_logits_matched")([logits, match])
        return layers.Activation(self.activation, name=spec.name)(logits)


def _word_forms(word: str) -> set:
    forms = {word, word + "s", word + "es"}
    if word.endswith("es"):
        forms.add(word[:-2])
    if word.endswith("s"):
        forms.add(word[:-1])
    return forms


class SigmoidTaskKind(ClassTaskKind):
    """Binary and multilabel: one sigmoid per label, binary cross-entropy, thresholded decisions."""

    activation = "sigmoid"
    decode_rule = "threshold"

    def output_entry(self, spec, label_info: Mapping) -> dict:
        return {**super().output_entry(spec, label_info), "threshold": spec.threshold}

    def loss(self, spec, label_info: Mapping):
        from ..tfk import tf

        def binary(y, p):
            y = tf.reshape(tf.cast(y, tf.float32), tf.shape(p))
            eps = 1e-7
            p = tf.clip_by_value(p, eps, 1 - eps)
            bce = -(tf.maximum(y, 0.0) * tf.math.log(p) + (1 - tf.maximum(y, 0.0)) * tf.math.log(1 - p))
            return masked_mean(tf.reshape(bce, [-1]), tf.reshape(y >= 0, [-1]))
        return binary

    def soft_loss(self, spec, label_info: Mapping, temperature: float):
        """Per-label binary cross-entropy to the temperature-softened teacher probabilities, times T^2."""
        from ..tfk import tf

        t2 = temperature ** 2

        def binary(t, s):
            target = tf.sigmoid(probability_logits(t, softmax=False) / temperature)
            z = probability_logits(s, softmax=False) / temperature
            return t2 * tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=z))
        return binary


# --- means -----------------------------------------------------------------------------------------------------------
MEAN_KEYS = ("mean_score", "mean_note")  # what score_all adds beside the tasks


def finite(value) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value))


def mean_score(per_task: Mapping[str, Any]) -> tuple[float | None, str]:
    """Mean of the tasks' NORMALISED scores: (value, note). per_task: {task: its metrics (a score() result) or None}.

    A task without a finite "score" (no scorable row, not measured) is left out and named in the note; the value is
    None when no task is left. A raw number in place of a task's metrics is refused: a mean never mixes raw metrics
    (an MAE beside accuracies) -- pass score() results. Keys that are not tasks (MEAN_KEYS) are ignored.
    """
    scores, left_out = [], []
    for task, metrics in per_task.items():
        if task in MEAN_KEYS:
            continue
        if metrics is not None and not isinstance(metrics, Mapping):
            raise TypeError(f"mean_score: task '{task}' has {metrics!r}, not its metrics; a mean averages normalised "
                            f"scores only (pass the task kind's score() result)")
        value = None if metrics is None else metrics.get("score")
        if finite(value):
            scores.append(float(value))
        else:
            left_out.append(task)
    value = float(np.mean(scores)) if scores else None
    note = f"left out (no score): {', '.join(left_out)}" if left_out else ""
    return value, note
