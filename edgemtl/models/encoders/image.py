"""Image encoders: uint8 pixels in, a feature vector out. Scaling to [0, 1] happens inside the graph. Each encoder
also records its feature maps by stride in ctx.features (EncoderContext) for the dense heads (boxes, masks)."""
from ...tfk import keras
from .backbone import backbone
from .blocks import BN_MOMENTUM, conv_bn_relu, plain_cnn, pool

L = keras.layers


def cnn(x, spec, prefix, ctx):
    return plain_cnn(_scale(x, prefix), spec.filters, prefix, spec.pooling, spec.stem_stride, ctx)


def mobilenet(x, spec, prefix, ctx):
    """Depthwise-separable blocks (MobileNet v1 style) with a width multiplier."""
    widths = [max(8, int(f * spec.width)) for f in spec.filters]
    x = ctx.feature(conv_bn_relu(_scale(x, prefix), widths[0], f"{prefix}_stem", strides=2), 2)
    for i, f in enumerate(widths[1:]):
        x = L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name=f"{prefix}_dw{i}")(x)
        x = L.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_dw{i}_bn")(x)
        x = L.ReLU(name=f"{prefix}_dw{i}_relu")(x)
        x = ctx.feature(conv_bn_relu(x, f, f"{prefix}_pw{i}", kernel=1), 2 ** (i + 2))
    return pool(x, spec.pooling, prefix)


def resnet(x, spec, prefix, ctx):
    """Small ResNet: a stem, then stages of basic residual blocks, stride 2 between stages."""
    x = conv_bn_relu(_scale(x, prefix), spec.filters[0], f"{prefix}_stem")
    for s, f in enumerate(spec.filters):
        for b in range(spec.blocks):
            strides = 2 if s > 0 and b == 0 else 1
            x = _residual(x, f, strides, f"{prefix}_s{s}b{b}")
        ctx.feature(x, 2 ** s)
    return pool(x, spec.pooling, prefix)


def _residual(x, filters, strides, name):
    y = conv_bn_relu(x, filters, f"{name}_a", strides=strides)
    y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(y)
    y = L.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_b_bn")(y)
    if strides != 1 or x.shape[-1] != filters:
        x = L.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_proj")(x)
        x = L.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_proj_bn")(x)
    return L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([x, y]))


def _scale(x, prefix):
    return L.Rescaling(1.0 / 255.0, name=f"{prefix}_scale")(x)


ENCODERS = {"cnn": cnn, "mobilenet": mobilenet, "resnet": resnet, "backbone": backbone}
