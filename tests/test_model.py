"""Models: every encoder and fusion builds and runs on real data, inputs/outputs are named, the graph is exportable."""
import dataclasses

import numpy as np
import pytest

from conftest import AV_RECIPE, DEMO, REPO, TINY_AV
from edgemtl.data.dataset import prepare
from edgemtl.kinds import task_kind
from edgemtl.kinds.audio import load_audio
from edgemtl.kinds.image import load_image
from edgemtl.models.build import build_model, load_model, numeric_stats
from edgemtl.models.layers import LogMelSpectrogram, mel_matrix
from edgemtl.recipe import load_recipe
from edgemtl.recipe.schema import TaskSpec
from edgemtl.tfk import keras, tf

FASHION_MINI = REPO / "tests" / "data" / "fashion_mini" / "products.csv"


def task_loss(task, label_info):
    """The task kind's training loss."""
    return task_kind(task.type).loss(task, label_info)


def fashion_recipe(tmp_path, text_encoder="conv1d", image_encoder="cnn", fusion="concat", extra_tasks=""):
    path = tmp_path / "f.yaml"
    path.write_text(f"""
name: f
data: {{source: {FASHION_MINI}, split: {{ratios: [0.6, 0.2, 0.2]}}}}
inputs:
  - {{name: image, type: image, column: image, size: [32, 32], encoder: {{type: {image_encoder}, filters: [8, 16]}}}}
  - {{name: title, type: text, column: title, max_length: 12, encoder: {{type: {text_encoder}, embedding_dim: 16}}}}
  - {{name: year_in, type: numeric, columns: [year]}}
fusion: {{type: {fusion}, units: 16}}
trunk: {{units: [16]}}
tasks:
  - {{name: gender, type: multiclass}}
  - {{name: usage, type: multiclass}}
  - {{name: year, type: regression}}
{extra_tasks}""")
    return load_recipe(path)


def build_on(recipe):
    data = prepare(recipe)
    model = build_model(recipe, data.labels, data.tokenizers, numeric_stats(recipe, data["train"].x))
    return model, data


def assert_runs(model, data):
    x = {k: v[:5] for k, v in data["train"].x.items()}
    out = model(x, training=False)
    assert all(np.all(np.isfinite(v.numpy())) for v in out.values())
    return out


@pytest.mark.parametrize("text_encoder", ["conv1d", "lstm", "gru", "transformer"])
def test_text_encoders_on_real_titles(tmp_path, text_encoder):
    model, data = build_on(fashion_recipe(tmp_path, text_encoder=text_encoder))
    out = assert_runs(model, data)
    assert out["gender"].shape == (5, len(data.labels["gender"]["classes"]))
    np.testing.assert_allclose(out["gender"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    if text_encoder in ("lstm", "gru"):
        rnn = next(layer for layer in model.layers if isinstance(layer, keras.layers.RNN))
        assert rnn.unroll  # fused TFLite RNNs break dynamic batch and int8 (wrong LSTM answers, GRU crashes)


@pytest.mark.parametrize("image_encoder", ["cnn", "mobilenet", "resnet"])
def test_image_encoders_on_real_photos(tmp_path, image_encoder):
    model, data = build_on(fashion_recipe(tmp_path, image_encoder=image_encoder))
    assert_runs(model, data)


@pytest.mark.parametrize("fusion", ["concat", "average", "weighted", "gated", "attention"])
def test_fusions_train_one_step(tmp_path, fusion):
    from edgemtl.train.trainer import MultitaskTrainer
    from edgemtl.train.weighting import WeightedSum

    recipe = fashion_recipe(tmp_path, fusion=fusion)
    model, data = build_on(recipe)
    trainer = MultitaskTrainer(model, recipe.tasks, data.labels, WeightedSum(recipe.tasks))
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = [w.numpy().copy() for w in model.trainable_weights]
    logs = trainer.train_on_batch({k: v[:16] for k, v in data["train"].x.items()},
                                  {k: v[:16] for k, v in data["train"].y.items()}, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, model.trainable_weights))


def test_cnn_stem_stride_halves_every_block_and_keeps_the_weights(tmp_path):
    recipe = fashion_recipe(tmp_path)
    full, data = build_on(recipe)
    image = recipe.inputs[0]
    recipe = dataclasses.replace(recipe, inputs=(dataclasses.replace(
        image, encoder=dataclasses.replace(image.encoder, stem_stride=2)), *recipe.inputs[1:]))
    strided = build_model(recipe, data.labels, data.tokenizers, numeric_stats(recipe, data["train"].x))
    for block in ("image_block0_conv", "image_block1_conv"):
        side = full.get_layer(block).output_shape[1]
        assert strided.get_layer(block).output_shape[1:3] == (side // 2, side // 2)
    strided.set_weights(full.get_weights())  # same shapes: a stride-2 student takes a stride-1 teacher's weights
    assert_runs(strided, data)


def test_modality_dropout_drops_whole_modalities_to_the_absent_vector_in_training_only(tmp_path):
    recipe = fashion_recipe(tmp_path)
    recipe = dataclasses.replace(recipe, fusion=dataclasses.replace(recipe.fusion, modality_dropout=0.5))
    model, data = build_on(recipe)
    layers = [model.get_layer(f"{i.name}_absent") for i in recipe.inputs]
    probe = keras.Model(model.inputs, [layer.input for layer in layers])
    vectors = probe({k: v[:32] for k, v in data["train"].x.items()})
    for layer, before in zip(layers, vectors):
        layer.absent.assign(np.full(layer.absent.shape, 7.0, np.float32))  # a learned absent vector, not zeros
        np.testing.assert_array_equal(layer(before, training=False), before)
        after, before = layer(before, training=True).numpy(), before.numpy()
        dropped = np.all(after == 7.0, axis=1)
        assert 0 < dropped.sum() < len(dropped)  # some rows lose this modality, not all
        np.testing.assert_array_equal(after[~dropped], before[~dropped])  # the rest is unchanged (no rescaling)


def test_inputs_and_outputs_are_named_and_typed_as_on_a_device(tmp_path):
    model, data = build_on(fashion_recipe(tmp_path))
    assert {i.name: i.dtype.name for i in model.inputs} == {"image": "uint8", "title": "int32", "year_in": "float32"}
    assert sorted(model.output_names) == ["gender", "usage", "year"]
    out = assert_runs(model, data)
    # Regression heads answer in label units (years), not standardised ones.
    assert abs(float(np.mean(out["year"])) - data.labels["year"]["mean"]) < 10 * data.labels["year"]["std"]


def test_label_name_match_scores_the_class_names_a_real_title_spells(tmp_path):
    recipe = fashion_recipe(tmp_path, extra_tasks="  - {name: baseColour, type: multiclass, match_labels: title}\n"
                                                  "  - {name: articleType, type: multiclass, match_labels: title}")
    model, data = build_on(recipe)
    classes = data.labels["baseColour"]["classes"]
    assert {"Blue", "Navy Blue", "Grey"} <= set(classes)
    titles = ["Genesis Men Stripes Navy Blue Shirts", "Crusoe Men Square Neck Tee Grey Melange Innerwear Vest",
              "Highlander Men Solid Blue Trouser"]
    tokens = np.stack([data.tokenizers["title"].encode(t, 12) for t in titles])
    match = keras.Model(model.get_layer("title").input, model.get_layer("baseColour_label_match").output)
    logits = dict(zip(classes, match(tokens).numpy().T))
    # at its starting weights a whole name counts 3 per word; a partly spelled name (Navy Blue in row 3) nothing
    np.testing.assert_allclose(logits["Navy Blue"], [6, 0, 0])
    np.testing.assert_allclose(logits["Blue"], [3, 0, 3])
    np.testing.assert_allclose(logits["Grey"], [0, 3, 0])
    np.testing.assert_allclose(logits["Black"], [0, 0, 0])
    # plural class names meet singular title words: 'Shirts' in row 1, 'Trousers' from 'Trouser' in row 3
    article = dict(zip(data.labels["articleType"]["classes"], keras.Model(
        model.get_layer("title").input, model.get_layer("articleType_label_match").output)(tokens).numpy().T))
    np.testing.assert_allclose(article["Shirts"], [3, 0, 0])
    np.testing.assert_allclose(article["Trousers"], [0, 0, 3])
    assert np.all(np.isfinite(assert_runs(model, data)["baseColour"]))
    # one token comparison for both heads; a head saved before (comparing the tokens itself) answers the same
    from edgemtl.models.layers import LabelNameMatch, TokenPresence

    assert [x.name for x in model.layers if isinstance(x, TokenPresence)] == ["title_token_presence"]
    shared = model.get_layer("baseColour_label_match")
    own = LabelNameMatch(shared.words, shared.classes)
    own.build(None)
    own.set_weights(shared.get_weights())
    np.testing.assert_allclose(own(tokens).numpy(), match(tokens).numpy())
    assert "ids" not in own.get_config() and shared.get_config()["ids"][-1] == -1


def test_label_name_match_with_one_word_names_and_one_form_words():
    """One-column lookup tables (every name one word; every word one form) take the gather-only path."""
    from edgemtl.models.layers import LabelNameMatch, TokenPresence, presence_ids

    tokens = np.array([[5, 0, 0], [8, 5, 0], [0, 0, 9]], np.int32)
    for words in ([[5], [8]], [[5], [7, 8]]):  # one-form words; a two-form word (7 or 8) beside a one-form one
        classes = [[0], [1], [-1]]  # the last class's word is outside the vocabulary: never matched
        ids = presence_ids(words)
        presence = TokenPresence(ids)(tokens)
        np.testing.assert_array_equal(presence.numpy()[:, ids.index(5)], [1, 1, 0])
        layer = LabelNameMatch(words, classes, ids=ids)
        np.testing.assert_allclose(layer(presence).numpy(), [[3, 0, 0], [3, 3, 0], [0, 0, 0]])
        layer.set_weights([np.float32(1.0), np.float32(3.0)])  # fraction of the name present now counts 1
        np.testing.assert_allclose(layer(presence).numpy(), [[4, 0, 0], [4, 4, 0], [0, 0, 0]])


MATCHING_HEADS = ("  - {name: baseColour, type: multiclass, match_labels: title}\n"
                  "  - {name: articleType, type: multiclass, match_labels: title}\n"
                  "  - {name: season, type: multiclass, match_labels: title}")


def distinct_match_weights(model) -> list:
    """Each head's LabelNameMatch given weights of its own (they all start at the same two); their names, in the
    model's layer order (the fused layer's output order)."""
    from edgemtl.models.layers import LabelNameMatch

    heads = [x for x in model.layers if isinstance(x, LabelNameMatch)]
    for k, layer in enumerate(heads):
        layer.set_weights([np.float32(0.7 + k), np.float32(2.5 - 0.6 * k)])
    return [x.name for x in heads]


def tflite_ops(model) -> list:
    from ai_edge_litert.interpreter import Interpreter

    from edgemtl.export.tflite import convert

    return [op["op_name"] for op in Interpreter(model_content=convert(model, "fp32"))._get_ops_details()]


def test_export_merges_the_heads_label_matches_into_one_set_of_ops_with_the_same_answers(tmp_path):
    from edgemtl.export.signature import exported_model
    from edgemtl.models.layers import LabelNameMatch, LabelNameMatches

    recipe = fashion_recipe(tmp_path, extra_tasks=MATCHING_HEADS)
    model, data = build_on(recipe)
    heads = distinct_match_weights(model)
    assert sorted(heads) == ["articleType_label_match", "baseColour_label_match", "season_label_match"]
    fused = exported_model(model, recipe)
    assert not any(isinstance(x, LabelNameMatch) for x in fused.layers)
    assert [x.name for x in fused.layers if isinstance(x, LabelNameMatches)] == ["title_label_matches"]
    x = data["train"].x
    per_head = keras.Model(model.inputs, [model.get_layer(h).output for h in heads])(x)
    merged = keras.Model(fused.inputs, fused.get_layer("title_label_matches").output)(x)
    assert sum(np.count_nonzero(want.numpy()) > 0 for want in per_head) >= 2  # real titles spell colours, types
    for want, got in zip(per_head, merged):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    want, got = model(x), fused(x)
    assert sorted(got) == sorted(want)
    for name in got:  # the same ops on the same numbers: bit-identical answers
        np.testing.assert_array_equal(got[name].numpy(), want[name].numpy())
    # the converted graph: one word lookup and one class lookup for the three heads (plus the title embedding's)
    before, after = tflite_ops(keras.Model(model.inputs, model.outputs)), tflite_ops(fused)
    assert after.count("GATHER") == 3 and after.count("SPLIT_V") == 1
    assert before.count("GATHER") > after.count("GATHER") and len(after) < len(before)


def test_models_saved_with_per_head_matches_load_and_export_fused(tmp_path):
    """A model saved before: heads comparing the tokens themselves (no shared TokenPresence). It loads as it was
    saved, and its exported graph merges the heads (over the tokens) with the same answers; the merged model saves
    and loads in safe mode too."""
    from edgemtl.models.fused_match import fuse_label_matches
    from edgemtl.models.layers import LabelNameMatch, LabelNameMatches

    recipe = fashion_recipe(tmp_path, extra_tasks=MATCHING_HEADS)
    model, data = build_on(recipe)
    tokens = keras.Input(shape=(12,), dtype="int32", name="title")
    outputs = {}
    for k, name in enumerate(["baseColour", "articleType", "season"]):
        shared = model.get_layer(f"{name}_label_match")
        own = LabelNameMatch(shared.words, shared.classes, name=f"{name}_label_match")
        logits = own(tokens)
        own.set_weights([np.float32(0.4 + k), np.float32(3.0 - k)])
        outputs[name] = keras.layers.Activation("softmax", name=name)(logits)
    keras.Model(tokens, outputs).save(tmp_path / "old.keras")
    old = load_model(tmp_path / "old.keras")
    assert "ids" not in old.get_layer("season_label_match").get_config()
    fused = fuse_label_matches(old)
    assert [type(x).__name__ for x in fused.layers if "match" in x.name] == [LabelNameMatches.__name__]
    x = data["train"].x["title"]
    want = old(x)
    for name, got in fused(x).items():
        np.testing.assert_array_equal(got.numpy(), want[name].numpy())
    fused.save(tmp_path / "fused.keras")
    again = load_model(tmp_path / "fused.keras")
    for name, got in again(x).items():
        np.testing.assert_array_equal(got.numpy(), want[name].numpy())
    assert fuse_label_matches(again) is again  # nothing left to merge


def test_unmatched_weight_also_trains_the_head_without_the_match(tmp_path):
    """unmatched_weight w: the task's training loss is loss(matched answer) + w * loss(the head's own logits alone);
    the saved net keeps one output per task."""
    from edgemtl.train.trainer import MultitaskTrainer
    from edgemtl.train.weighting import make_combination

    recipe = fashion_recipe(tmp_path, extra_tasks="  - {name: baseColour, type: multiclass, match_labels: title, "
                                                  "unmatched_weight: 0.5}")
    model, data = build_on(recipe)
    x = {k: v[:32] for k, v in data["train"].x.items()}
    y = {k: v[:32] for k, v in data["train"].y.items()}
    task = recipe.tasks[3]
    combination = make_combination(recipe.training.loss_combination, recipe.tasks)
    trainer = MultitaskTrainer(model, recipe.tasks, data.labels, combination, unmatched=True)
    _, losses = trainer._forward(x, y, training=False)
    loss = task_loss(task, data.labels["baseColour"])
    own = keras.Model(model.inputs, model.get_layer("baseColour_logits").output)(x)
    matched, alone = loss(y["baseColour"], model(x)["baseColour"]), loss(y["baseColour"], tf.nn.softmax(own))
    assert abs(float(alone) - float(matched)) > 0.1  # the match moves the answer, so the two terms differ
    np.testing.assert_allclose(float(losses["baseColour"]), float(matched) + 0.5 * float(alone), rtol=1e-5)
    _, plain = MultitaskTrainer(model, recipe.tasks, data.labels, combination)._forward(x, y, training=False)
    np.testing.assert_allclose(float(plain["baseColour"]), float(matched), rtol=1e-5)
    assert sorted(model.output) == ["baseColour", "gender", "usage", "year"]


def test_label_match_on_class_names_no_title_spells_warns_and_matches_nothing(tmp_path, caplog):
    from edgemtl.train.trainer import MultitaskTrainer
    from edgemtl.train.weighting import make_combination

    recipe = fashion_recipe(tmp_path, extra_tasks="  - {name: release, type: multiclass, column: year, "
                                                  "match_labels: title, unmatched_weight: 1.0}")
    with caplog.at_level("WARNING", logger="edgemtl"):
        model, data = build_on(recipe)
    warnings = [r.getMessage() for r in caplog.records if "match_labels" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith("tasks[3].match_labels: no word of the class names (e.g. '2008') is among the ")
    assert warnings[0].endswith(" words learned from the training rows; this head matches nothing and is built "
                                "without the match")
    # no match layer: its constant-zero logits would collapse the int8 range of the head's ADD (LiteRT aborts)
    names = {x.name for x in model.layers}
    assert "release_label_match" not in names and "release_logits_matched" not in names
    assert isinstance(model.get_layer("release"), keras.layers.Dense)
    combination = make_combination(recipe.training.loss_combination, recipe.tasks)
    assert MultitaskTrainer(model, recipe.tasks, data.labels, combination, unmatched=True).unmatched == {}
    assert_runs(model, data)


@pytest.mark.parametrize("step", [128, 64, 100])  # framing by reshapes (step divides 256) or by a gather
def test_log_mel_front_end_matches_numpy_reference(step):
    wav = DEMO / "recordings" / "3_theo_10.wav"
    samples = load_audio(wav, 8000, 8000)
    layer = LogMelSpectrogram(8000, 256, step, 40)
    got = layer(samples[None])[0, ..., 0].numpy()
    frames = np.stack([samples[i:i + 256] for i in range(0, 8000 - 256 + 1, step)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(256) / 256)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    expected = np.log(power @ mel_matrix(40, 256, 8000) + 1e-6)
    assert got.shape == expected.shape == ((8000 - 256) // step + 1, 40)
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_missing_labels_are_masked_in_the_loss():
    fn = task_loss(TaskSpec(name="t", type="multiclass", label_smoothing=0.0), {"classes": ["a", "b", "c"]})
    probs = tf.constant([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    with_missing = fn(tf.constant([0, -1, 2]), probs)
    only_labelled = fn(tf.constant([0, 2]), tf.gather(probs, [0, 2]))
    np.testing.assert_allclose(with_missing.numpy(), only_labelled.numpy(), rtol=1e-6)
    assert float(fn(tf.constant([-1, -1, -1]), probs)) == 0.0
    reg = task_loss(TaskSpec(name="t", type="regression", loss="mae"), {"std": 2.0})
    assert float(reg(tf.constant([1.0, np.nan]), tf.constant([[3.0], [100.0]]))) == pytest.approx(1.0)


def test_saved_model_roundtrip_and_transfer_learning(tmp_path):
    recipe = load_recipe(AV_RECIPE, TINY_AV)
    data = prepare(recipe)
    model = build_model(recipe, data.labels, data.tokenizers, {})
    model.save(tmp_path / "m.keras")
    reloaded = load_model(tmp_path / "m.keras")
    x = {k: v[:3] for k, v in data["test"].x.items()}
    np.testing.assert_allclose(model(x)["digit"].numpy(), reloaded(x)["digit"].numpy(), atol=1e-6)
    frozen = load_recipe(AV_RECIPE, TINY_AV + [f"inputs.audio.encoder.weights={tmp_path / 'm.keras'}",
                                               "inputs.audio.encoder.trainable=false"])
    student = build_model(frozen, data.labels, data.tokenizers, {})
    conv = student.get_layer("audio_block0_conv")
    np.testing.assert_array_equal(conv.get_weights()[0], model.get_layer("audio_block0_conv").get_weights()[0])
    assert not conv.trainable and student.get_layer("image_block0_conv").trainable


@pytest.mark.parametrize("encoder", ["conv1d", "gru"])
def test_sequence_input_from_npz_of_real_signals(tmp_path, encoder):
    """Row-sequential handwritten digits: each image is a 28-step window of 28 channels (a real signal)."""
    import csv

    rows = list(csv.DictReader(open(DEMO / "pairs.csv")))[::14][:120]  # spread over every digit
    windows = np.stack([load_image(DEMO / r["image"], (28, 28), 1)[..., 0] / 255.0 for r in rows])
    np.savez(tmp_path / "rows.npz", window=windows.astype(np.float32),
             digit=np.array([int(r["digit"]) for r in rows]))
    path = tmp_path / "seq.yaml"
    path.write_text(f"""
name: seq
data: {{source: {tmp_path / 'rows.npz'}, split: {{ratios: [0.7, 0.15, 0.15]}}}}
inputs:
  - {{name: window, type: sequence, column: window, length: 28, channels: 28, encoder: {{type: {encoder}}}}}
tasks:
  - {{name: digit, type: multiclass}}
""")
    recipe = load_recipe(path)
    model, data = build_on(recipe)
    assert model.inputs[0].shape.as_list() == [None, 28, 28] and len(data["train"]) == 84
    assert_runs(model, data)
