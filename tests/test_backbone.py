"""Pretrained image backbones (encoder type backbone): a local weights file written from a freshly built
tf_keras.applications model (nothing is downloaded) initialises the recipe model's backbone, `trainable: false`
keeps every backbone weight through training, misfit and missing files are one error naming the recipe key, and
every family converts to int8 TFLite with builtin ops and int8/float parity on real images (behind `slow`: each
conversion takes minutes on 2 loaded cores)."""
import numpy as np
import pytest

from conftest import REPO
from edgemtl.data.dataset import prepare
from edgemtl.errors import EdgemtlError
from edgemtl.models.build import build_model, numeric_stats
from edgemtl.recipe import load_recipe
from edgemtl.tfk import keras

FASHION_MINI = REPO / "tests" / "data" / "fashion_mini" / "products.csv"


def recipe_for(tmp_path, name="mobilenet_v3_small", weights=None, trainable=True, alpha=0.25, channels=3, size=32):
    extra = f", weights: {weights}" if weights else ""
    alpha_key = f", alpha: {alpha}" if name.startswith("mobilenet_v3") else ""
    path = tmp_path / "b.yaml"
    path.write_text(f"""
name: b
data: {{source: {FASHION_MINI}, split: {{ratios: [0.6, 0.2, 0.2]}}, limit: 40}}
inputs:
  - {{name: image, type: image, column: image, size: [{size}, {size}], channels: {channels},
     encoder: {{type: backbone, name: {name}{alpha_key}, trainable: {str(trainable).lower()}{extra}}}}}
trunk: {{units: [8]}}
tasks:
  - {{name: gender, type: multiclass}}
training: {{batch_size: 8, learning_rate: 0.01}}
""")
    return load_recipe(path)


def build(recipe):
    data = prepare(recipe)
    return build_model(recipe, data.labels, data.tokenizers, numeric_stats(recipe, data["train"].x)), data


def weights_file(tmp_path, alpha=0.25):
    """What a user does on a machine with internet, minus the download: save_weights of the application."""
    net = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), alpha=alpha, include_top=False, weights=None)
    path = tmp_path / f"{net.name}.h5"
    net.save_weights(str(path))
    return path, net


def backbone_of(model):
    return model.get_layer("image_backbone")


@pytest.fixture(scope="module")
def mnv3_file(tmp_path_factory):
    return weights_file(tmp_path_factory.mktemp("weights"), alpha=0.25)


def test_weights_file_initialises_the_backbone_and_frozen_training_keeps_it(tmp_path, mnv3_file):
    path, source = mnv3_file
    model, data = build(recipe_for(tmp_path, weights=path, trainable=False))
    backbone = backbone_of(model)
    ours = backbone.get_weights()
    theirs = source.get_weights()
    assert len(ours) == len(theirs) > 50
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
    # a freshly initialised backbone differs: the file really set the weights
    fresh = backbone_of(build(recipe_for(tmp_path, trainable=False))[0]).get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(ours, fresh))
    # frozen: no trainable weight in the backbone, and one epoch on real rows changes the head only
    assert not backbone.trainable_weights
    head_before = [w.copy() for w in model.get_layer("gender").get_weights()]
    from edgemtl.kinds import task_kind

    loss = task_kind("multiclass").loss(recipe_for(tmp_path).task("gender"), data.labels["gender"])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss={"gender": loss})
    train = data["train"]
    model.fit(train.x, {"gender": train.y["gender"]}, epochs=1, batch_size=8, verbose=0)
    after = backbone.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(after, theirs))  # BatchNorm statistics included
    assert not all(np.array_equal(a, b) for a, b in zip(head_before, model.get_layer("gender").get_weights()))
    # a run saves its model as .keras and reads it back in safe mode (no code from the file)
    from edgemtl.models.files import load_model_file

    x = {k: v[:2] for k, v in train.x.items()}
    model.save(tmp_path / "m.keras")
    again = load_model_file(tmp_path / "m.keras")
    assert np.allclose(again(x, training=False)["gender"].numpy(), model(x, training=False)["gender"].numpy(),
                       atol=1e-5)


def test_grayscale_resnet50_takes_raw_pixels_and_records_strides(tmp_path):
    recipe = recipe_for(tmp_path, name="resnet50", channels=1)
    model, data = build(recipe)
    x = {k: v[:2] for k, v in data["train"].x.items()}
    assert x["image"].shape[-1] == 1 and x["image"].dtype == np.uint8
    out = model(x, training=False)["gender"].numpy()
    assert out.shape[0] == 2 and np.isfinite(out).all()
    # its feature maps by stride are there for dense heads
    from edgemtl.models.encoders import EncoderContext
    from edgemtl.models.encoders.backbone import backbone

    ctx = EncoderContext(recipe.input("image"))
    backbone(keras.Input((32, 32, 1), dtype="uint8"), recipe.input("image").encoder, "probe", ctx)
    assert {4, 8, 16, 32} <= set(ctx.features)
    assert all(ctx.features[s].shape[1] == 32 // s for s in ctx.features)
    # the caffe conv maps gray g to (g, g, g) - BGR mean
    caffe = model.get_layer("image_caffe")
    y = caffe(np.full((1, 1, 1, 1), 200.0, np.float32)).numpy().ravel()
    assert np.allclose(y, 200.0 - np.array([103.939, 116.779, 123.68]), atol=1e-4)


def test_misfit_and_missing_weights_files_are_one_error_naming_the_key(tmp_path, mnv3_file):
    path, _ = mnv3_file
    with pytest.raises(EdgemtlError) as wrong:  # a MobileNetV3Small file for a MobileNetV3Large backbone
        build(recipe_for(tmp_path, name="mobilenet_v3_large", weights=path))
    message = str(wrong.value)
    assert "inputs.image.encoder.weights" in message and str(path) in message and "layer" in message
    assert "\n" not in message
    with pytest.raises(EdgemtlError) as other_alpha:
        build(recipe_for(tmp_path, weights=path, alpha=0.5))
    assert "inputs.image.encoder.weights" in str(other_alpha.value) and "shapes" in str(other_alpha.value)
    missing = tmp_path / "nowhere.h5"
    with pytest.raises(EdgemtlError) as gone:
        build(recipe_for(tmp_path, weights=missing))
    assert "inputs.image.encoder.weights" in str(gone.value) and str(missing) in str(gone.value)


# every family converts to int8 TFLite from a file written by a freshly built application (each conversion takes a
# minute or more of CPU, so all four are slow). Parity floors: the smallest family's int8 features are close to
# float; the deeper random-weight nets (no pretrained file here) amplify int8 rounding more, so for them the floor
# only tells a working conversion from a broken one, and the export gate (with its float fallback) decides per
# artifact. Measured values: docs/recipes.md, Pretrained image backbones.
FAMILIES = [pytest.param("mobilenet_v3_small", 0.25, 0.95, marks=pytest.mark.slow),
            pytest.param("mobilenet_v3_large", 0.25, 0.5, marks=pytest.mark.slow),
            pytest.param("efficientnet_b0", 1.0, 0.5, marks=pytest.mark.slow),
            pytest.param("resnet50", 1.0, 0.5, marks=pytest.mark.slow)]


def application_file(folder, name, alpha, images):
    """A weights file of a freshly built application whose BatchNorm statistics are those of real images (as in a
    pretrained file: a randomly initialised deep net's features otherwise shrink to ~1e-6, and any int8 error
    would hide in near-constant outputs): one training-mode pass with momentum 0 sets every layer's statistics."""
    from edgemtl.models.encoders.backbone import _applications

    kwargs = {"alpha": alpha} if name.startswith("mobilenet_v3") else {}
    net = _applications()[name](input_shape=(32, 32, 3), include_top=False, weights=None, **kwargs)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
        if isinstance(layer, keras.layers.Dropout):  # EfficientNet's stochastic depth: statistics of the whole net
            layer.rate = 0.0
    pixels = images.astype(np.float32)
    if name == "resnet50":  # caffe preprocessing is edgemtl's, outside the application
        pixels = pixels[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
    net(pixels, training=True)
    path = folder / f"{name}.h5"
    net.save_weights(str(path))
    return path


@pytest.mark.parametrize("name, alpha, floor", FAMILIES)
def test_each_backbone_converts_to_int8_tflite_with_builtin_ops_and_parity_on_real_images(tmp_path, name, alpha,
                                                                                           floor):
    from ai_edge_litert.interpreter import Interpreter

    from edgemtl.export import tflite

    keras.utils.set_random_seed(0)
    recipe = recipe_for(tmp_path, name=name, trainable=False, alpha=alpha)
    images = prepare(recipe)["train"].x["image"]
    path = application_file(tmp_path, name, alpha, images)
    model, data = build(recipe_for(tmp_path, name=name, weights=path, trainable=False, alpha=alpha))
    # the backbone's pooled feature vector beside the head: int8 parity of the backbone itself
    probe = keras.Model(model.inputs, {"gender": model.output["gender"],
                                       "features": model.get_layer("image_gap").output})
    train, test = data["train"].x, data["test"].x
    samples = [{k: v[i:i + 1] for k, v in train.items()} for i in range(16)]
    interpreter = Interpreter(model_content=tflite.convert(probe, "int8", samples))
    runner = interpreter.get_signature_runner()
    ops = {d["op_name"] for d in interpreter._get_ops_details()}
    assert "CONV_2D" in ops and not any(op.startswith("Flex") for op in ops), sorted(ops)
    assert any("int8" in str(d["dtype"]) for d in interpreter.get_tensor_details())  # really quantized
    want = probe.predict(test, verbose=0)
    assert np.median(np.linalg.norm(want["features"], axis=1)) > 0.1  # features that carry the images
    cosines, drift = [], []
    for i in range(len(data["test"])):
        got = runner(**{k: v[i:i + 1] for k, v in test.items()})
        f, g = got["features"].ravel(), want["features"][i]
        cosines.append(float(f @ g / (np.linalg.norm(f) * np.linalg.norm(g) + 1e-12)))
        drift.append(float(np.abs(got["gender"].ravel() - want["gender"][i]).max()))
    print(f"{name}: feature cosine int8/float min {min(cosines):.3f} mean {np.mean(cosines):.3f}, head "
          f"probability drift max {max(drift):.3f} over {len(cosines)} test images")
    # int8 keeps the backbone's features and the head's probabilities close to float on the real test images (a
    # random head's classes are too close for argmax agreement to mean anything)
    assert np.mean(cosines) > floor and min(cosines) > floor - 0.4, (name, cosines)
    if floor > 0.9:  # the deeper random nets' head probabilities drifted up to 0.4-0.8: no bound worth asserting
        assert max(drift) < 0.15, (name, drift)


def test_efficientnet_b0_from_a_file_computes_what_the_application_computes_on_raw_pixels(tmp_path):
    source = keras.applications.EfficientNetB0(input_shape=(32, 32, 3), include_top=False, weights=None)
    # a file whose Normalization holds real statistics, as an imagenet file does
    norm = next(layer for layer in source.layers if isinstance(layer, keras.layers.Normalization))
    norm.set_weights([np.array([0.4, 0.5, 0.6]), np.array([0.05, 0.06, 0.07]), np.array(100)])
    path = tmp_path / "effb0.h5"
    source.save_weights(str(path))
    model, data = build(recipe_for(tmp_path, name="efficientnet_b0", weights=path, trainable=False))
    pixels = data["train"].x["image"][:2]
    ours = model.get_layer("image_backbone")(pixels.astype(np.float32), training=False)[-1].numpy()
    theirs = source(pixels.astype(np.float32), training=False).numpy()
    assert np.allclose(ours, theirs, atol=1e-4)
