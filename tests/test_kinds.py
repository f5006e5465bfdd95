"""edgemtl.kinds: every modality's and task type's logic, one class each, checked against values computed here by
hand (PIL, wave, numpy) on the embedded real data: the av_digits demo (WAV + PNG) and tests/data/fashion_mini (JPEG +
titles + years). Training's decode and the runtime's prepare are the same code and give the same arrays. Specs are
stand-ins with the typed recipe's attributes.
"""
import dataclasses
import json
import math
import re
import subprocess
import sys
import wave
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from edgemtl import kinds
from edgemtl.data.manifest import read_table
from edgemtl.errors import EdgemtlError
from edgemtl.kinds import MODALITIES, TASKS, mean_score, modality, task_kind
from edgemtl.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "av_digits" / "pairs.csv"
FASHION = REPO / "tests" / "data" / "fashion_mini" / "products.csv"


def spec(**keys):
    """A stand-in typed spec: attribute access, tuples."""
    return SimpleNamespace(**keys)


def task_spec(name, type_, **keys):
    base = {"name": name, "type": type_, "column": keys.pop("column", name), "loss": "auto", "label_smoothing": 0.0,
            "threshold": 0.5, "separator": "|", "metrics": (), "auxiliary": False, "match_labels": None,
            "unmatched_weight": 0.0, "min": None, "max": None}
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


def _pil(path, size, channels) -> np.ndarray:
    """An image file as PIL reads it, at (height, width), without edgemtl."""
    image = Image.open(path).convert("L" if channels == 1 else "RGB").resize(size[::-1], Image.BILINEAR)
    array = np.asarray(image, np.uint8)
    return array[..., None] if channels == 1 else array


def _wav(path, length) -> np.ndarray:
    """A 16-bit mono 8 kHz WAV as float samples in [-1, 1], cut or padded to `length`, without edgemtl."""
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
        samples = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
    return np.pad(samples, (0, max(0, length - len(samples))))[:length]


# --- TF-free -------------------------------------------------------------------------------------------------------
def test_importing_kinds_loads_no_tensorflow_yaml_or_recipe():
    code = ("import sys, edgemtl.kinds as k; k.modality('image'); k.task_kind('regression');"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'yaml')"
            " or m.startswith('edgemtl.recipe') or m.startswith('edgemtl.tfk')]; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr


def test_registry_covers_the_shared_names_and_the_schema_defaults():
    from edgemtl.names import MODALITIES as MODALITY_NAMES, TASK_TYPES
    from edgemtl.recipe.schema import INPUTS

    assert tuple(MODALITIES) == MODALITY_NAMES and tuple(TASKS) == TASK_TYPES
    assert all(k.name == n for n, k in {**MODALITIES, **TASKS}.items())
    defaults = {}
    for name, cls in INPUTS.items():  # the encoder a recipe's input gets when it names none
        field = {f.name: f for f in dataclasses.fields(cls)}["encoder"]
        defaults[name] = (field.default if field.default is not dataclasses.MISSING else field.default_factory()).type
    assert {n: k.default_encoder for n, k in MODALITIES.items()} == defaults
    with pytest.raises(EdgemtlError, match="unknown modality 'sound'"):
        modality("sound")
    with pytest.raises(EdgemtlError, match="unknown task type 'polygons'"):
        task_kind("polygons")


# --- modalities: decode for training, manifest entry, runtime prepare ------------------------------------------------
@pytest.mark.parametrize("which", ["audio", "image"])
def test_demo_wav_and_png_decode_for_training_as_the_runtime_prepares_them(demo_table, which, tmp_path):
    from edgemtl.runtime.inputs import InputPreparer

    typed = AUDIO if which == "audio" else IMAGE
    kind = modality(which)
    decoded, bad = kind.decode(typed, demo_table)
    paths = [demo_table.base / p for p in demo_table.columns[typed.column]]
    by_hand = np.stack([_wav(p, 8000) if which == "audio" else _pil(p, (28, 28), 1) for p in paths])
    assert decoded.dtype == np.dtype(kind.dtype) and bad == {}
    assert decoded.shape == (demo_table.n_rows, *kind.input_shape(typed))
    if which == "audio":
        np.testing.assert_allclose(decoded, by_hand, atol=1e-6)
    else:
        assert np.array_equal(decoded, by_hand)
    assert decoded.std() > 0  # real content, not zeros

    entry = kind.manifest_entry(typed)
    shape = [8000] if which == "audio" else [28, 28, 1]
    pre = {"sample_rate": 8000, "clip_samples": 8000} if which == "audio" else {"size": [28, 28], "channels": 1}
    assert entry == {"name": which, "modality": which, "dtype": kind.dtype, "shape": [None, *shape],
                     "column": which, "preprocess": pre}
    preparer = InputPreparer(entry, tmp_path)
    for i, path in enumerate(paths):
        prepared = preparer(str(path))
        assert np.array_equal(prepared, decoded[i]) and np.array_equal(kind.prepare(entry, str(path)), prepared)
        assert np.array_equal(kind.prepare(entry, path.read_bytes()), prepared)


def test_demo_audio_given_as_samples_and_bad_audio(demo_table, tmp_path):
    from edgemtl.kinds.audio import read_wav
    from edgemtl.runtime.inputs import InputPreparer

    kind = modality("audio")
    entry = kind.manifest_entry(AUDIO)
    preparer = InputPreparer(entry, tmp_path)
    path = demo_table.base / demo_table.columns["audio"][0]
    samples, rate = read_wav(path)
    np.testing.assert_allclose(samples, _wav(path, len(samples)), atol=1e-7)
    from edgemtl.kinds.audio import resample

    twice = resample(samples, rate, 2 * rate)  # the same recording at twice the rate: resampled back
    back = preparer(twice, rate=2 * rate)
    assert back.shape == (8000,) and np.abs(back - _wav(path, 8000)).max() < 0.05
    assert np.array_equal(kind.prepare(entry, twice, rate=2 * rate), back)
    for bad, rate_, message in ((samples, None, "needs its sample rate"), (samples, 1000, "outside 4000-192000 Hz"),
                                (np.zeros(11 * rate, np.float32), rate, "11.0 s of audio.*refused"),
                                ((samples * 1000).astype(np.int16), rate, "dtype int16")):
        with pytest.raises(EdgemtlError, match=f"^input 'audio': .*{message}"):
            preparer(bad, rate=rate_)


def test_fashion_jpeg_and_titles_decode_for_training_as_the_runtime_prepares_them(fashion_table, tmp_path):
    from edgemtl.runtime.inputs import InputPreparer

    image = modality("image")
    decoded, _ = image.decode(PHOTO, fashion_table)
    paths = [fashion_table.base / p for p in fashion_table.columns["image"]]
    assert decoded.shape == (40, 48, 40, 3) and np.array_equal(decoded, np.stack([_pil(p, (48, 40), 3) for p in paths]))
    entry = image.manifest_entry(PHOTO)
    assert entry["preprocess"] == {"size": [48, 40], "channels": 3} and entry["shape"] == [None, 48, 40, 3]
    preparer = InputPreparer(entry, tmp_path)
    assert np.array_equal(preparer(str(paths[0])), decoded[0])
    as_floats = decoded[0].astype(np.float32) / 255.0  # float pixels in [0, 1], as the runtime accepts them
    assert np.array_equal(preparer(as_floats), decoded[0])
    assert np.array_equal(preparer(Image.open(paths[0])), decoded[0])
    with pytest.raises(EdgemtlError, match="^input 'photo': image array has dtype <U"):
        preparer(np.array(["a"]))

    text = modality("text")
    titles = fashion_table.columns["title"]
    tokenizer = text.fit_tokenizer(TITLE, titles)
    counts = Counter(w for t in titles for w in re.findall(r"\w+", t.lower()))
    assert tokenizer.vocab == ["<pad>", "<unk>", *sorted(counts, key=lambda w: (-counts[w], w))[:200]]
    decoded, _ = text.decode(TITLE, fashion_table, tokenizer)
    for row, title in zip(decoded, titles):
        ids = [tokenizer.vocab.index(w) for w in re.findall(r"\w+", title.lower())][:12]
        assert list(row) == ids + [0] * (12 - len(ids))
    entry = text.manifest_entry(TITLE)
    assert entry["preprocess"] == {"vocab": "vocab_title.txt", "max_length": 12, "lowercase": True}
    tokenizer.save(tmp_path / entry["preprocess"]["vocab"])
    preparer = InputPreparer(entry, tmp_path)
    for i, title in enumerate(titles):
        assert np.array_equal(preparer(title), decoded[i]) and preparer(title).dtype == np.int32
    for bad, message in (("  ", "empty text"), (3, "expected a string, got int")):
        with pytest.raises(EdgemtlError, match=f"^input 'title': {message}"):
            preparer(bad)
    with pytest.raises(EdgemtlError, match="vocabulary 'vocab_title.txt'"):
        text.runtime_resources(entry, tmp_path / "elsewhere")


def test_fashion_numeric_column_decodes_for_training_as_the_runtime_prepares_it(fashion_table, tmp_path):
    from edgemtl.runtime.inputs import InputPreparer

    kind = modality("numeric")
    decoded, bad = kind.decode(YEAR_IN, fashion_table)
    assert bad == {} and np.array_equal(decoded[:, 0], [float(y) for y in fashion_table.columns["year"]])
    broken = fashion_table.take(slice(0, 10))
    broken.columns["year"] = ["2011", "", "x", "nan"] + list(broken.columns["year"][4:])
    assert sorted(kind.decode(YEAR_IN, broken)[1]) == [1, 2, 3]
    entry = kind.manifest_entry(YEAR_IN)
    assert entry["column"] is None and entry["preprocess"] == {"columns": ["year"]}
    preparer = InputPreparer(entry, tmp_path)
    for value in ([2012], {"year": 2012}, {"year": 2012, "other": 1}):
        assert np.array_equal(preparer(value), np.array([2012.0], np.float32))
    for value, message in (({"month": 1}, "missing value"), ([1, 2], "shape"), (["x"], "not numbers"),
                           ([float("inf")], "NaN or infinite")):
        with pytest.raises(EdgemtlError, match=f"^input 'year_in': .*{message}"):
            preparer(value)
    mean, var = kind.stats(decoded)
    years = np.array([float(y) for y in fashion_table.columns["year"]])
    assert np.allclose(mean, [years.mean()]) and np.allclose(var, [years.var()], rtol=1e-5)


def test_sequences_from_npy_files_and_from_an_npz(demo_table, tmp_path):
    """Real signals: the demo's digit images read as 28-step sequences of 28 channels (as tests/test_model does)."""
    from edgemtl.runtime.inputs import InputPreparer

    windows = np.stack([_pil(demo_table.base / p, (28, 28), 1)[..., 0] for p in demo_table.columns["image"]])
    windows = windows.astype(np.float32) / 255.0
    for i, w in enumerate(windows):
        np.save(tmp_path / f"w{i}.npy", w)
    np.save(tmp_path / "short.npy", windows[0][:20])
    (tmp_path / "rows.csv").write_text("window\n" + "".join(f"w{i}.npy\n" for i in range(len(windows)))
                                       + "short.npy\nmissing.npy\n")
    np.savez(tmp_path / "rows.npz", window=windows)
    kind = modality("sequence")
    typed = spec(name="window", type="sequence", column="window", length=28, channels=28)
    for source, bad_rows in (("rows.csv", [12, 13]), ("rows.npz", [])):
        decoded, bad = kind.decode(typed, read_table(tmp_path / source))
        assert np.array_equal(decoded[:len(windows)], windows) and sorted(bad) == bad_rows
    wrong = spec(name="window", type="sequence", column="window", length=28, channels=14)
    assert len(kind.decode(wrong, read_table(tmp_path / "rows.npz"))[1]) == len(windows)
    entry = kind.manifest_entry(typed)
    preparer = InputPreparer(entry, tmp_path)
    assert np.array_equal(preparer(windows[3].tolist()), windows[3])
    with pytest.raises(EdgemtlError, match=r"^input 'window': array has shape \[5, 28\]"):
        preparer(windows[3][:5])


def test_command_line_and_manifest_values_as_predict_reads_them(tmp_path):
    from edgemtl.runtime import predict_cli

    expected = {"image": str(tmp_path / "x.txt"), "audio": str(tmp_path / "x.txt"), "text": "x.txt",
                "numeric": [1.5, 2], "sequence": [1.5, 2]}
    for name, kind in MODALITIES.items():
        entry = SimpleNamespace(column="x", preprocess=None)
        model = SimpleNamespace(inputs={"x": SimpleNamespace(kind=name, modality=kind)}, presence={},
                                manifest=SimpleNamespace(input=lambda _, e=entry: e))
        text = "[1.5, 2]" if kind.json_value else "x.txt"
        assert predict_cli._value(model, "x", text) == (expected[name] if kind.json_value else text)
        assert predict_cli._cell(model, "x", {"x": text}, ("x",), tmp_path) == expected[name]
    with pytest.raises(EdgemtlError, match="input 'x': give numbers as JSON"):
        modality("numeric").cli_value("x", "twelve")
    assert [n for n, k in MODALITIES.items() if k.media] == ["image", "audio", "sequence"]
    assert modality("audio").float_parts(AUDIO) == ("audio_logmel",) and modality("image").float_parts(IMAGE) == ()
    assert modality("audio").problems(spec(**{**vars(AUDIO), "frame_length": 200}), "inputs[0]") == \
        ["inputs[0].frame_length: must be a power of two, got 200"]


# --- tasks: labels, decide, score, answer, parity ---------------------------------------------------------------------
def _fashion_tasks(table):
    """Real label columns of fashion_mini for every task type (multilabel: colour|season, a made-up set column)."""
    table.columns["tags"] = [f"{c}|{s}" if i % 7 else "" for i, (c, s) in
                             enumerate(zip(table.columns["baseColour"], table.columns["season"]))]
    table.columns["is_men"] = ["Men" if g == "Men" else "Other" for g in table.columns["gender"]]
    return [task_spec("usage", "multiclass"), task_spec("is_men", "binary", threshold=0.4),
            task_spec("tags", "multilabel", threshold=0.3), task_spec("year", "regression")]


def test_labels_learn_and_encode():
    from edgemtl.data.dataset import label_problems

    table = read_table(FASHION)
    for typed in _fashion_tasks(table):
        kind = task_kind(typed.type)
        values = table.columns[typed.column]
        info = kind.learn_labels(typed, values)
        present = [v for v in values if str(v).strip()]
        extra = ["", None, "2020.5"] if typed.type == "regression" else ["", None, "never-seen", "a|never-seen"]
        y = kind.encode_labels(info, values + extra, typed.separator)
        if typed.type == "regression":
            years = np.array([float(v) for v in present])
            assert info == {"type": "regression", "mean": pytest.approx(years.mean()),
                            "std": pytest.approx(years.std())}
            assert y.dtype == np.float32 and np.isnan(y[-3:-1]).all() and y[-1] == np.float32(2020.5)
            assert np.array_equal(y[:len(values)], np.array([float(v) if str(v).strip() else np.nan for v in values],
                                                            np.float32), equal_nan=True)
            assert kind.n_outputs(info) == 1
        elif typed.type == "multilabel":
            classes = sorted({c.strip() for v in present for c in v.split("|") if c.strip()})  # "Red|" is Red
            assert info == {"type": "multilabel", "classes": classes}
            assert y.shape == (len(values) + 4, len(classes)) and y.dtype == np.float32
            for row, v in zip(y, values):
                parts = {c.strip() for c in v.split("|")}
                assert list(row) == ([-1.0] * len(classes) if not v else [float(c in parts) for c in classes])
            assert (y[-4:-2] == -1).all() and y[-1].sum() == 0 and kind.n_outputs(info) == len(classes)
        else:
            classes = sorted(set(present))
            positive = {"positive": classes[-1]} if typed.type == "binary" else {}  # the class its output is of
            assert info == {"type": typed.type, "classes": classes, **positive}
            assert list(y[:len(values)]) == [classes.index(v) if v.strip() else -1 for v in values]
            assert list(y[len(values):]) == [-1, -1, -2, -2]  # missing: masked; unseen: masked, scored as errors
            assert y.dtype == (np.float32 if typed.type == "binary" else np.int32)
            assert kind.n_outputs(info) == (1 if typed.type == "binary" else len(classes))
        one_class = kind.learn_labels(typed, values[:1])
        recipe = SimpleNamespace(tasks=[typed])
        problems = label_problems(recipe, {typed.name: one_class})
        assert problems == kind.label_problems(typed, one_class, f"tasks[0] ({typed.name})")
        assert (problems != []) == (typed.type != "regression")
        assert label_problems(recipe, {typed.name: info}) == []
    assert task_kind("regression").learn_labels(task_spec("y", "regression"), ["3", "3"])["std"] == 1.0


def _outputs(kind_name, n_rows, n_classes, rng):
    if kind_name == "multiclass":
        z = rng.normal(size=(n_rows, n_classes))
        return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    if kind_name == "binary":
        return rng.uniform(size=(n_rows, 1))
    if kind_name == "multilabel":
        return rng.uniform(size=(n_rows, n_classes))
    return rng.normal(2012, 3, size=(n_rows, 1))


def _by_hand(type_, y, out, threshold, std):
    """(decisions, the raw primary metric, the normalised score) computed here."""
    if type_ == "regression":
        pred = out.reshape(-1)
        valid = np.isfinite(y)
        mae = float(np.mean(np.abs(pred[valid] - y[valid])))
        return pred, mae, 1 - mae / std
    if type_ == "multiclass":
        pred = out.argmax(axis=1)
    elif type_ == "binary":
        pred = (out.reshape(-1) >= threshold).astype(int)
    else:
        pred = (out >= threshold).astype(int)
    valid = (y if y.ndim == 1 else y[:, 0]) >= 0
    acc = float(np.mean(pred[valid] == y[valid]))
    return pred, acc, acc


def test_decide_score_answer_entry_and_parity_rules():
    from edgemtl.runtime.answers import answer

    table = read_table(FASHION)
    rng = np.random.default_rng(0)
    for typed in _fashion_tasks(table):
        kind = task_kind(typed.type)
        values = table.columns[typed.column]
        info = kind.learn_labels(typed, values)
        y = kind.encode_labels(info, values, typed.separator)
        out = _outputs(typed.type, len(values), kind.n_outputs(info), rng)
        std = info.get("std", 1.0)
        pred, primary, normalised = _by_hand(typed.type, y, out, typed.threshold, std)
        assert np.array_equal(kind.decide(out, typed.threshold), pred)
        m = kind.score(y, out, typed.threshold, std)
        assert set(m) == {*kind.metric_names, "score", "n"} | ({"unseen"} if kind.unseen_rows_scored and
                                                                  kind.has_classes else set())
        assert m[kind.primary_metric] == pytest.approx(primary) and m["score"] == pytest.approx(normalised)
        assert m["n"] == int(np.isfinite(y).sum() if typed.type == "regression" else (y.reshape(len(y), -1)[:, 0] >= 0)
                             .sum())
        entry = kind.output_entry(typed, info)
        decode = {"multiclass": "argmax", "binary": "threshold", "multilabel": "threshold", "regression": "value"}
        assert entry["task"] == typed.name and entry["type"] == typed.type and entry["decode"] == decode[typed.type]
        assert entry.get("labels") == info.get("classes") and entry.get("threshold") == (
            typed.threshold if typed.type in ("binary", "multilabel") else None)
        for row in out[:20]:
            got = answer(entry, row)
            assert got == kind.answer(entry, row)
            if typed.type == "regression":
                assert got == {"value": pytest.approx(row[0])}
            elif typed.type == "multiclass":
                assert got["label"] == info["classes"][row.argmax()] and got["score"] == pytest.approx(row.max())
            elif typed.type == "binary":
                assert got["label"] == info["classes"][int(row[0] >= 0.4)] and got["scores"][info["classes"][1]] == \
                    pytest.approx(row[0])
            else:
                assert got["labels"] == [c for c, p in zip(info["classes"], row) if p >= 0.3]
        noisy = out + rng.normal(0, 0.05, size=out.shape) if typed.type != "regression" else \
            out + rng.normal(0, 30.0, size=out.shape)  # regression agrees within 1 % of ~2012
        agree = kind.agreement(out, noisy, typed.threshold)
        if typed.type == "regression":
            assert agree == pytest.approx(np.mean(np.abs(noisy - out) <= 0.01 * np.abs(out)))
            assert np.allclose(kind.float_diff(out, noisy), np.abs(noisy - out) / np.abs(out))
        else:
            decide = _by_hand(typed.type, y, noisy, typed.threshold, std)[0]
            assert agree == pytest.approx(np.mean(pred == decide))
            assert np.array_equal(kind.float_diff(out, noisy), np.abs(noisy - out))
        assert 0 < agree < 1
        empty = kind.score(np.full_like(y, np.nan if typed.type == "regression" else -1), out, typed.threshold, std)
        assert empty["n"] == 0 and (empty["score"] is None or math.isnan(empty["score"]))  # None: with a reason


class _Split:
    """The part of data.dataset.Split that calibration_rows reads."""

    def __init__(self, y: dict):
        self.y = y

    def __len__(self):
        return len(next(iter(self.y.values())))


def test_calibration_rows_cover_every_class():
    from edgemtl.export.run import MIN_CALIBRATION_ROWS, calibration_rows

    table = read_table(FASHION)
    for typed in _fashion_tasks(table):
        kind = task_kind(typed.type)
        values = table.columns[typed.column]
        info = kind.learn_labels(typed, values)
        y = kind.encode_labels(info, values, typed.separator)
        rows = calibration_rows(_Split({typed.name: y}), [typed], max(len(values), MIN_CALIBRATION_ROWS), 0)
        first = rows[:len(set(kind.covering_rows(y)))]  # one row can show several labels of a multilabel task
        if typed.type in ("multiclass", "binary"):
            assert sorted(set(y[first])) == list(range(len(info["classes"])))
        elif typed.type == "multilabel":
            assert (y[first] == 1).any(axis=0).all()
        else:
            assert kind.covering_rows(y) == []
        assert len(set(rows)) == len(rows) >= MIN_CALIBRATION_ROWS


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


def _scored_fashion(seed):
    table = read_table(FASHION)
    tasks = _fashion_tasks(table)
    rng = np.random.default_rng(seed)
    labels, y, outputs = {}, {}, {}
    for typed in tasks:
        kind = task_kind(typed.type)
        values = table.columns[typed.column]
        labels[typed.name] = kind.learn_labels(typed, values)
        y[typed.name] = kind.encode_labels(labels[typed.name], values, typed.separator)
        outputs[typed.name] = _outputs(typed.type, len(values), kind.n_outputs(labels[typed.name]), rng)
    return tasks, labels, y, outputs


def test_score_all_means_the_normalised_scores_and_writes_none_when_no_task_scored():
    tasks, labels, y, outputs = _scored_fashion(1)
    result = kinds.score_all(tasks, labels, y, outputs)
    hand = [_by_hand(t.type, y[t.name], outputs[t.name], t.threshold, labels[t.name].get("std", 1.0))[2]
            for t in tasks]
    assert result["mean_score"] == pytest.approx(np.mean(hand)) and "mean_note" not in result
    assert result["year"]["score"] == pytest.approx(1 - result["year"]["mae"] / labels["year"]["std"])
    no_rows = {n: np.full_like(v, np.nan if t.type == "regression" else -1) for t, (n, v) in zip(tasks, y.items())}
    none = kinds.score_all(tasks, labels, no_rows, outputs)
    assert none["mean_score"] is None and none["mean_note"] == "left out (no score): usage, is_men, tags, year"
    assert mean_score(none) == (None, none["mean_note"])  # its own keys are not tasks


def test_score_all_keeps_auxiliary_tasks_out_of_the_mean():
    """A teacher has its auxiliary tasks and its students do not: the mean must cover the same tasks for both."""
    tasks, labels, y, outputs = _scored_fashion(2)
    year = next(t for t in tasks if t.name == "year")
    tasks = [task_spec("year", "regression", auxiliary=True) if t is year else t for t in tasks]
    teacher = kinds.score_all(tasks, labels, y, outputs)
    student = kinds.score_all([t for t in tasks if not t.auxiliary], labels, y, outputs)
    assert "year" in teacher and teacher["year"]["score"] != student["mean_score"]
    assert teacher["mean_score"] == pytest.approx(student["mean_score"])


class _Rows:
    """The part of data.dataset.Split that evaluation and validation read."""

    def __init__(self, x: dict, y: dict):
        self.x, self.y = x, y

    def __len__(self):
        return len(next(iter(self.x.values())))


def test_regression_enters_evaluate_and_val_mean_score_by_its_normalised_score_never_its_mae(tmp_path, monkeypatch):
    """A far-off regression (MAE in years, dozens) beside a class task: every mean is of normalised scores."""
    from edgemtl.train import evaluate
    from edgemtl.train.callbacks import ValidationScores

    tasks = [task_spec("digit", "multiclass"), task_spec("year", "regression")]
    labels = {"digit": {"type": "multiclass", "classes": ["0", "1"]},
              "year": {"type": "regression", "mean": 2012.0, "std": 4.0}}
    y = {"digit": np.array([0, 1, 1, 0]), "year": np.array([2010.0, 2012.0, 2016.0, np.nan], np.float32)}
    outputs = {"digit": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]),
               "year": np.array([[1990.0], [2040.0], [2000.0], [0.0]])}
    accuracy, mae = 2 / 4, (20 + 28 + 16) / 3
    normalised = (accuracy + (1 - mae / 4.0)) / 2
    raw = (accuracy + mae) / 2

    class Net:
        output_names = ["digit", "year"]

        def predict(self, x, batch_size=None, verbose=0):
            return outputs

    class Data:
        labels = None

        def __getitem__(self, name):  # only the test split has rows
            return _Rows({"i": np.zeros((4 if name == "test" else 0, 1))}, y if name == "test" else {})

    data = Data()
    data.labels = labels
    run = RunDir(tmp_path)
    monkeypatch.setattr(run, "require_model", lambda name: tmp_path / "model.keras")
    monkeypatch.setattr(evaluate, "load_model", lambda path: Net())
    scores = evaluate.evaluate_model(run, SimpleNamespace(tasks=tasks), data)
    assert set(scores) == {"test"} and scores["test"]["year"]["mae"] == pytest.approx(mae)
    assert scores["test"]["mean_score"] == pytest.approx(normalised) and abs(normalised - raw) > 1
    assert json.loads(run.metrics_file("teacher").read_text())["splits"]["test"]["mean_score"] == \
        pytest.approx(normalised)

    logs = {}
    callback = ValidationScores(Net(), _Rows({"i": np.zeros((4, 1))}, y), tasks, labels, 4)
    callback.on_epoch_end(0, logs)
    assert logs["val_mean_score"] == pytest.approx(normalised) and logs["val_year_mae"] == pytest.approx(mae)
    assert logs["val_digit_accuracy"] == pytest.approx(accuracy)
    unlabelled = {"digit": np.full(4, -1), "year": np.full(4, np.nan, np.float32)}
    logs = {}
    ValidationScores(Net(), _Rows({"i": np.zeros((4, 1))}, unlabelled), tasks, labels, 4).on_epoch_end(0, logs)
    assert "val_mean_score" not in logs  # no scorable row: left out, never NaN


# --- TF half ------------------------------------------------------------------------------------------------------
def test_heads_and_encoders_from_the_kinds():
    from edgemtl.kinds.text import Tokenizer
    from edgemtl.models.encoders import audio, image, numeric, sequence, text
    from edgemtl.tfk import keras

    for n, module in (("image", image), ("text", text), ("audio", audio), ("numeric", numeric),
                      ("sequence", sequence)):
        assert modality(n).encoders() is module.ENCODERS and modality(n).default_encoder in module.ENCODERS
    table = read_table(FASHION)
    rng = np.random.default_rng(2)
    titles = table.columns["title"]
    tokenizer = Tokenizer.fit(titles, 300)
    feed = rng.normal(size=(16, 8)).astype(np.float32)
    for typed in _fashion_tasks(table):
        kind = task_kind(typed.type)
        info = kind.learn_labels(typed, table.columns[typed.column])
        x = keras.Input((8,))
        out = keras.Model(x, kind.head(x, typed, info)).predict(feed, verbose=0)
        assert out.shape == (16, kind.n_outputs(info))
        if typed.type == "multiclass":
            assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
        elif typed.type == "regression":
            model = keras.Model(x, kind.head(x, typed, info))
            model.set_weights([np.zeros_like(w) for w in model.get_weights()])  # standardised 0 -> the label mean
            assert np.allclose(model.predict(feed, verbose=0), info["mean"])
        else:
            assert ((out > 0) & (out < 1)).all()
        if kind.supports_label_match:
            tokens = keras.Input((12,), dtype="int32")
            match = kind.label_match(tokens, typed, info, tokenizer, "t")
            model = keras.Model([x, tokens], kind.head(x, typed, info, match))
            assert {f"{typed.name}_logits", f"{typed.name}_label_match", f"{typed.name}_logits_matched"} <= {
                la.name for la in model.layers}
            words, classes = kind.match_tables(info["classes"], tokenizer)
            assert len(classes) == len(info["classes"]) and all(ids and min(ids) > 1 for ids in words)


def test_losses_and_soft_losses_by_hand():
    from edgemtl.tfk import tf

    y = np.array([0, 2, -1, 1])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.3, 0.3, 0.4], [0.2, 0.5, 0.3]], np.float32)
    info = {"classes": ["a", "b", "c"]}
    mc = task_kind("multiclass")
    loss = float(mc.loss(task_spec("t", "multiclass"), info)(tf.constant(y), tf.constant(p)))
    assert loss == pytest.approx(-np.mean(np.log([0.7, 0.6, 0.5])), rel=1e-5)  # the unlabelled row is masked
    assert float(mc.soft_loss(task_spec("t", "multiclass"), info, 2.0)(tf.constant(p), tf.constant(p))) == \
        pytest.approx(0.0, abs=1e-6)
    assert float(mc.soft_loss(task_spec("t", "multiclass"), info, 2.0)(tf.constant(p), tf.constant(p[::-1]))) > 0

    yb = np.array([1.0, 0.0, -1.0], np.float32)
    pb = np.array([[0.8], [0.4], [0.9]], np.float32)
    bce = float(task_kind("binary").loss(task_spec("t", "binary"), info)(tf.constant(yb), tf.constant(pb)))
    assert bce == pytest.approx(-np.mean([np.log(0.8), np.log(0.6)]), rel=1e-5)

    reg = task_kind("regression")
    yr = np.array([10.0, 12.0, np.nan], np.float32)
    pr = np.array([[11.0], [8.0], [0.0]], np.float32)
    err = np.array([1.0, -4.0]) / 2.0  # on the standardised scale (std 2)
    for name, by_hand in (("auto", np.mean(err ** 2)), ("mae", np.mean(np.abs(err))),
                          ("huber", np.mean([0.5 * 0.5 ** 2, 2.0 - 0.5]))):
        got = float(reg.loss(task_spec("t", "regression", loss=name), {"std": 2.0})(tf.constant(yr), tf.constant(pr)))
        assert got == pytest.approx(by_hand, rel=1e-5)
    soft = float(reg.soft_loss(task_spec("t", "regression"), {"std": 2.0}, 4.0)(tf.constant(pr), tf.constant(pr + 1)))
    assert soft == pytest.approx(0.25, rel=1e-5)


def test_augmentation_and_mixing_by_modality(fashion_table, monkeypatch):
    from edgemtl.kinds.text import Tokenizer
    from edgemtl.tfk import keras, tf

    images = modality("image").decode(PHOTO, fashion_table.take(slice(0, 8)))[0]
    built = []
    for layer in ("RandomFlip", "RandomRotation", "RandomZoom"):
        real = getattr(keras.layers, layer)
        monkeypatch.setattr(keras.layers, layer, lambda *a, _real=real, **k: built.append((_real.__name__, a))
                            or _real(*a, **k))
    for typed, expected in ((PHOTO, [("RandomFlip", ("horizontal",))]),
                            (IMAGE, [("RandomRotation", (0.03,)), ("RandomZoom", ((-0.08, 0.0),))])):
        batch = tf.constant(images if typed is PHOTO else images[..., :1])
        built.clear()
        out = modality("image").augmenter(typed)(batch).numpy()
        assert built == expected and out.dtype == np.uint8 and out.shape == batch.shape
    plain = SimpleNamespace(flip=False, rotation=0.0, crop=0.0)
    assert modality("image").augmenter(SimpleNamespace(**{**vars(PHOTO), "augment": plain})) is None

    tokens = np.stack([Tokenizer.fit(fashion_table.columns["title"], 300).encode(t, 12)
                       for t in fashion_table.columns["title"][:8]])
    years = np.arange(8, dtype=np.float32).reshape(8, 1) * 10
    batch = {"photo": tf.constant(images), "title": tf.constant(tokens), "year_in": tf.constant(years)}
    tf.random.set_seed(4)
    mixed = {k: v.numpy() for k, v in kinds.mix_batch(batch, {"photo": "image", "title": "text",
                                                             "year_in": "numeric"}).items()}
    assert {k: (v.dtype, v.shape) for k, v in mixed.items()} == {k: (v.dtype.as_numpy_dtype, tuple(v.shape))
                                                                 for k, v in batch.items()}
    for i in range(8):
        assert any(np.array_equal(mixed["title"][i], tokens[j]) for j in range(8))  # token ids never blend
        assert 0 <= mixed["year_in"][i, 0] <= 70  # numbers blend between two rows


def test_a_large_jpeg_decodes_scaled_down_close_to_the_full_decode():
    """load_image decodes a JPEG of at least twice the target size with PIL's draft (1/2..1/8 in the DCT): the
    pixels stay within a few levels of decoding it whole and resizing, which is what it did before."""
    import io

    from PIL import Image

    from conftest import DEMO
    from edgemtl.kinds.image import load_image

    diffs = []
    for path in sorted((DEMO / "images").iterdir())[:8]:
        big = Image.open(path).convert("RGB").resize((224, 224), Image.BICUBIC)
        buffer = io.BytesIO()
        big.save(buffer, "JPEG", quality=90)
        data = buffer.getvalue()
        whole = Image.open(io.BytesIO(data))
        whole.load()
        reference = np.asarray(whole.convert("RGB").resize((28, 28), Image.BILINEAR), dtype=np.int16)
        drafted = Image.open(io.BytesIO(data))
        drafted.draft("RGB", (28, 28))
        assert drafted.size[0] < 224  # the decoder really scales
        got = load_image(data, (28, 28), 3)
        assert got.shape == (28, 28, 3) and got.dtype == np.uint8
        diffs.append(np.abs(got.astype(np.int16) - reference))
    diffs = np.stack(diffs)
    assert diffs.mean() <= 3.0 and np.percentile(diffs, 99) <= 32, (diffs.mean(), np.percentile(diffs, 99))
    small = Image.open(sorted((DEMO / "images").iterdir())[0])  # at the target size: decoded as before
    assert np.array_equal(load_image(sorted((DEMO / "images").iterdir())[0], (28, 28), 1)[..., 0], np.asarray(small))


@pytest.mark.parametrize("decoder", ["simplejpeg", "pil"])
def test_a_jpeg_decoded_from_its_bytes_has_the_pixels_of_pil_open(tmp_path, monkeypatch, decoder):
    """load_image decodes a plain JPEG straight from its bytes (simplejpeg's libjpeg-turbo where the file is already
    in the target mode, else Image.frombytes with PIL's JPEG decoder; PIL alone where simplejpeg is not installed):
    every fashion photo, and re-encodings of one (progressive, grayscale, 4:4:4, with EXIF, odd sizes), give
    exactly the pixels of PIL's Image.open, convert and resize; what the direct path leaves to Image.open (CMYK, a
    JPEG large enough for draft, PNG) still decodes, and a broken file is one clear message."""
    import io

    from edgemtl.kinds import image as image_kind
    from edgemtl.kinds.image import jpeg_frame, load_image

    if decoder == "pil":
        monkeypatch.setattr(image_kind, "simplejpeg", None)
    elif image_kind.simplejpeg is None:
        pytest.skip("simplejpeg is not installed")

    def reference(source, size, channels):
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize(size[::-1], Image.BILINEAR)
        array = np.asarray(im, dtype=np.uint8)
        return array[..., None] if channels == 1 else array

    photos = sorted((FASHION.parent / "images").glob("*.jpg"))
    assert len(photos) > 100
    for path in photos:
        assert jpeg_frame(path.read_bytes()) == (64, 64, "RGB")  # every one takes the direct path
        direct = image_kind._decode_jpeg(path.read_bytes(), 64, 64, "RGB")
        assert isinstance(direct, np.ndarray if decoder == "simplejpeg" else Image.Image)
        for size, channels in (((64, 64), 3), ((28, 40), 1)):
            want = reference(path, size, channels)
            for source in (path, str(path), path.read_bytes()):
                got = load_image(source, size, channels)
                assert got.dtype == np.uint8 and np.array_equal(got, want), (path.name, size, channels)
    photo = Image.open(photos[0]).convert("RGB").resize((90, 70))
    variants = {"progressive": dict(progressive=True), "444": dict(subsampling=0), "low": dict(quality=15),
                "exif": dict(exif=Image.Exif().tobytes())}
    encoded = {}
    for name, options in variants.items():
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", **options)
        encoded[name] = buffer.getvalue()
    for name, image in (("gray", photo.convert("L")), ("cmyk", photo.convert("CMYK")),
                        ("large", photo.resize((300, 300))), ("png", photo)):
        buffer = io.BytesIO()
        image.save(buffer, "PNG" if name == "png" else "JPEG")
        encoded[name] = buffer.getvalue()
    for name, data in encoded.items():
        (tmp_path / f"{name}.jpg").write_bytes(data)
        want = reference(data, (64, 64), 3)
        if name != "large":  # large: drafted, close to the full decode (the test above)
            assert np.array_equal(load_image(data, (64, 64), 3), want), name
            assert np.array_equal(load_image(tmp_path / f"{name}.jpg", (64, 64), 3), want), name
    assert jpeg_frame(encoded["gray"])[2] == "L" and jpeg_frame(encoded["cmyk"]) is None
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.jpg", quality=95)  # more than one first read of the file
    assert (tmp_path / "noise.jpg").stat().st_size > image_kind.FIRST_READ
    assert np.array_equal(load_image(tmp_path / "noise.jpg", (400, 400), 3), reference(tmp_path / "noise.jpg",
                                                                                      (400, 400), 3))
    broken = encoded["low"][:len(encoded["low"]) // 2]
    for source in (broken, tmp_path / "missing.jpg", tmp_path):
        with pytest.raises(kinds.BadInput, match="not a readable image|not found"):
            load_image(source, (64, 64), 3)


def test_answers_list_scores_as_the_float64_conversion_of_the_outputs():
    """An answer's scores are the outputs converted to float64 and listed as Python floats, whatever the output
    dtype (float32 and float16 listed directly: the conversion is exact)."""
    from edgemtl.kinds.base import python_floats

    rng = np.random.default_rng(3)
    entry = {"type": "multiclass", "labels": ["a", "b", 3, "d", "e"]}
    for dtype in (np.float16, np.float32, np.float64, np.int32):
        row = (rng.random(5) * 7).astype(dtype)
        want = np.asarray(row, dtype=np.float64)
        listed = python_floats(row)
        assert listed == want.tolist() and all(type(v) is float for v in listed)
        got = task_kind("multiclass").answerer(entry)(row)
        best = int(want.argmax())
        assert got == {"label": entry["labels"][best], "score": float(want[best]),
                       "scores": {str(k): float(v) for k, v in zip(entry["labels"], want)}}
        assert got == task_kind("multiclass").answer(entry, row)


def test_answer_scores_are_a_read_only_mapping_detached_from_the_outputs():
    """Class answers' scores (multiclass, multilabel, binary) are a label -> score mapping that reads the values
    listed when the answer was made: a runner reusing its output buffer cannot change an answer already given. It
    equals the dict of those scores, is read-only, and json.dumps writes it with default=dict."""
    import json

    entries = {"multiclass": {"type": "multiclass", "labels": ["a", "b", 3]},
               "multilabel": {"type": "multilabel", "labels": ["a", "b", 3], "threshold": 0.5},
               "binary": {"type": "binary", "labels": ["no", "yes"], "threshold": 0.5}}
    for name, entry in entries.items():
        row = np.array([0.3] if name == "binary" else [0.2, 0.7, 0.1], np.float32)
        want = {"no": 1.0 - float(row[0]), "yes": float(row[0])} if name == "binary" else \
            {k: float(v) for k, v in zip(["a", "b", "3"], row)}
        got = task_kind(name).answerer(entry)(row)
        row[:] = 0.0  # the output buffer overwritten by the next call
        scores = got["scores"]
        assert scores == want and dict(scores) == want and list(scores) == list(want) and len(scores) == len(want)
        second = list(want)[1]
        assert scores[second] == want[second]
        with pytest.raises(KeyError):
            scores["missing"]
        with pytest.raises(TypeError):
            scores["a"] = 1.0
        assert json.loads(json.dumps(got, default=dict))["scores"] == pytest.approx(want)
        assert repr(scores) == repr(want)
