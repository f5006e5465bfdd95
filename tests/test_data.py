"""Real-data loading: splits, vocabularies from the training split only, masked missing labels, bad rows."""
import dataclasses
import json
import shutil

import numpy as np
import pytest

from conftest import (
    AV_RECIPE,
    DEMO,
    FASHION_MINI,
    FASHION_RECIPE,
    FASHION_TINY,
    SHARED,
    TINY_AV,
    needs_shared,
    write_recipe,
)
from edgemtl.data.column import CodedColumn
from edgemtl.data.dataset import load_table, prepare
from edgemtl.errors import EdgemtlError
from edgemtl.kinds import MISSING
from edgemtl.kinds.audio import load_audio, read_wav, resample
from edgemtl.kinds.base import BadInput
from edgemtl.kinds.image import load_image
from edgemtl.kinds.text import Tokenizer
from edgemtl.recipe import load_recipe


def test_demo_splits_follow_the_split_column(av_data):
    assert {k: len(v) for k, v in av_data.splits.items()} == {"train": 1320, "val": 120, "test": 300}
    assert set(av_data["train"].rows).isdisjoint(av_data["test"].rows)
    x = av_data["train"].x
    assert x["image"].dtype == np.uint8 and x["image"].shape[1:] == (28, 28, 1)
    assert x["audio"].dtype == np.float32 and x["audio"].shape[1:] == (8000,)
    assert av_data.labels["speaker"]["classes"] == ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


def test_train_on_val_adds_the_validation_rows_to_training():
    from edgemtl.data.dataset import load_table
    from edgemtl.data.manifest import split_rows

    recipe = load_recipe(AV_RECIPE, ["data.split.train_on_val=true"])
    table = load_table(recipe)
    both = split_rows(table, recipe.data.split, recipe.seed)
    plain = split_rows(table, dataclasses.replace(recipe.data.split, train_on_val=False), recipe.seed)
    assert (len(plain["train"]), len(both["train"])) == (1320, 1440)
    assert set(both["train"]) == set(plain["train"]) | set(plain["val"])
    assert list(both["val"]) == list(plain["val"]) and list(both["test"]) == list(plain["test"])


def test_a_manifest_without_the_val_value_holds_out_val_fraction(tmp_path, capsys):
    from edgemtl.cli import configure_logging
    from edgemtl.data.dataset import load_table
    from edgemtl.data.manifest import split_rows

    configure_logging()  # the command's stderr log, as the CLI sets it (alone, the test would see no INFO line)
    (tmp_path / "pairs.csv").write_text((DEMO / "pairs.csv").read_text().replace(",val,", ",train,"))
    recipe = load_recipe(AV_RECIPE, data=tmp_path / "pairs.csv")
    split = split_rows(load_table(recipe), recipe.data.split, recipe.seed)
    assert {k: len(v) for k, v in split.items()} == {"train": 1296, "val": 144, "test": 300}
    assert capsys.readouterr().err == ("pairs.csv: no row has split 'val'; holding out data.split.val_fraction 0.1 "
                                       "of the training rows for validation\n")


def test_training_decodes_with_the_runtime_preprocessing(av_data):
    """One implementation: the arrays training sees equal what the modality kinds' decoders make of the raw file."""
    row = av_data["test"].rows[0]  # 1-based row in pairs.csv
    import csv

    record = list(csv.DictReader(open(DEMO / "pairs.csv")))[row - 1]
    i = 0
    np.testing.assert_array_equal(av_data["test"].x["image"][i],
                                  load_image(DEMO / record["image"], (28, 28), 1))
    np.testing.assert_array_equal(av_data["test"].x["audio"][i],
                                  load_audio(DEMO / record["audio"], 8000, 8000))


def test_bad_row_is_one_message_naming_manifest_row_and_file(tmp_path):
    demo = tmp_path / "demo"
    shutil.copytree(DEMO, demo)
    (demo / "images" / "0001.png").write_bytes(b"not a png")
    (demo / "recordings" / "0_george_2.wav").unlink()
    recipe = load_recipe(AV_RECIPE, data=demo / "pairs.csv")
    with pytest.raises(EdgemtlError) as e:
        prepare(recipe)
    assert e.value.messages == [
        "pairs.csv row 2: image '" + str(demo / "images/0001.png") + "' is not a readable image "
        "(UnidentifiedImageError)",
        "pairs.csv row 3: audio file '" + str(demo / "recordings/0_george_2.wav") + "' not found",
        "2 bad row(s); fix them or set data.on_bad_row: skip",
    ]
    skipping = load_recipe(AV_RECIPE, ["data.on_bad_row=skip"], data=demo / "pairs.csv")
    data = prepare(skipping)
    assert len(data["test"]) == 298 and len(data.skipped) == 2
    assert 2 not in data["test"].rows and 3 not in data["test"].rows


def test_missing_labels_are_masked_not_dropped(tmp_path):
    text = (DEMO / "pairs.csv").read_text().splitlines()
    header, rows = text[0], text[1:]
    cols = header.split(",")
    broken = rows[0].split(",")
    broken[cols.index("speaker")] = ""
    (tmp_path / "pairs.csv").write_text("\n".join([header, ",".join(broken)] + rows[1:]) + "\n")
    for sub in ("images", "recordings"):
        (tmp_path / sub).symlink_to(DEMO / sub)
    data = prepare(load_recipe(AV_RECIPE, data=tmp_path / "pairs.csv"))
    assert len(data["test"]) == 300  # the row is kept
    assert data["test"].y["speaker"][0] == MISSING and data["test"].y["digit"][0] >= 0


def test_a_csv_holds_only_the_recipes_columns_as_codes_that_read_as_its_cells(tmp_path):
    import csv

    with open(FASHION_MINI, newline="") as f:
        rows = list(csv.DictReader(f))
    table = load_table(load_recipe(write_recipe(tmp_path, FASHION_TINY)))
    assert set(table.columns) == {"image", "title", "gender", "masterCategory"}  # id, year, ... never held
    for name, column in table.columns.items():
        assert isinstance(column, CodedColumn) and list(column) == [r[name] for r in rows]
        assert sorted(column.values) == sorted({r[name] for r in rows})  # each distinct cell held once
    part = table.take(np.array([5, 2, 2]))
    assert list(part.columns["title"]) == [rows[i]["title"] for i in (5, 2, 2)]
    assert part.where(0) == "products.csv row 6"
    misspelt = FASHION_TINY.replace("{name: masterCategory, type: multiclass}",
                                    "{name: masterCategory, type: multiclass, column: subCategry}")
    with pytest.raises(EdgemtlError, match=r"tasks\[1\].column: no column 'subCategry' \(did you mean 'subCategory'"):
        load_table(load_recipe(write_recipe(tmp_path, misspelt, "misspelt.yaml")))  # matched against the header


def test_tokenizer_learns_from_the_training_split_only():
    tok = Tokenizer.fit(["Nike Men Black Shoes", "nike women red shoes"], vocab_size=100)
    assert tok.vocab[:3] == ["<pad>", "<unk>", "nike"]
    assert list(tok.encode("Nike Kids Shoes", 5)) == [2, 1, tok.index["shoes"], 0, 0]


@needs_shared
def test_fashion_missing_labels_and_vocab(tmp_path):
    recipe = load_recipe(FASHION_RECIPE)
    data = prepare(recipe, tmp_path)
    total = len(set().union(*(s.rows for s in data.splits.values())))
    assert total == 9583  # no row dropped for its missing labels
    missing_usage = sum(int((s.y["usage"] == MISSING).sum()) for s in data.splits.values())
    assert missing_usage >= 8
    assert (tmp_path / "vocab_title.txt").exists() and (tmp_path / "labels.json").exists()
    train_words = {w for t in data["train"].x["title"] for w in t}
    assert len(data.tokenizers["title"].vocab) <= 8002 and max(train_words) < len(data.tokenizers["title"].vocab)


@needs_shared
def test_missing_image_modality_names_the_row(tmp_path):
    recipe = load_recipe(FASHION_RECIPE, ["data.limit=40"], data=SHARED / "fashion" / "products_all.csv")
    with pytest.raises(EdgemtlError) as e:
        prepare(recipe)
    message = e.value.messages[0]
    assert message.startswith("products_all.csv row ") and "column 'image' is empty (no image file)" in message
    data = prepare(load_recipe(FASHION_RECIPE, ["data.limit=40", "data.on_bad_row=skip"],
                               data=SHARED / "fashion" / "products_all.csv"))
    kept = set().union(*(s.rows for s in data.splits.values()))  # the val rows also train (train_on_val)
    assert len(data.skipped) > 0 and len(kept) == 40 - len(data.skipped)


def test_audio_resampling_and_length():
    wav = sorted((DEMO / "recordings").glob("*.wav"))[0]
    samples, rate = read_wav(wav)
    assert rate == 8000 and samples.dtype == np.float32 and np.abs(samples).max() <= 1.0
    up = load_audio(wav, 16000, 16000)
    assert up.shape == (16000,)
    n = min(len(samples), 4000)
    back = resample(up[:2 * n], 16000, 8000)  # there and back: the speech band survives
    assert np.abs(back[:n] - samples[:n]).max() < 0.03
    with pytest.raises(BadInput, match="needs its sample rate"):
        load_audio(samples, 8000, 8000)


def _spectrum_peak(x: np.ndarray, rate: int, hz: float) -> float:
    """Amplitude of the tone at `hz` (Hann-windowed FFT of the middle second)."""
    window = np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(x * window)) / (window.sum() / 2)
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spectrum[np.abs(freqs - hz) <= 20].max())


def test_a_tone_above_the_target_nyquist_is_removed_not_aliased():
    """6 kHz at 48 kHz -> 8 kHz (Nyquist 4 kHz): linear interpolation folds it to 2 kHz at full amplitude; the
    anti-aliased resampler removes it, and keeps a 1 kHz tone."""
    t = np.arange(3 * 48000) / 48000
    for hz, kept in ((6000, False), (1000, True)):
        tone = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
        out = resample(tone, 48000, 8000)[8000:16000]  # the middle second, away from the edges
        assert out.shape == (8000,)
        folded = _spectrum_peak(out, 8000, 8000 - hz if hz > 4000 else hz)
        if kept:
            assert abs(folded - 0.5) < 0.01
        else:
            naive = np.interp(np.arange(3 * 8000) * 6.0, np.arange(len(tone)), tone)[8000:16000]
            assert _spectrum_peak(naive, 8000, 2000) > 0.4  # what the old resampler made of it
            assert folded < 0.5e-3  # below -60 dB of the tone


def test_48khz_24bit_float_and_flac_recordings_answer_as_the_8khz_original(tiny_run, tmp_path):
    """Phone-style files made from demo recordings: 48 kHz 16-bit, 8 kHz 24-bit, 44.1 kHz float32 and a FLAC give
    the bundle's answer for the 8 kHz original (same digit, probabilities within 0.05)."""
    import soundfile

    from edgemtl.runtime import load

    model = load(tiny_run / "exports" / "teacher-onnx-fp32")
    image = str(DEMO / "images/0000.png")
    for wav in sorted((DEMO / "recordings").glob("*_theo_[0-1].wav"))[:6]:
        samples, rate = read_wav(wav)
        made = {"48k.wav": (resample(samples, rate, 48000), 48000, "PCM_16"),
                "24bit.wav": (samples, rate, "PCM_24"), "44k-float.wav": (resample(samples, rate, 44100), 44100,
                                                                           "FLOAT"),
                "48k.flac": (resample(samples, rate, 48000), 48000, "PCM_16")}
        original = model.predict(audio=str(wav), image=image)
        for name, (data, at, subtype) in made.items():
            path = tmp_path / f"{wav.stem}-{name}"
            soundfile.write(path, data, at, subtype=subtype)
            got = model.predict(audio=str(path), image=image)
            for task in ("digit", "speaker"):
                assert got[task]["label"] == original[task]["label"], (path.name, task)
                diff = max(abs(got[task]["scores"][c] - p) for c, p in original[task]["scores"].items())
                assert diff < 0.05, (path.name, task, diff)


def test_jsonl_manifest_reads_like_csv(tmp_path, av_data):
    import csv
    import json

    rows = list(csv.DictReader(open(DEMO / "pairs.csv")))
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({**r, "digit": int(r["digit"])}) + "\n" for r in rows))
    for sub in ("images", "recordings"):
        (tmp_path / sub).symlink_to(DEMO / sub)
    from conftest import TINY_AV

    data = prepare(load_recipe(AV_RECIPE, TINY_AV, data=tmp_path / "pairs.jsonl"))
    np.testing.assert_array_equal(data["test"].y["digit"], av_data["test"].y["digit"])
    np.testing.assert_array_equal(data["train"].x["image"], av_data["train"].x["image"])


# ---- sensor-style npz: metadata arrays, label names, group split, sequence windows ----------------------------------
SENSOR_RECIPE = AV_RECIPE.parent / "sensor_digits.yaml"
SENSOR_NPZ = AV_RECIPE.parents[1] / "tests" / "data" / "sensor_digits" / "bands.npz"
SENSOR_TINY = ["training.epochs=2", "stages=[train,evaluate,export]", "export.formats=[tflite]",
               "export.precisions=[fp32]", "export.default_tolerance=1.0"]


def _sensor_arrays() -> dict:
    with np.load(SENSOR_NPZ) as z:
        return {k: z[k] for k in z.files}


def test_npz_metadata_arrays_are_listed_once_and_name_the_labels(capsys):
    from edgemtl.cli import main

    assert main(["check", str(SENSOR_RECIPE)]) == 0
    out = capsys.readouterr().out
    assert out.count("metadata arrays") == 1
    listed = out.split("metadata arrays")[1].splitlines()[1:]
    assert [line.split(":")[0].strip() for line in listed] == ["channels", "digit_names", "frame_rate",
                                                               "sample_rate"]
    assert "frame_rate: 50.0 (0-d)" in out and "'zero', 'one'" in out
    data = prepare(load_recipe(SENSOR_RECIPE), rows_per_split=4)
    arrays = _sensor_arrays()
    present = sorted(set(arrays["digit"][np.isin(arrays["speaker"], sorted(_train_speakers(data)))]))
    assert data.labels["digit"]["classes"] == [str(arrays["digit_names"][c]) for c in present]  # names, in order
    assert set(data.metadata) == {"channels", "digit_names", "frame_rate", "sample_rate"}


def _train_speakers(data) -> set:
    speaker = _sensor_arrays()["speaker"]
    return {str(speaker[r - 1]) for r in data["train"].rows}


def test_npz_row_mismatch_names_each_array_and_codes_outside_the_names_name_the_row(tmp_path):
    arrays = _sensor_arrays()
    np.savez(tmp_path / "short.npz", **{**arrays, "digit": arrays["digit"][:-1]})
    with pytest.raises(EdgemtlError) as e:
        prepare(load_recipe(SENSOR_RECIPE, data=tmp_path / "short.npz"))
    assert e.value.messages == ["short.npz: the arrays the recipe reads have different numbers of rows: 'window' 240, "
                                "'digit' 239, 'speaker' 240"]
    np.savez(tmp_path / "flat.npz", **{**arrays, "speaker": np.array("theo")})
    with pytest.raises(EdgemtlError, match=r"array 'speaker' is a single value \(0-d, metadata\)"):
        prepare(load_recipe(SENSOR_RECIPE, data=tmp_path / "flat.npz"))
    five = ["tasks.digit.labels_array=null", "tasks.digit.labels=[zero,one,two,three,four]"]
    first = int(np.flatnonzero(arrays["digit"] >= 5)[0])
    with pytest.raises(EdgemtlError, match=rf"^bands.npz row {first + 1}: tasks\[0\] \(digit\) column 'digit' has "
                                           rf"{arrays['digit'][first]}, not a code 0-4 of the task's 5 label names"):
        prepare(load_recipe(SENSOR_RECIPE, five))
    with pytest.raises(EdgemtlError, match=r"labels_array: no array 'digit_name' \(did you mean 'digit_names'"):
        prepare(load_recipe(SENSOR_RECIPE, ["tasks.digit.labels_array=digit_name"]))


def test_group_split_keeps_each_speaker_in_one_split_and_the_saved_split_is_reused(tmp_path):
    import csv

    arrays = _sensor_arrays()
    recipe = load_recipe(SENSOR_RECIPE)
    data = prepare(recipe, tmp_path / "pre", rows_per_split=1)
    by_split = {name: {str(arrays["speaker"][r - 1]) for r in rows}
                for name, rows in _split_file(tmp_path / "pre" / "split.csv").items()}
    assert [len(by_split[s]) for s in ("train", "val", "test")] == [4, 1, 1]
    assert set.union(*by_split.values()) == set(arrays["speaker"]) and len(set.union(*by_split.values())) == 6
    assert data.row_counts == {s: 40 * len(by_split[s]) for s in by_split}  # 40 windows per speaker
    lines = list(csv.reader(open(tmp_path / "pre" / "split.csv")))
    assert lines[0] == ["row", "split", "speaker"] and len(lines) == 241
    assert all(arrays["speaker"][int(r) - 1] == g for r, _, g in lines[1:])
    # another seed splits other speakers, unless the run's split file is there: then it is reused
    other = load_recipe(SENSOR_RECIPE, ["data.split.seed=3"])
    moved = prepare(other, rows_per_split=1).row_counts
    assert prepare(other, tmp_path / "pre", rows_per_split=1).row_counts == data.row_counts
    fresh = _split_file_of(other, tmp_path / "fresh")
    assert fresh != _split_file(tmp_path / "pre" / "split.csv") and sum(moved.values()) == 240
    # a random row split puts every speaker in train and test: what the group split prevents
    rows = load_recipe(SENSOR_RECIPE, ["data.split.group=null"])
    leaky = _split_file_of(rows, tmp_path / "rows")
    assert {str(arrays["speaker"][r - 1]) for r in leaky["test"]} == set(arrays["speaker"])
    (tmp_path / "pre" / "split.csv").write_text("row,split,speaker\n999,test,theo\n")
    with pytest.raises(EdgemtlError, match=r"split.csv line 2: row 999 is not among the 240 rows of bands.npz"):
        prepare(recipe, tmp_path / "pre", rows_per_split=1)


def _split_file(path) -> dict:
    import csv

    out = {"train": [], "val": [], "test": []}
    for r in csv.DictReader(open(path)):
        out[r["split"]].append(int(r["row"]))
    return out


def _split_file_of(recipe, folder) -> dict:
    prepare(recipe, folder, rows_per_split=1)
    return _split_file(folder / "split.csv")


@pytest.fixture(scope="module")
def sensor_run(tmp_path_factory):
    from conftest import set_args
    from edgemtl.cli import main

    out = tmp_path_factory.mktemp("sensor") / "run"
    assert main(["run", str(SENSOR_RECIPE), "--out", str(out)] + set_args(SENSOR_TINY)) == 0
    return out


def test_sequence_windows_are_standardised_in_the_graph_with_training_statistics(sensor_run):
    from edgemtl.models.build import load_model

    model = load_model(sensor_run / "models" / "teacher" / "model.keras")
    norm = model.get_layer("bands_norm")
    arrays = _sensor_arrays()
    rows = [int(r) - 1 for r in _split_file(sensor_run / "preprocess" / "split.csv")["train"]]
    train = arrays["window"][rows].astype(np.float32).reshape(-1, 16)
    np.testing.assert_allclose(np.asarray(norm.mean).reshape(-1), train.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.sqrt(np.asarray(norm.variance).reshape(-1)), train.std(axis=0), rtol=1e-3)
    assert abs(train.mean()) > 1  # raw log energies: far from standardised without the layer


def test_sensor_bundle_predicts_from_npy_and_csv_windows_single_and_manifest(sensor_run, tmp_path, capsys):
    """The done-when of the sensor recipe: trained on an npz with metadata and a group split, exported, and
    answering from a .npy window file (and a .csv one, and a manifest of them) as from the array."""
    import csv
    import json

    from edgemtl.cli import main
    from edgemtl.runtime import load

    bundle = sensor_run / "exports" / "teacher-tflite-fp32"
    model = load(bundle)
    arrays = _sensor_arrays()
    test_rows = [int(r) - 1 for r in _split_file(sensor_run / "preprocess" / "split.csv")["test"]][:3]
    for i in test_rows:
        window = arrays["window"][i]
        np.save(tmp_path / f"w{i}.npy", window)
        with open(tmp_path / f"w{i}.csv", "w") as f:
            f.write(",".join(arrays["channels"]) + "\n")
            f.write("".join(",".join(repr(float(v)) for v in step) + "\n" for step in window))
    expected = [model.predict(bands=arrays["window"][i].astype(np.float32)) for i in test_rows]
    for i, want in zip(test_rows, expected):
        assert model.predict(bands=str(tmp_path / f"w{i}.npy")) == want == model.predict(bands=tmp_path / f"w{i}.csv")
        assert main(["predict", str(bundle), "--bands", str(tmp_path / f"w{i}.npy"), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == want
    (tmp_path / "rows.csv").write_text("window\n" + "".join(f"w{i}.{ext}\n" for i in test_rows for ext in ("npy",
                                                                                                         "csv")))
    assert main(["predict", str(bundle), "--manifest", str(tmp_path / "rows.csv")]) == 0
    written = list(csv.DictReader(open(tmp_path / "rows.predictions.csv")))
    assert [r["digit"] for r in written] == [w["digit"]["label"] for w in expected for _ in range(2)]
    assert main(["predict", str(bundle), "--bands", str(tmp_path / "missing.npy")]) == 2
    assert "input 'bands': sequence file" in capsys.readouterr().err


def test_evaluate_reads_the_saved_split(sensor_run):
    import csv

    from edgemtl.cli import main

    split = sensor_run / "preprocess" / "split.csv"
    lines = split.read_text().splitlines()
    test_lines = [x for x in lines[1:] if x.split(",")[1] == "test"]
    metrics = json.loads((sensor_run / "models" / "teacher" / "metrics.json").read_text())["splits"]
    assert metrics["test"]["digit"]["n"] == len(test_lines) == 40
    split.write_text("\n".join([lines[0]] + [x for x in lines[1:] if x not in test_lines[:5]]) + "\n")
    try:
        assert main(["evaluate", str(sensor_run)]) == 0
        again = json.loads((sensor_run / "models" / "teacher" / "metrics.json").read_text())["splits"]
        assert again["test"]["digit"]["n"] == 35  # the rows the file lists, not a new split
    finally:
        split.write_text("\n".join(lines) + "\n")
    assert list(csv.reader(open(split)))[0] == ["row", "split", "speaker"]


def test_binary_positive_class_orders_the_labels_and_is_checked():
    """A binary task over two real speakers: the positive class is the one the sigmoid's probability is of."""
    two = ["data.filters=[{column: speaker, in: [george, theo]}]", "tasks[1].type=binary"]
    table_labels = prepare(load_recipe(AV_RECIPE, TINY_AV + two + ["tasks[1].positive=george"]),
                           rows_per_split=2).labels["speaker"]
    assert table_labels == {"type": "binary", "classes": ["theo", "george"], "positive": "george"}
    default = prepare(load_recipe(AV_RECIPE, TINY_AV + two), rows_per_split=2).labels["speaker"]
    assert default["classes"] == ["george", "theo"] and default["positive"] == "theo"
    with pytest.raises(EdgemtlError, match=r"tasks\[1\] \(speaker\)\.positive: 'lucas' is not a class of column "
                                           r"'speaker' in the training split \(classes: george, theo\)"):
        prepare(load_recipe(AV_RECIPE, TINY_AV + two + ["tasks[1].positive=lucas"]), rows_per_split=2)
    with pytest.raises(EdgemtlError, match=r"tasks\[0\]\.positive: is for binary tasks, not multiclass"):
        load_recipe(AV_RECIPE, ["tasks[0].positive=seven"])
