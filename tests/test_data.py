"""Real-data loading: splits, vocabularies from the training split only, masked missing labels, bad rows."""
import dataclasses
import shutil

import numpy as np
import pytest

from conftest import AV_RECIPE, DEMO, FASHION_RECIPE, SHARED, needs_shared
from edgemtl.data.dataset import prepare
from edgemtl.errors import EdgemtlError
from edgemtl.kinds import MISSING
from edgemtl.kinds.audio import load_audio, read_wav
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
    from edgemtl.data.dataset import load_table
    from edgemtl.data.manifest import split_rows

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
    np.testing.assert_allclose(up[:2 * n:2][:n - 1], samples[:n - 1], atol=1e-6)
    with pytest.raises(BadInput, match="needs its sample rate"):
        load_audio(samples, 8000, 8000)


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
