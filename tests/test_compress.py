"""edgemtl compress: distillation, pruning, quantization-aware training, and their bad inputs."""
import dataclasses
import json
import shutil

import numpy as np
import pytest

from conftest import set_args

# A few epochs each: these tests check behaviour, the README's table measures accuracy.
# hint 1.0: hint distillation through pruning and QAT (it once failed there with "Graph disconnected")
TINY_COMPRESS = ["compress.training.epochs=2", "compress.prune.epochs=2", "compress.qat.epochs=1",
                 "compress.distill.hint=1.0"]


@pytest.fixture(scope="session")
def compressed(tiny_run, tmp_path_factory):
    from edgemtl.cli import main

    run = tmp_path_factory.mktemp("compressed") / "av"
    shutil.copytree(tiny_run, run)
    assert main(["compress", str(run)] + set_args(TINY_COMPRESS)) == 0
    return run


def _weights(model) -> list:
    return [w.numpy().copy() for w in model.weights]


def test_distillation_never_changes_the_teacher(tiny_run, av_data):
    from edgemtl.compress.distill import DistillTrainer
    from edgemtl.compress.student import student_recipe
    from edgemtl.models.build import build_model, load_model
    from edgemtl.recipe import load_recipe
    from edgemtl.tfk import keras
    from edgemtl.train.weighting import make_combination

    recipe = load_recipe(tiny_run / "recipe.yaml", ["compress.distill.hint=0.5", "compress.distill.mixup=1.0"])
    student = student_recipe(recipe)
    teacher = load_model(tiny_run / "models" / "teacher" / "model.keras")
    net = build_model(student, av_data.labels, av_data.tokenizers, {}, student.tasks, "student")
    trainer = DistillTrainer(net, student.tasks, av_data.labels, make_combination(
        student.training.loss_combination, student.tasks), teacher, recipe.compress.distill,
        {i.name: i.type for i in student.inputs})
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    before_teacher, before_student = _weights(teacher), _weights(net)
    train = av_data["train"]
    trainer.fit({k: v[:64] for k, v in train.x.items()}, {k: v[:64] for k, v in train.y.items()}, batch_size=16,
                epochs=1, verbose=0)
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(before_teacher, teacher.weights))  # BN stats too
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before_student, net.weights))


def test_cached_teacher_outputs_give_the_losses_of_its_forward_pass(tiny_run, av_data):
    from edgemtl.compress.distill import HINT_KEY, DistillTrainer, mixup_epoch, teacher_key, teacher_targets
    from edgemtl.compress.student import student_recipe
    from edgemtl.data.pipeline import make_dataset
    from edgemtl.models.build import build_model, load_model
    from edgemtl.recipe import load_recipe
    from edgemtl.train.weighting import make_combination

    recipe = load_recipe(tiny_run / "recipe.yaml", ["compress.distill.hint=0.5"])
    student = student_recipe(recipe)
    teacher = load_model(tiny_run / "models" / "teacher" / "model.keras")
    net = build_model(student, av_data.labels, av_data.tokenizers, {}, student.tasks, "student")
    trainer = DistillTrainer(net, student.tasks, av_data.labels, make_combination(
        student.training.loss_combination, student.tasks), teacher, recipe.compress.distill)
    val = av_data["val"]
    part = dataclasses.replace(val, x={k: v[:40] for k, v in val.x.items()}, y={k: v[:40] for k, v in val.y.items()},
                               rows=val.rows[:40])
    cached = teacher_targets(teacher, make_dataset(part, student, False, 16), student.tasks, hint=True)
    assert cached[teacher_key("digit")].shape == (40, 10) and len(cached[HINT_KEY]) == 40
    plain, _ = trainer._forward(part.x, part.y, training=False)
    with_cache, _ = trainer._forward(part.x, {**part.y, **cached}, training=False)
    assert abs(float(plain) - float(with_cache)) < 1e-5 * max(1.0, abs(float(plain)))
    # a fraction of the epochs runs the mixup pass, spread evenly
    assert [bool(mixup_epoch(e, 0.5)) for e in range(6)] == [False, True] * 3
    assert all(bool(mixup_epoch(e, 1.0)) for e in range(4)) and not any(bool(mixup_epoch(e, 0.0)) for e in range(4))
    assert sum(bool(mixup_epoch(e, 0.25)) for e in range(8)) == 2


def test_mixup_epochs_add_the_mixup_loss_only_on_their_epochs(tiny_run, av_data):
    from edgemtl.compress.distill import DistillTrainer
    from edgemtl.compress.student import student_recipe
    from edgemtl.models.build import build_model, load_model
    from edgemtl.recipe import load_recipe
    from edgemtl.tfk import keras
    from edgemtl.train.weighting import make_combination

    recipe = load_recipe(tiny_run / "recipe.yaml", ["compress.distill.mixup=1.0", "compress.distill.mixup_epochs=0.5"])
    student = student_recipe(recipe)
    teacher = load_model(tiny_run / "models" / "teacher" / "model.keras")
    net = build_model(student, av_data.labels, av_data.tokenizers, {}, student.tasks, "student")
    steps = 3  # per epoch

    def trainer(distill):
        t = DistillTrainer(net, student.tasks, av_data.labels, make_combination(
            student.training.loss_combination, student.tasks), teacher, distill,
            {i.name: i.type for i in student.inputs}, steps)
        t.compile(optimizer=keras.optimizers.Adam(1e-3))
        return t

    with_mixup, without = trainer(recipe.compress.distill), trainer(dataclasses.replace(recipe.compress.distill,
                                                                                          mixup=0.0))
    train = av_data["train"]
    x, y = {k: v[:16] for k, v in train.x.items()}, {k: v[:16] for k, v in train.y.items()}

    def loss(t, epoch):
        t.optimizer.iterations.assign(epoch * steps + 1)
        keras.utils.set_random_seed(0)  # the same dropout on the clean rows in both trainers
        return float(t._forward(x, y, training=True)[0])

    # mixup_epochs 0.5: the second epoch of every two runs the pass (a positive soft loss on the mixed rows)
    for epoch, on in ((0, False), (1, True), (2, False), (3, True)):
        plain = loss(without, epoch)
        mixed = loss(with_mixup, epoch)
        assert (mixed > plain + 1e-4) if on else mixed == pytest.approx(plain, rel=1e-5), (epoch, mixed, plain)


def test_mixed_inputs_blend_each_row_with_one_other_row(av_data):
    from edgemtl.kinds import mix_batch
    from edgemtl.tfk import tf

    # rows of distinct recordings (each demo recording has two rows), so the audio names a row's partner
    rows = np.sort(np.unique(av_data["train"].x["audio"][:64], axis=0, return_index=True)[1])[:16]
    x = {"audio": av_data["train"].x["audio"][rows], "image": av_data["train"].x["image"][rows],
         "title": np.arange(64, dtype=np.int32).reshape(16, 4)}  # token ids that name their row
    tf.random.set_seed(0)
    out = {k: v.numpy() for k, v in mix_batch({k: tf.constant(v) for k, v in x.items()},
                                                     {"audio": "audio", "image": "image", "title": "text"}).items()}
    assert {k: (v.dtype, v.shape) for k, v in out.items()} == {k: (v.dtype, v.shape) for k, v in x.items()}
    blends = 0
    for i in range(16):
        # the partner row and weight that explain the mixed audio: a = lam * a_i + (1 - lam) * a_j
        fits = []
        for j in range(16):
            d = x["audio"][i] - x["audio"][j]
            lam = 1.0 if not d.any() else float(np.dot(out["audio"][i] - x["audio"][j], d) / np.dot(d, d))
            fits.append((np.abs(lam * d + x["audio"][j] - out["audio"][i]).max(), j, lam))
        err, j, lam = min(fits)
        assert err < 1e-5 and -1e-6 <= lam <= 1 + 1e-6
        pixels = lam * x["image"][i].astype(np.float32) + (1 - lam) * x["image"][j]
        assert np.abs(out["image"][i] - pixels).max() <= 0.5 + 1e-3  # rounded back to uint8
        assert np.array_equal(out["title"][i], x["title"][i if lam >= 0.5 else j])  # tokens of the larger share
        blends += 0.01 < lam < 0.99 and j != i
    assert blends >= 8


def test_rows_without_labels_still_learn_from_the_teacher():
    from edgemtl.kinds import task_kind
    from edgemtl.recipe.schema import TaskSpec
    from edgemtl.tfk import tf

    task = TaskSpec(name="digit", type="multiclass", label_smoothing=0.0, loss="auto")
    spec = {"classes": ["0", "1", "2"]}
    teacher = tf.constant([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    logits = tf.Variable(tf.zeros([2, 3]))
    with tf.GradientTape() as tape:
        student = tf.nn.softmax(logits)
        hard = task_kind("multiclass").loss(task, spec)(tf.constant([-1, -1]), student)  # both labels missing
        soft = task_kind("multiclass").soft_loss(task, spec, 4.0)(teacher, student)
    assert float(hard) == 0.0 and float(soft) > 0.0
    assert float(tf.reduce_sum(tf.abs(tape.gradient(soft, logits)))) > 0.0
    assert float(task_kind("multiclass").soft_loss(task, spec, 4.0)(teacher, teacher)) == pytest.approx(0.0, abs=1e-6)


def test_compress_writes_every_model_and_the_table(compressed):
    models = {p.name for p in (compressed / "models").iterdir()}
    assert {"teacher", "student-scratch", "student", "student-pruned", "student-qat"} <= models
    table = (compressed / "compress.md").read_text()
    for name in ("student-scratch", "student-pruned", "post-training int8", "quantization-aware int8"):
        assert name in table
    rows = json.loads((compressed / "compress.json").read_text())
    teacher, student = rows["models"][0], rows["models"][2]
    assert student["params"] < teacher["params"]


def test_compress_hands_on_the_better_deployable_int8(compressed):
    from edgemtl.compress.run import deployed_models
    from edgemtl.reports.compress_report import int8_verdict
    from edgemtl.rundir import RunDir

    rows = json.loads((compressed / "compress.json").read_text())
    handed, table = rows["deployed_int8"], (compressed / "compress.md").read_text()
    assert handed["model"] == int8_verdict(rows["int8"])["model"]
    ptq, qat = rows["int8"]
    if handed["model"] == ptq["model"]:
        assert handed["instead_of"] == "student-qat" and "**Hand-over:**" in table
        assert deployed_models(RunDir(compressed), ["teacher", "student-qat"]) == ["teacher", ptq["model"]]
    else:
        assert qat["deployable"] and f"The deployed int8 student is {qat['model']}" in table
    assert "sparsity" in table.split("Quantization-aware training")[-1]  # kept or lost, the table says which


def test_pruning_starts_from_the_student_with_the_better_validation_score(compressed):
    from edgemtl.compress.run import best_validation
    from edgemtl.stages import open_run

    run, _ = open_run(compressed)
    scores = {n: best_validation(run, n, "val_mean_score") for n in ("student", "student-scratch")}
    start = json.loads((compressed / "compress.json").read_text())["start"]
    assert start["model"] == ("student-scratch" if scores["student-scratch"] > scores["student"] else "student")
    assert f"student {scores['student']:.4f}, student-scratch {scores['student-scratch']:.4f}" in start["why"]
    assert f"start from {start['model']}" in (compressed / "compress.md").read_text()


def test_achieved_sparsity_equals_the_target(compressed):
    from edgemtl.models.build import load_model

    metrics = json.loads((compressed / "models" / "student-pruned" / "metrics.json").read_text())
    assert abs(metrics["sparsity"]["overall"] - 0.5) <= 0.01
    model = load_model(compressed / "models" / "student-pruned" / "model.keras")
    pruned = [n for n in metrics["sparsity"] if n != "overall"]
    kernels = [w.numpy() for n in pruned for w in model.get_layer(n).trainable_weights if len(w.shape) >= 2]
    zeros = sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)
    assert abs(zeros - 0.5) <= 0.01
    assert all(not n.startswith(("digit", "speaker")) for n in pruned)  # heads are skipped by default


def test_qat_model_converts_to_int8_tflite(compressed):
    from ai_edge_litert.interpreter import Interpreter

    from edgemtl.cli import main

    assert main(["export", str(compressed), "--model", "student-qat", "--format", "tflite",
                 "--precision", "int8"]) == 0
    bundle = compressed / "exports" / "student-qat-tflite-int8"
    interpreter = Interpreter(model_path=str(bundle / "model.tflite"))
    dtypes = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.int8 in dtypes
    assert {o["task"] for o in json.loads((bundle / "manifest.json").read_text())["outputs"]} == {"digit", "speaker"}


def test_int8_conversions_are_shared_between_compress_and_export(compressed, av_data):
    from edgemtl.artifacts import ArtifactId
    from edgemtl.export.run import ModelExport
    from edgemtl.stages import open_run

    run, recipe = open_run(compressed)
    with ModelExport(run, recipe, av_data, "student-qat", recipe.export.calibration_samples) as session:
        converter = session.converter
        cached = converter.cache_path("int8", ("audio_logmel",))
        assert cached.exists()  # written by the PTQ-vs-QAT table of compress
        converted = converter.convert(ArtifactId("student-qat", "tflite", "int8"), ("audio_logmel",))
        assert converted.read_bytes() == cached.read_bytes()
        assert converter.cache_path("int8io", ("audio_logmel",)) != cached
        from edgemtl.export import convert

        with pytest.MonkeyPatch.context() as mp:  # other converter code, same version number: not this file
            mp.setattr(convert, "converter_code", lambda: "changed")
            assert converter.cache_path("int8", ("audio_logmel",)) != cached


def _compress_error(run, sets, capsys) -> str:
    from edgemtl.cli import main

    assert main(["compress", str(run), "-q"] + set_args(sets)) == 2  # -q: no progress lines among the errors
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(line.startswith("error: ") for line in err)
    return "\n".join(err)


def test_student_larger_than_the_teacher(tiny_run, capsys):
    before = (tiny_run / "recipe.yaml").read_text()
    err = _compress_error(tiny_run, ["compress.student.preset=none", "compress.student.trunk.units=[512]"], capsys)
    assert "compress.student" in err and "not fewer than the teacher's" in err
    assert (tiny_run / "recipe.yaml").read_text() == before  # a failed compress records nothing


def test_compress_overrides_are_recorded_in_the_run_recipe(compressed, tiny_run):
    """What made the compressed models is what RUN/recipe.yaml says, so export, bench and --resume agree with it."""
    import yaml

    from edgemtl.recipe import recipe_hash

    text = (compressed / "recipe.yaml").read_text()
    recipe, teacher_recipe = yaml.safe_load(text), yaml.safe_load((tiny_run / "recipe.yaml").read_text())
    assert recipe["compress"]["training"]["epochs"] == 2 and recipe["compress"]["qat"]["epochs"] == 1
    assert text.startswith(f"# recipe_hash: {recipe_hash(recipe)}\n")
    assert {k: v for k, v in recipe.items() if k != "compress"} == \
        {k: v for k, v in teacher_recipe.items() if k != "compress"}


def test_sparsity_outside_0_1(tiny_run, capsys):
    err = _compress_error(tiny_run, ["compress.prune.sparsity=1.0"], capsys)
    assert "compress.prune.sparsity: must be in [0, 1), got 1.0" in err


def test_starting_from_a_student_that_is_not_trained(tiny_run, capsys):
    err = _compress_error(tiny_run, ["compress.scratch=false", "compress.start=student-scratch"], capsys)
    assert "compress.start: 'student-scratch' needs compress.scratch: true" in err


def test_pruning_a_layer_tfmot_cannot_wrap_is_named(tiny_run, capsys):
    err = _compress_error(tiny_run, ["compress.prune.layers=[audio_logmel]"], capsys)
    assert "layer 'audio_logmel' (LogMelSpectrogram) cannot be pruned by tfmot" in err


def test_missing_teacher(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("models", "exports"))
    err = _compress_error(run, [], capsys)
    assert "no model 'teacher'" in err


def test_student_recipe_scales_and_validates(av_recipe):
    from edgemtl.compress.student import student_recipe
    from edgemtl.errors import EdgemtlError
    from edgemtl.recipe.spec import freeze

    def with_student(**keys):
        student = dataclasses.replace(av_recipe.compress.student, **keys)
        return dataclasses.replace(av_recipe, compress=dataclasses.replace(av_recipe.compress, student=student))

    recipe = with_student(preset="small", inputs=freeze({"image": {"type": "mobilenet"}}))
    student = student_recipe(recipe)
    assert student.inputs[0].encoder.filters == (4, 8)  # audio [8, 16] halved
    assert student.inputs[1].encoder.type == "mobilenet" and student.inputs[1].encoder.width == 1.0
    recipe = with_student(preset="small", inputs=freeze({"imag": {"filters": [4]}, "audio": {"pooling": "max"}}))
    with pytest.raises(EdgemtlError) as e:
        student_recipe(recipe)
    text = "\n".join(e.value.messages)
    assert "compress.student.inputs.imag: not an input of the recipe (did you mean 'image'?)" in text
    assert "compress.student.inputs.audio.pooling" in text


def test_pruning_preserving_qat_accepts_a_text_encoder(fashion_tiny_run):
    """Conv1D has no pruning-preserving config in tfmot: it stays float in QAT instead of failing the stage."""
    from edgemtl.compress.prune import head_layers
    from edgemtl.compress.qat import quantize_for_training
    from edgemtl.models.build import load_model

    net = load_model(fashion_tiny_run / "models" / "teacher" / "model.keras")
    qat = quantize_for_training(net, head_layers(net), pruned=True)
    wrapped = {x.name for x in qat.layers if type(x).__name__.startswith("QuantizeWrapper")}
    assert "quant_image_block0_conv" in wrapped and not any(n.startswith("quant_title_conv") for n in wrapped)
    assert set(qat.output_names) == {"gender", "masterCategory"}


def _selected_student(run, data, sets):
    """The run's student with the teacher's weights selected into it: (student, teacher, layers set, left)."""
    from edgemtl.compress.selection import select_from_teacher
    from edgemtl.compress.student import student_recipe
    from edgemtl.models.build import build_model, load_model, numeric_stats
    from edgemtl.recipe import load_recipe

    student = student_recipe(load_recipe(run / "recipe.yaml", sets))
    teacher = load_model(run / "models" / "teacher" / "model.keras")
    net = build_model(student, data.labels, data.tokenizers, numeric_stats(student, data["train"].x),
                      student.tasks, "student")
    return (net, teacher, *select_from_teacher(net, teacher))


def test_weight_selection_at_the_teacher_width_reproduces_the_teacher(fashion_tiny_run):
    """Same widths: every layer (convolutions, word embedding, Conv1D text branches, concatenation, heads with their
    label-name match) is the teacher's, so the student answers exactly as the teacher does on real rows."""
    from edgemtl.data.dataset import prepare
    from edgemtl.recipe import load_recipe
    from edgemtl.stages import open_run

    run, _ = open_run(fashion_tiny_run)
    data = prepare(load_recipe(run.recipe), run.preprocess)
    net, teacher, done, left = _selected_student(fashion_tiny_run, data, ["compress.student.preset=none"])
    assert left == [] and {"title_embedding", "gender_logits", "gender_label_match", "masterCategory"} <= set(done)
    x = {k: v[:32] for k, v in data["test"].x.items()}
    ours, theirs = net.predict(x, verbose=0), teacher.predict(x, verbose=0)
    assert all(np.allclose(ours[t], theirs[t], atol=1e-6) for t in theirs)


def test_weight_selection_keeps_each_modalitys_channels_across_the_concatenation(tiny_run, av_data):
    net, teacher, done, left = _selected_student(tiny_run, av_data, [])  # half width (preset small)
    assert left == []
    conv, t_conv = net.get_layer("image_block0_conv").get_weights()[0], teacher.get_layer("image_block0_conv")
    assert np.array_equal(conv, t_conv.get_weights()[0][..., :conv.shape[-1]])
    # trunk rows: the kept audio channels, then the kept image channels at the teacher's image offset
    audio, t_audio = net.get_layer("audio_gap").output_shape[-1], teacher.get_layer("audio_gap").output_shape[-1]
    image = net.get_layer("image_gap").output_shape[-1]
    rows = np.concatenate([np.arange(audio), t_audio + np.arange(image)])
    kernel = net.get_layer("trunk_dense0").get_weights()[0]
    t_kernel = teacher.get_layer("trunk_dense0").get_weights()[0]
    assert np.array_equal(kernel, t_kernel[rows, :kernel.shape[1]])
    head, t_head = net.get_layer("digit").get_weights(), teacher.get_layer("digit").get_weights()
    assert np.array_equal(head[0], t_head[0][:kernel.shape[1]]) and np.array_equal(head[1], t_head[1])


def test_weight_selection_leaves_random_what_does_not_fit(tiny_run, av_data):
    """Another image encoder type: its layers, and the trunk and heads that read it, keep their random start."""
    _, _, done, left = _selected_student(tiny_run, av_data, ["compress.student.inputs={image: {type: mobilenet}}"])
    assert "audio_block0_conv" in done and "audio_logmel_norm" in done
    assert {"image_stem_conv", "trunk_dense0", "digit", "speaker"} <= set(left)
    assert not any(name.startswith("image_") for name in done)
