"""Pretrained image backbones: a tf_keras.applications family built with weights=None and include_top=False, then
initialised from the user's LOCAL weights file (arrays by layer name, read without running code; edgemtl never
downloads anything). The family's input preprocessing is part of the graph, so the model takes the same raw uint8
pixels as every other image input; grayscale is repeated to 3 channels; global average pooling gives the vector.
The backbone is one nested model `<input>_backbone` whose outputs are its last feature map at each stride (recorded
in ctx.features for dense heads) and its final map."""
from pathlib import Path

import numpy as np

from ...errors import EdgemtlError
from ...tfk import keras
from ..files import source_layers

L = keras.layers
# caffe-style preprocessing of ResNet50 (what keras' resnet50.preprocess_input does): RGB -> BGR, minus these
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def _applications():
    apps = keras.applications
    return {"mobilenet_v3_small": apps.MobileNetV3Small, "mobilenet_v3_large": apps.MobileNetV3Large,
            "efficientnet_b0": apps.EfficientNetB0, "resnet50": apps.ResNet50}


def backbone(x, spec, prefix, ctx):
    where = f"inputs.{prefix}.encoder"
    net = _build(spec, ctx.inp, where)
    if spec.weights:
        names = load_backbone_weights(net, spec, f"{where}.weights")
        if spec.name.startswith("efficientnet"):
            _match_imagenet_scaling(net, names)
    x = _preprocess(x, spec.name, ctx.inp.channels, prefix)
    strides, outputs = _stride_outputs(net, ctx.inp.size[0])
    sub = keras.Model(net.inputs, outputs + [net.outputs[0]], name=f"{prefix}_backbone")
    # frozen: BatchNorm keeps its moving statistics (inference mode) even inside fit
    maps = sub(x, training=False) if not spec.trainable else sub(x)
    for stride, fmap in zip(strides, maps[:-1]):
        ctx.feature(fmap, stride)
    return L.GlobalAveragePooling2D(name=f"{prefix}_gap")(maps[-1])


def _build(spec, inp, where: str):
    if spec.alpha != 1.0 and not spec.name.startswith("mobilenet_v3"):
        raise EdgemtlError(f"{where}.alpha: {spec.alpha}: only mobilenet_v3_* take a width multiplier; "
                           f"{spec.name} has alpha 1.0")
    kwargs = {"alpha": spec.alpha, "include_preprocessing": True} if spec.name.startswith("mobilenet_v3") else {}
    try:
        # weights=None always: the weights come from the user's file or stay random, never from the internet
        return _applications()[spec.name](input_shape=(*inp.size, 3), include_top=False, weights=None, **kwargs)
    except ValueError as e:
        raise EdgemtlError(f"inputs.{inp.name}.size: {list(inp.size)} does not fit backbone {spec.name} "
                           f"({str(e).splitlines()[0][:160]})") from None


def _preprocess(x, family: str, channels: int, prefix: str):
    """uint8 pixels -> what the family was trained on. MobileNetV3 and EfficientNet rescale inside the application;
    ResNet50 wants BGR minus the ImageNet mean: one fixed 1x1 conv (channel swap, or gray -> 3, plus the bias)."""
    x = L.Rescaling(1.0, name=f"{prefix}_float")(x)  # a cast to float32: the pixel values stay 0-255
    if family == "resnet50":
        kernel = np.zeros((1, 1, channels, 3), np.float32)
        for out in range(3):
            kernel[0, 0, 0 if channels == 1 else 2 - out, out] = 1.0
        conv = L.Conv2D(3, 1, name=f"{prefix}_caffe", trainable=False)
        y = conv(x)
        conv.set_weights([kernel, -np.asarray(CAFFE_BGR_MEAN, np.float32)])
        return y
    if channels == 1:
        x = L.Concatenate(name=f"{prefix}_rgb")([x, x, x])
    return x


def _stride_outputs(net, height: int):
    """(strides, tensors): the backbone's last 4-D output at each whole stride, in increasing stride order."""
    last = {}
    for layer in net.layers[1:]:
        shape = layer.output.shape if not isinstance(layer.output, list) else None
        if shape is None or len(shape) != 4 or not shape[1] or height % shape[1]:
            continue
        last[height // shape[1]] = layer.output
    strides = sorted(last)
    return strides, [last[s] for s in strides]


def load_backbone_weights(net, spec, key: str) -> None:
    """Set the backbone's weighted layers, in order, from the weighted layers of the local file (by topology, as
    `load_weights` does: tf_keras numbers MobileNetV3's block names per process, so names differ between a file
    and a model built elsewhere); a file with the classifier too has extra layers at the end, which are ignored.
    One error line names the recipe key, the file and the first layer that does not fit (another architecture)."""
    path = Path(spec.weights)
    if not path.is_file():
        raise EdgemtlError(f"{key}: '{spec.weights}': no such file (a weights file of {spec.name} written with "
                           f"save_weights; docs/recipes.md shows how to get one)")
    try:
        everything = source_layers(path)
        source = [(name, values) for name, values in everything.items() if values]
    except EdgemtlError as e:
        raise EdgemtlError(f"{key}: {e.messages[0]}") from None
    except (OSError, ValueError) as e:
        raise EdgemtlError(f"{key}: '{spec.weights}': not loaded ({str(e).splitlines()[0][:200]})") from None
    layers = [layer for layer in net.layers if layer.weights]
    misfit = f"{key}: '{spec.weights}' does not fit backbone {spec.name} (alpha {spec.alpha})"
    if len(source) < len(layers):
        raise EdgemtlError(f"{misfit}: it has {len(source)} layers with weights, the backbone {len(layers)}; "
                           f"it holds the weights of another architecture")
    pairs = []
    for i, (layer, (name, values)) in enumerate(zip(layers, source)):
        targets = layer.trainable_weights + layer.non_trainable_weights
        want, got = [tuple(w.shape) for w in targets], [tuple(v.shape) for v in values]
        if got != want:
            raise EdgemtlError(f"{misfit}: weighted layer #{i} ('{name}' in the file, '{layer.name}' in the "
                               f"backbone) has shapes {got} in the file, the backbone needs {want}")
        pairs += list(zip(targets, values))
    keras.backend.batch_set_value(pairs)
    return list(everything)


def _match_imagenet_scaling(net, file_layers: list) -> None:
    """tf_keras builds EfficientNet with weights="imagenet" with one more (weightless) op after its Normalization:
    a multiply by 1/sqrt(stddev), which the imagenet weights were trained with. Built with weights=None that op is
    absent, so a file saved from an imagenet model (one layer more before `stem_conv`) gets the same scaling folded
    into the Normalization variance (dividing by sqrt(var * stddev))."""
    from tf_keras.src.applications.efficientnet import IMAGENET_STDDEV_RGB

    ours = [layer.name for layer in net.layers]
    if "stem_conv" not in ours or "stem_conv" not in file_layers:
        return
    if file_layers.index("stem_conv") != ours.index("stem_conv") + 1:
        return
    norm = next(layer for layer in net.layers if isinstance(layer, L.Normalization))
    mean, variance, count = norm.get_weights()
    norm.set_weights([mean, variance * np.reshape(IMAGENET_STDDEV_RGB, variance.shape), count])
