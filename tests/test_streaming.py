"""Streaming (`data.streaming`): media decoded in the tf.data pipeline give the same tensors, in the same order, as
the in-memory decode; the automatic choice; per-worker shards; `train --workers` and its TF_CONFIG."""
import csv
import json

import numpy as np
import pytest
from test_optional import blanked_manifest, optional_recipe

from conftest import AV_RECIPE, TINY_AV

NO_AUGMENT = ["inputs.image.augment.rotation=0", "inputs.image.augment.crop=0"]


def _batches(split, recipe, training, n=-1):
    from edgemtl.data.pipeline import make_dataset

    return list(make_dataset(split, recipe, training, 16).take(n).as_numpy_iterator())


def _assert_same_batches(a, b):
    assert len(a) == len(b) > 0
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.keys() == xb.keys() and ya.keys() == yb.keys()
        for k in xa:
            assert xa[k].dtype == xb[k].dtype and np.array_equal(xa[k], xb[k]), k
        for k in ya:
            np.testing.assert_array_equal(ya[k], yb[k])


@pytest.fixture(scope="module")
def av_streamed():
    from edgemtl.data.dataset import prepare
    from edgemtl.recipe import load_recipe

    recipe = load_recipe(AV_RECIPE, TINY_AV + NO_AUGMENT + ["data.streaming=stream"])
    return recipe, prepare(recipe)


def test_streamed_audio_and_images_equal_the_in_memory_decode(av_data, av_streamed):
    """The demo's real WAV and PNG files: the same tensors and the same shuffled order, training and not."""
    from edgemtl.data.media import MediaColumn

    recipe, streamed = av_streamed
    assert streamed.streaming and not av_data.streaming
    assert all(isinstance(streamed["train"].x[k], MediaColumn) for k in ("audio", "image"))
    for split, training, n in (("train", True, 4), ("test", False, -1)):  # the first shuffled batches, every test row
        _assert_same_batches(_batches(av_data[split], recipe, training, n), _batches(streamed[split], recipe,
                                                                                     training, n))
    test = streamed["test"].x["image"]  # numpy-style access decodes: what calibration and the gate read
    assert np.array_equal(np.asarray(test), av_data["test"].x["image"])
    assert np.array_equal(test[2:4], av_data["test"].x["image"][2:4])


def test_streamed_optional_input_and_bad_rows_match_memory(tmp_path):
    """Real fashion_mini photos, a third blanked (optional: placeholders and presence) and one missing file (skipped
    with the same message both ways)."""
    from edgemtl.data.dataset import prepare
    from edgemtl.recipe import load_recipe

    source, rows = blanked_manifest(tmp_path)
    with open(source, newline="") as f:
        table = list(csv.DictReader(f))
    table[1]["image"] = str(tmp_path / "gone.jpg")
    with open(source, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    path = tmp_path / "r.yaml"
    path.write_text(optional_recipe(source, "").replace("split: {ratios", "on_bad_row: skip, split: {ratios"))
    memory, streamed = (prepare(load_recipe(path, [f"data.streaming={m}"])) for m in ("memory", "stream"))
    assert streamed.streaming and memory.skipped == streamed.skipped and len(memory.skipped) == 1
    for split in ("train", "val", "test"):
        for name, array in memory[split].x.items():
            assert np.array_equal(np.asarray(streamed[split].x[name]), array), (split, name)
        np.testing.assert_array_equal(memory[split].rows, streamed[split].rows)


def test_auto_streams_only_above_the_threshold():
    from edgemtl.data.media import media_bytes, use_streaming
    from edgemtl.recipe import load_recipe

    recipe = load_recipe(AV_RECIPE, TINY_AV)
    per_row = 28 * 28 * 1 + 8000 * 4  # a uint8 28x28 digit and one float32 second at 8 kHz
    assert media_bytes(recipe, 10) == 10 * per_row
    assert not use_streaming(recipe, 1000)  # 31 MB: below the default 1024 MB
    assert use_streaming(recipe, 40_000)  # 1.25 GB
    assert use_streaming(load_recipe(AV_RECIPE, TINY_AV + ["data.stream_above_mb=1"]), 1000)
    assert not use_streaming(load_recipe(AV_RECIPE, TINY_AV + ["data.streaming=memory"]), 10 ** 7)


def test_worker_shards_are_disjoint_and_cover_every_row(av_streamed):
    """Each worker's training rows (shuffled, streamed) by row number: no row twice, none left out."""
    from edgemtl.data.dataset import Split

    recipe = av_streamed[0]
    train = av_streamed[1]["test"]  # the test rows stand in: fewer files to decode
    split = Split({**train.x, "row": train.rows.astype(np.int64)}, train.y, train.rows)
    from edgemtl.data.pipeline import make_dataset

    seen = [np.concatenate([x["row"] for x, _ in make_dataset(split, recipe, True, 8, shard=(3, i))
                            .as_numpy_iterator()]) for i in range(3)]
    assert sum(map(len, seen)) == len(train)
    assert sorted(np.concatenate(seen).tolist()) == sorted(train.rows.tolist())
    assert all(abs(len(s) - len(train) / 3) < 1 for s in seen)


def test_worker_shard_reads_tf_config():
    from edgemtl.errors import EdgemtlError
    from edgemtl.train.cluster import worker_shard

    cluster = {"chief": ["a:1"], "worker": ["b:1", "c:1"], "evaluator": ["d:1"]}
    assert worker_shard(json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}})) == (3, 0)
    assert worker_shard(json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})) == (3, 2)
    assert worker_shard(json.dumps({"cluster": cluster, "task": {"type": "evaluator", "index": 0}})) is None
    assert worker_shard(None) is None
    with pytest.raises(EdgemtlError, match="TF_CONFIG"):
        worker_shard("{not json")


def test_workers_flag_writes_tf_config(monkeypatch):
    from edgemtl.cli import _join_cluster, build_parser
    from edgemtl.train.cluster import worker_shard

    monkeypatch.setenv("TF_CONFIG", "{}")
    args = build_parser().parse_args(["train", "r.yaml", "--workers", "10.0.0.5:2222, host-b:2222",
                                      "--worker-index", "1"])
    _join_cluster(args)
    import os

    config = json.loads(os.environ["TF_CONFIG"])
    assert config == {"cluster": {"worker": ["10.0.0.5:2222", "host-b:2222"]}, "task": {"type": "worker", "index": 1}}
    assert args.set[-1] == "training.distribute=multi_worker"
    assert worker_shard(os.environ["TF_CONFIG"]) == (2, 1)


@pytest.mark.parametrize("flags, words", [
    (["--workers", "a:1,b:2"], "needs --worker-index"),
    (["--worker-index", "0"], "needs --workers"),
    (["--workers", "a:1,b", "--worker-index", "0"], "'b' is not host:port"),
    (["--workers", "a:1,a:1", "--worker-index", "0"], "more than once"),
    (["--workers", "a:1", "--worker-index", "0"], "at least 2"),
    (["--workers", "a:1,b:99999", "--worker-index", "0"], "'b:99999' is not host:port"),
    (["--workers", "a:1,b:2", "--worker-index", "2"], "0 to 1"),
])
def test_bad_workers_flags_give_one_clear_error(flags, words, capsys, monkeypatch):
    from edgemtl.cli import main

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert main(["train", str(AV_RECIPE), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("cache", ["disk", "memory"])
def test_cached_streaming_epochs_hold_every_row_once(av_data, av_streamed, cache, tmp_path):
    """data.cache: two epochs over the cache, each every row once, decoded as in memory; disk writes its files."""
    import dataclasses

    from edgemtl.data.pipeline import make_dataset

    recipe, streamed = av_streamed
    recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, cache=cache))
    ds = make_dataset(streamed["test"], recipe, True, 16, cache_dir=tmp_path / "cache")
    expected = sorted(map(bytes, av_data["test"].x["image"]))
    for _ in range(2):
        images = [bytes(row) for x, _ in ds.as_numpy_iterator() for row in x["image"]]
        assert sorted(images) == expected
    assert (list((tmp_path / "cache").glob("train*")) != []) == (cache == "disk")


def test_a_streamed_file_that_is_not_media_stops_with_its_name(av_streamed, tmp_path):
    """Only existence is checked before training; the decode error names the input and the file."""
    import dataclasses

    from edgemtl.data.dataset import Split
    from edgemtl.data.pipeline import DECODE_ERROR, make_dataset
    from edgemtl.tfk import tf

    recipe, streamed = av_streamed
    test = streamed["test"]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    paths = test.x["image"].paths.copy()
    paths[0] = str(bad)
    split = Split({**test.x, "image": dataclasses.replace(test.x["image"], paths=paths)}, test.y, test.rows)
    with pytest.raises(tf.errors.OpError, match=f"{DECODE_ERROR} input 'image': image '.*broken.png' is not"):
        list(make_dataset(split, recipe, False, 16).take(1).as_numpy_iterator())
