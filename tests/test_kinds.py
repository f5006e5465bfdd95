"""edgemtl.kinds: the move of every modality's and task type's logic into one class each preserves behaviour.

Each kind is compared with the code it was moved from (data/features.py, data/labels.py, runtime/inputs.py,
runtime/answers.py, metrics.py, export/bundle.py, export/parity.py, models/heads.py, train/losses.py,
compress/distill.py) on the embedded real data: the av_digits demo (WAV + PNG) and tests/data/fashion_mini (JPEG +
titles + years). Specs are stand-ins with the typed recipe's attributes; the old code gets the same values as dicts.
"""
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgemtl import kinds
from edgemtl.data import features
from edgemtl.data import labels as old_labels
from edgemtl.data.manifest import read_table
from edgemtl.errors import EdgemtlError
from edgemtl.kinds import MODALITIES, TASKS, mean_score, modality, task_kind

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "av_digits" / "pairs.csv"
FASHION = REPO / "tests" / "data" / "fashion_mini" / "products.csv"


def spec(**keys):
    """A stand-in typed spec (attribute access, tuples) and the dict the old code reads (lists, as YAML gives them),
    from the same keys."""
    as_dict = {k: (vars(v) if isinstance(v, SimpleNamespace) else list(v) if isinstance(v, tuple) else v)
               for k, v in keys.items()}
    return SimpleNamespace(**keys), as_dict


def task_spec(name, type_, **keys):
    base = {"name": name, "type": type_, "column": keys.pop("column", name), "loss": "auto", "label_smoothing": 0.0,
            "threshold": 0.5, "separator": "|", "metrics": (), "auxiliary": False, "match_labels": None,
            "unmatched_weight": 0.0}
    return spec(**{**base, **keys})


@pytest.fixture(scope="module")
def demo_table():
    table = read_table(DEMO)
    return table.take(np.r_[0:6, 200:206])  # test rows and training rows, several speakers and digits


@pytest.fixture(scope="module")
def fashion_table():
    return read_table(FASHION).take(slice(0, 40))


AUDIO = spec(name="audio", type="audio", column="audio", sample_rate=8000, clip_seconds=1.0, n_mels=40,
             frame_length=256, frame_step=128)
IMAGE = spec(name="image", type="image", column="image", size=(28, 28), channels=1,
             augment=SimpleNamespace(flip=False, rotation=0.03, crop=0.08))
PHOTO = spec(name="photo", type="image", column="image", size=(48, 40), channels=3,
             augment=SimpleNamespace(flip=True, rotation=0.0, crop=0.0))
TITLE = spec(name="title", type="text", column="title", vocab_size=200, max_length=12, lowercase=True)
YEAR_IN = spec(name="year_in", type="numeric", columns=("year",))


def _old_entry(inp: dict, kind):
    """export/bundle.input_entry with the exported signature's spec (dtype and shape as the model has them)."""
    from edgemtl.export.bundle import input_entry

    sig = SimpleNamespace(dtype=np.dtype(kind.dtype), shape=(None, *kind.input_shape(SimpleNamespace(**inp))))
    return input_entry(inp, sig)


# --- TF-free -------------------------------------------------------------------------------------------------------
def test_importing_kinds_loads_no_tensorflow_yaml_or_recipe():
    code = ("import sys, edgemtl.kinds as k; k.modality('image'); k.task_kind('regression');"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'yaml')"
            " or m.startswith('edgemtl.recipe') or m.startswith('edgemtl.tfk')]; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr


def test_registry_covers_the_shared_names_and_the_schema_defaults():
    from edgemtl.names import MODALITIES as MODALITY_NAMES
    from edgemtl.names import TASK_TYPES
    from edgemtl.recipe.schema import DEFAULT_ENCODER

    assert tuple(MODALITIES) == MODALITY_NAMES and tuple(TASKS) == TASK_TYPES
    assert all(k.name == n for n, k in {**MODALITIES, **TASKS}.items())
    assert {n: k.default_encoder for n, k in MODALITIES.items()} == DEFAULT_ENCODER
    with pytest.raises(EdgemtlError, match="unknown modality 'sound'"):
        modality("sound")
    with pytest.raises(EdgemtlError, match="unknown task type 'boxes'"):
        task_kind("boxes")


# --- modalities: decode for training, manifest entry, runtime prepare ------------------------------------------------
@pytest.mark.parametrize("which", ["audio", "image"])
def test_demo_wav_and_png_decode_as_before_and_as_the_runtime_prepares_them(demo_table, which, tmp_path):
    from edgemtl.runtime.inputs import InputPreparer

    typed, inp = AUDIO if which == "audio" else IMAGE
    kind = modality(which)
    new, new_bad = kind.decode(typed, demo_table)
    old, old_bad = features.decode_input(inp, demo_table)
    assert new.dtype == old.dtype and new.shape == old.shape == (demo_table.n_rows, *kind.input_shape(typed))
    assert np.array_equal(new, old) and new_bad == old_bad == {}
    assert new.std() > 0  # real content, not zeros

    entry = kind.manifest_entry(typed)
    assert entry == _old_entry(inp, kind)
    preparer = InputPreparer(entry, tmp_path)
    for i, relative in enumerate(demo_table.columns[typed.column]):
        path = demo_table.base / relative
        prepared = kind.prepare(entry, str(path))
        assert np.array_equal(prepared, preparer(str(path))) and np.array_equal(prepared, new[i])
        raw = path.read_bytes()
        assert np.array_equal(kind.prepare(entry, raw), prepared)


def test_demo_audio_given_as_samples_and_bad_audio(demo_table, tmp_path):
    from edgemtl import preprocess
    from edgemtl.runtime.inputs import InputPreparer

    typed, _ = AUDIO
    kind = modality("audio")
    entry = kind.manifest_entry(typed)
    preparer = InputPreparer(entry, tmp_path)
    samples, rate = preprocess.read_wav(demo_table.base / demo_table.columns["audio"][0])
    twice = np.repeat(samples, 2)  # the same recording at twice the rate: resampled back
    assert np.array_equal(kind.prepare(entry, twice, rate=2 * rate), preparer(twice, rate=2 * rate))
    for bad, rate_, message in ((samples, None, "needs its sample rate"), (samples, 1000, "outside"),
                                (np.zeros(11 * rate, np.float32), rate, "refused"),
                                ((samples * 1000).astype(np.int16), rate, "dtype int16")):
        with pytest.raises(EdgemtlError, match=message) as new_error:
            kind.prepare(entry, bad, rate=rate_)
        with pytest.raises(EdgemtlError) as old_error:
            preparer(bad, rate=rate_)
        assert str(new_error.value) == str(old_error.value)


def test_fashion_jpeg_and_titles_decode_as_before(fashion_table, tmp_path):
    from edgemtl.preprocess import Tokenizer
    from edgemtl.runtime.inputs import InputPreparer

    image = modality("image")
    typed, inp = PHOTO
    new, _ = image.decode(typed, fashion_table)
    old, _ = features.decode_input(inp, fashion_table)
    assert new.shape == (40, 48, 40, 3) and np.array_equal(new, old)
    entry = image.manifest_entry(typed)
    assert entry == _old_entry(inp, image)
    first = fashion_table.base / fashion_table.columns["image"][0]
    assert np.array_equal(image.prepare(entry, str(first)), InputPreparer(entry, tmp_path)(str(first)))
    from PIL import Image

    as_floats = new[0].astype(np.float32) / 255.0  # float pixels in [0, 1], as the runtime accepts them
    assert np.array_equal(image.prepare(entry, as_floats), InputPreparer(entry, tmp_path)(as_floats))
    assert np.array_equal(image.prepare(entry, Image.open(first)), new[0])

    text = modality("text")
    typed, inp = TITLE
    titles = fashion_table.columns["title"]
    tokenizer = text.fit_tokenizer(typed, titles)
    old_tok = Tokenizer.fit(titles, inp["vocab_size"], inp["lowercase"])
    assert tokenizer.vocab == old_tok.vocab
    new, _ = text.decode(typed, fashion_table, tokenizer)
    old, _ = features.decode_input(inp, fashion_table, old_tok)
    assert new.dtype == np.int32 and np.array_equal(new, old) and (new > 1).any()
    entry = text.manifest_entry(typed)
    assert entry == _old_entry(inp, text)
    tokenizer.save(tmp_path / entry["preprocess"]["vocab"])
    preparer = InputPreparer(entry, tmp_path)
    resources = text.runtime_resources(entry, tmp_path)
    for i, title in enumerate(titles):
        assert np.array_equal(text.prepare(entry, title, **resources), preparer(title))
        assert np.array_equal(text.prepare(entry, title, **resources), new[i])
    for bad in ("  ", 3):
        with pytest.raises(EdgemtlError) as new_error:
            text.prepare(entry, bad, **resources)
        with pytest.raises(EdgemtlError) as old_error:
            preparer(bad)
        assert str(new_error.value) == str(old_error.value)
    with pytest.raises(EdgemtlError, match="vocabulary 'vocab_title.txt'"):
        text.runtime_resources(entry, tmp_path / "elsewhere")


def test_fashion_numeric_column_decodes_as_before(fashion_table, tmp_path):
    from edgemtl.runtime.inputs import InputPreparer

    kind = modality("numeric")
    typed, inp = YEAR_IN
    broken = fashion_table.take(slice(0, 10))
    broken.columns["year"] = ["2011", "", "x", "nan"] + broken.columns["year"][4:]
    for table in (fashion_table, broken):
        new, new_bad = kind.decode(typed, table)
        old, old_bad = features.decode_input(inp, table)
        assert np.array_equal(new, old, equal_nan=True) and new_bad == old_bad
    assert sorted(new_bad) == [1, 2, 3]
    entry = kind.manifest_entry(typed)
    assert entry == _old_entry(inp, kind)
    preparer = InputPreparer(entry, tmp_path)
    for value in ([2012], {"year": 2012}, {"year": 2012, "other": 1}):
        assert np.array_equal(kind.prepare(entry, value), preparer(value))
    for value in ({"month": 1}, [1, 2], ["x"], [float("inf")]):
        with pytest.raises(EdgemtlError) as new_error:
            kind.prepare(entry, value)
        with pytest.raises(EdgemtlError) as old_error:
            preparer(value)
        assert str(new_error.value) == str(old_error.value)
    train = kind.decode(typed, fashion_table)[0]
    mean, var = kind.stats(train)
    assert np.allclose(mean, [np.mean([float(y) for y in fashion_table.columns["year"]])])
    assert var[0] > 0


def test_sequences_from_npy_files_and_from_an_npz_decode_as_before(demo_table, tmp_path):
    """Real signals: the demo's digit images read as 28-step sequences of 28 channels (as tests/test_model does)."""
    from edgemtl.runtime.inputs import InputPreparer

    images, _ = features.decode_input(IMAGE[1], demo_table)
    windows = images[..., 0].astype(np.float32) / 255.0
    for i, w in enumerate(windows):
        np.save(tmp_path / f"w{i}.npy", w)
    np.save(tmp_path / "short.npy", windows[0][:20])
    (tmp_path / "rows.csv").write_text("window\n" + "".join(f"w{i}.npy\n" for i in range(len(windows)))
                                       + "short.npy\nmissing.npy\n")
    np.savez(tmp_path / "rows.npz", window=windows)
    kind = modality("sequence")
    typed, inp = spec(name="window", type="sequence", column="window", length=28, channels=28)
    for source in ("rows.csv", "rows.npz"):
        table = read_table(tmp_path / source)
        new, new_bad = kind.decode(typed, table)
        old, old_bad = features.decode_input(inp, table)
        assert np.array_equal(new, old) and new_bad == old_bad
        assert np.array_equal(new[:len(windows)], windows)
    assert sorted(new_bad) == [] and sorted(kind.decode(typed, read_table(tmp_path / "rows.csv"))[1]) == [12, 13]
    wrong = spec(name="window", type="sequence", column="window", length=28, channels=14)
    table = read_table(tmp_path / "rows.npz")
    assert kind.decode(wrong[0], table)[1] == features.decode_input(wrong[1], table)[1] != {}
    entry = kind.manifest_entry(typed)
    assert entry == _old_entry(inp, kind)
    preparer = InputPreparer(entry, tmp_path)
    assert np.array_equal(kind.prepare(entry, windows[3].tolist()), preparer(windows[3].tolist()))
    with pytest.raises(EdgemtlError) as new_error:
        kind.prepare(entry, windows[3][:5])
    with pytest.raises(EdgemtlError) as old_error:
        preparer(windows[3][:5])
    assert str(new_error.value) == str(old_error.value)


def test_command_line_and_manifest_values_as_predict_reads_them(tmp_path):
    from edgemtl import predict

    for name in MODALITIES:
        model = SimpleNamespace(inputs={"x": SimpleNamespace(kind=name)})
        kind = modality(name)
        text = "[1.5, 2]" if kind.json_value else "images/a.png"
        assert kind.cli_value("x", text) == predict._value(model, "x", text)
        assert kind.manifest_cell("x", text, tmp_path) == predict._cell(model, "x", text, tmp_path, 0)
    with pytest.raises(EdgemtlError, match="input 'x': give numbers as JSON"):
        modality("numeric").cli_value("x", "twelve")
    assert [n for n, k in MODALITIES.items() if k.media] == ["image", "audio", "sequence"]  # pack.MEDIA
    assert modality("audio").float_parts(AUDIO[0]) == ("audio_logmel",)
    assert modality("audio").problems(spec(name="a", frame_length=200)[0], "inputs[0]") == \
        ["inputs[0].frame_length: must be a power of two, got 200"]


# --- tasks: labels, decide, score, answer, parity ---------------------------------------------------------------------
def _fashion_tasks(table):
    """Real label columns of fashion_mini for every task type (multilabel: colour|season, a made-up set column)."""
    table.columns["tags"] = [f"{c}|{s}" if i % 7 else "" for i, (c, s) in
                             enumerate(zip(table.columns["baseColour"], table.columns["season"]))]
    table.columns["is_men"] = ["Men" if g == "Men" else "Other" for g in table.columns["gender"]]
    return [task_spec("usage", "multiclass"), task_spec("is_men", "binary", threshold=0.4),
            task_spec("tags", "multilabel", threshold=0.3), task_spec("year", "regression")]


def test_labels_learn_and_encode_as_before():
    from edgemtl.data.dataset import label_problems

    table = read_table(FASHION)
    for typed, task in _fashion_tasks(table):
        kind = task_kind(typed.type)
        values = table.columns[typed.column]
        info = kind.learn_labels(typed, values)
        assert info == old_labels.learn_label_spec(task, values)
        extra = ["", None, "2020.5"] if typed.type == "regression" else ["", None, "never-seen", "a|never-seen"]
        new = kind.encode_labels(info, values + extra, typed.separator)
        old = old_labels.encode_labels(info, values + extra, typed.separator)
        assert new.dtype == old.dtype and np.array_equal(new, old, equal_nan=True)
        assert kind.n_outputs(info) == old_labels.n_outputs(info)
        one_class = kind.learn_labels(typed, values[:1])
        recipe = {"tasks": [task]}
        assert kind.label_problems(typed, one_class, f"tasks[0] ({typed.name})") == label_problems(
            recipe, {typed.name: one_class})
        assert kind.label_problems(typed, info, "tasks[0]") == label_problems(recipe, {typed.name: info}) == []
    assert task_kind("regression").learn_labels(task_spec("y", "regression")[0], ["3", "3"])["std"] == 1.0


def _outputs(kind_name, n_rows, n_classes, rng):
    if kind_name == "multiclass":
        z = rng.normal(size=(n_rows, n_classes))
        return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    if kind_name == "binary":
        return rng.uniform(size=(n_rows, 1))
    if kind_name == "multilabel":
        return rng.uniform(size=(n_rows, n_classes))
    return rng.normal(2012, 3, size=(n_rows, 1))


def test_decide_score_answer_entry_and_parity_rules_as_before():
    from edgemtl import metrics
    from edgemtl.export import parity
    from edgemtl.export.bundle import output_entry
    from edgemtl.runtime.answers import answer

    table = read_table(FASHION)
    rng = np.random.default_rng(0)
    for typed, task in _fashion_tasks(table):
        kind = task_kind(typed.type)
        values = table.columns[typed.column]
        info = kind.learn_labels(typed, values)
        y = kind.encode_labels(info, values, typed.separator)
        out = _outputs(typed.type, len(values), kind.n_outputs(info), rng)
        std = info.get("std", 1.0)
        assert np.array_equal(kind.decide(out, typed.threshold), metrics.decide(typed.type, out, typed.threshold))
        new = kind.score(y, out, typed.threshold, std)
        old = metrics.score_task(typed.type, y, out, typed.threshold, std)
        assert new == old and set(new) == {*kind.metric_names, "score", "n"}
        assert kind.primary_metric == parity._metric_name(task)
        entry = kind.output_entry(typed, info)
        assert entry == output_entry(task, info)
        for row in out[:20]:
            assert kind.answer(entry, row) == answer(entry, row)
        noisy = out + rng.normal(0, 0.05, size=out.shape) if typed.type != "regression" else \
            out + rng.normal(0, 30.0, size=out.shape)  # regression agrees within 1 % of ~2012
        assert kind.agreement(out, noisy, typed.threshold) == parity._agreement(task, out, noisy)
        assert 0 < kind.agreement(out, noisy, typed.threshold) < 1
        old_diff = np.abs(noisy - out) / np.maximum(1.0, np.abs(out)) if typed.type == "regression" \
            else np.abs(noisy - out)
        assert np.array_equal(kind.float_diff(out, noisy), old_diff)
        empty = kind.score(np.full_like(y, np.nan if typed.type == "regression" else -1), out, typed.threshold, std)
        assert empty["n"] == 0 and math.isnan(empty["score"])


class _Split:
    """The part of data.dataset.Split that calibration_rows reads."""

    def __init__(self, y: dict):
        self.y = y

    def __len__(self):
        return len(next(iter(self.y.values())))


def test_calibration_rows_cover_every_class_as_before():
    from edgemtl.export.run import MIN_CALIBRATION_ROWS, calibration_rows

    table = read_table(FASHION)
    for typed, task in _fashion_tasks(table):
        kind = task_kind(typed.type)
        values = table.columns[typed.column]
        y = kind.encode_labels(kind.learn_labels(typed, values), values, typed.separator)
        split = _Split({typed.name: y})
        chosen = list(dict.fromkeys(kind.covering_rows(y)))  # one row can show several labels of a multilabel task
        assert list(calibration_rows(split, [task], max(len(values), MIN_CALIBRATION_ROWS), 0)[:len(chosen)]) == chosen
        if typed.type != "regression":  # every class of the column is in these rows
            assert len(kind.covering_rows(y)) == len(kind.learn_labels(typed, values)["classes"])


def test_regression_score_is_normalised_by_the_label_std():
    kind = task_kind("regression")
    y = np.array([2010.0, 2012.0, np.nan, 2016.0], np.float32)
    out = np.array([[2011.0], [2012.0], [1999.0], [2013.0]])
    m = kind.score(y, out, std=2.0)
    assert m["mae"] == pytest.approx(4 / 3) and m["n"] == 3
    assert m["score"] == pytest.approx(1 - (4 / 3) / 2.0) == kind.normalised(m, 2.0)
    worse = kind.score(y, out * 1.01, std=2.0)
    assert worse["mae"] > m["mae"] and worse["score"] < m["score"]  # higher is better, unlike the raw MAE
    assert kind.lower_is_better("mae") and kind.lower_is_better("rmse") and not task_kind("binary").lower_is_better(
        "accuracy")
    assert kinds.higher_is_better("val_mean_score") and not kinds.higher_is_better("val_year_mae")
    assert not kinds.higher_is_better("val_loss") and kinds.higher_is_better("val_gender_macro_f1")
    assert kind.format_primary(m) == f"MAE {m['mae']:.3g}"
    assert task_kind("multiclass").format_primary({"accuracy": 0.5}) == "0.5000"


def test_mean_score_averages_normalised_scores_only_and_says_what_it_left_out():
    reg, cls = task_kind("regression"), task_kind("multiclass")
    y_year = np.array([2010.0, 2012.0, 2016.0], np.float32)
    year = reg.score(y_year, np.array([[2000.0], [1990.0], [2030.0]]), std=2.5)  # MAE ~15: far off
    digit = cls.score(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    unseen = cls.score(np.array([-1, -1]), np.array([[0.9, 0.1], [0.2, 0.8]]))  # no scorable row: NaN
    value, note = mean_score({"year": year, "digit": digit, "unseen": unseen, "gone": None, "mean_score": 0.5})
    assert value == pytest.approx((year["score"] + digit["score"]) / 2)
    assert value != pytest.approx((year["mae"] + digit["accuracy"]) / 2)
    assert value < digit["score"]  # a far-off regression pulls the mean down, never up by its raw error
    assert note == "left out (no score): unseen, gone"
    assert mean_score({"digit": digit}) == (digit["score"], "")
    assert mean_score({"unseen": unseen}) == (None, "left out (no score): unseen")
    with pytest.raises(TypeError, match="normalised scores only"):
        mean_score({"year": year["mae"], "digit": digit})


def test_score_tasks_agrees_with_metrics_score_all():
    from edgemtl import metrics

    table = read_table(FASHION)
    pairs = _fashion_tasks(table)
    rng = np.random.default_rng(1)
    labels, y, outputs = {}, {}, {}
    for typed, _ in pairs:
        kind = task_kind(typed.type)
        values = table.columns[typed.column]
        labels[typed.name] = kind.learn_labels(typed, values)
        y[typed.name] = kind.encode_labels(labels[typed.name], values, typed.separator)
        outputs[typed.name] = _outputs(typed.type, len(values), kind.n_outputs(labels[typed.name]), rng)
    new = kinds.score_tasks([t for t, _ in pairs], labels, y, outputs)
    old = metrics.score_all([t for _, t in pairs], labels, y, outputs)
    assert new == {k: v for k, v in old.items() if k != "mean_score"}
    assert mean_score(new)[0] == pytest.approx(old["mean_score"])


# --- TF half ------------------------------------------------------------------------------------------------------
def test_tf_half_builds_the_same_heads_losses_soft_losses_augmentation_and_mixing(monkeypatch):
    from edgemtl.compress.distill import mix_inputs, soft_loss
    from edgemtl.data import pipeline
    from edgemtl.models import build, heads
    from edgemtl.models.encoders import REGISTRY
    from edgemtl.preprocess import Tokenizer
    from edgemtl.tfk import keras, tf
    from edgemtl.train.losses import task_loss

    assert {n: k.dtype for n, k in MODALITIES.items()} == build.INPUT_DTYPES
    for n, kind in MODALITIES.items():
        assert kind.encoders() is REGISTRY[n]
    for typed, inp in (AUDIO, IMAGE, PHOTO, TITLE, YEAR_IN):
        assert modality(inp["type"]).input_shape(typed) == build.input_shape(inp)

    table = read_table(FASHION)
    rng = np.random.default_rng(2)
    titles = table.columns["title"]
    tokenizer = Tokenizer.fit(titles, 300)
    for typed, task in _fashion_tasks(table):
        kind = task_kind(typed.type)
        values = table.columns[typed.column]
        info = kind.learn_labels(typed, values)
        y = kind.encode_labels(info, values, typed.separator)
        x = keras.Input((8,))
        matches = [False] + ([True] if kind.supports_label_match else [])
        for with_match in matches:
            tokens = keras.Input((12,), dtype="int32")
            inputs = [x, tokens] if with_match else [x]
            new_match = kind.label_match(tokens, typed, info, tokenizer, "t") if with_match else None
            old_match = heads.label_match(tokens, task["name"], info, tokenizer, "t") if with_match else None
            new_model = keras.Model(inputs, kind.head(x, typed, info, new_match))
            old_model = keras.Model(inputs, heads.head(x, task, info, old_match))
            assert [type(la).__name__ for la in new_model.layers] == [type(la).__name__ for la in old_model.layers]
            assert [la.name for la in new_model.layers] == [la.name for la in old_model.layers]
            new_model.set_weights(old_model.get_weights())
            feed = [rng.normal(size=(16, 8)).astype(np.float32)]
            if with_match:
                feed.append(np.stack([tokenizer.encode(t, 12) for t in titles[:16]]))
                assert kind.match_tables(info["classes"], tokenizer) == heads.match_tables(info["classes"], tokenizer)
            assert np.allclose(new_model.predict(feed, verbose=0), old_model.predict(feed, verbose=0))
        out = _outputs(typed.type, len(values), kind.n_outputs(info), rng).astype(np.float32)
        for smoothing, loss in ((0.0, "auto"), (0.1, "huber"), (0.0, "mae")):
            t2, d2 = task_spec(typed.name, typed.type, label_smoothing=smoothing, loss=loss, column=typed.column)
            new_loss = float(kind.loss(t2, info)(tf.constant(y), tf.constant(out)))
            assert new_loss == pytest.approx(float(task_loss(d2, info)(tf.constant(y), tf.constant(out))), rel=1e-6)
        student = np.clip(out + rng.normal(0, 0.05, size=out.shape).astype(np.float32), 0.01, 0.99) \
            if typed.type != "regression" else out + 1.0
        for temperature in (1.0, 2.0):
            new_soft = float(kind.soft_loss(typed, info, temperature)(tf.constant(out), tf.constant(student)))
            old_soft = float(soft_loss(task, info, temperature)(tf.constant(out), tf.constant(student)))
            assert new_soft == pytest.approx(old_soft, rel=1e-6) and new_soft > 0

    images = features.decode_input(PHOTO[1], table.take(slice(0, 8)))[0]
    built = []  # the random layers each augmenter builds (their draws differ run to run, their settings must not)
    for layer in ("RandomFlip", "RandomRotation", "RandomZoom"):
        real = getattr(keras.layers, layer)
        monkeypatch.setattr(keras.layers, layer, lambda *a, _real=real, **k: built.append((_real.__name__, a, k))
                            or _real(*a, **k))
    for typed, inp in (PHOTO, IMAGE):
        batch = tf.constant(images if typed is PHOTO[0] else images[..., :1])
        built.clear()
        new = modality("image").augmenter(typed)(batch).numpy()
        new_layers = list(built)
        built.clear()
        old = pipeline._image_augmenter(inp)(batch).numpy()
        assert new_layers == built and len(built) == sum(bool(v) for v in inp["augment"].values())
        assert new.dtype == old.dtype == np.uint8 and new.shape == old.shape == batch.shape
    plain = SimpleNamespace(flip=False, rotation=0.0, crop=0.0)
    assert modality("image").augmenter(SimpleNamespace(**{**vars(PHOTO[0]), "augment": plain})) is None

    tokens = np.stack([tokenizer.encode(t, 12) for t in titles[:8]])
    batch = {"photo": tf.constant(images), "title": tf.constant(tokens),
             "year_in": tf.constant(rng.normal(size=(8, 1)).astype(np.float32))}
    tf.random.set_seed(4)
    new = kinds.mix_batch(batch, {"photo": "image", "title": "text", "year_in": "numeric"})
    tf.random.set_seed(4)
    old = mix_inputs(batch)
    for name in batch:
        assert new[name].dtype == batch[name].dtype and np.array_equal(new[name].numpy(), old[name].numpy())
