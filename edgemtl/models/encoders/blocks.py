"""Convolution blocks shared by the image and audio encoders."""
from ...tfk import keras

L = keras.layers
BN_MOMENTUM = 0.9  # the Keras default 0.99 lags far behind the weights on small datasets


def conv_bn_relu(x, filters, name, kernel=3, strides=1):
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x)


def plain_cnn(x, filters, prefix, pooling="avg", stem_stride=1, ctx=None):
    """ctx (an EncoderContext): records each stride's last feature map for dense heads."""
    stride = stem_stride
    for i, f in enumerate(filters):
        x = conv_bn_relu(x, f, f"{prefix}_block{i}", strides=stem_stride if i == 0 else 1)
        _record(ctx, x, stride)
        if x.shape[1] >= 2 and x.shape[2] >= 2:
            x = L.MaxPooling2D(2, name=f"{prefix}_pool{i}")(x)
            stride *= 2
            _record(ctx, x, stride)
    return pool(x, pooling, prefix)


def _record(ctx, x, stride):
    if ctx is not None:
        ctx.feature(x, stride)


def pool(x, pooling, prefix):
    """avg: global average (position-free, any input size); flatten: keeps where things are (small inputs)."""
    if pooling == "flatten":
        return L.Flatten(name=f"{prefix}_flatten")(x)
    return L.GlobalAveragePooling2D(name=f"{prefix}_gap")(x)
