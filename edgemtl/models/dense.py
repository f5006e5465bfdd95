"""Dense heads (boxes, masks): a light top-down decoder over an image encoder's feature maps, conditioned on the
shared vector, ending in a 1x1 convolution with the task's channels (logits; the kind adds its activation).

The decoder starts at the encoder's deepest map (the widest receptive field) and upsamples x2 (nearest) down to the
head's stride, adding a 1x1-projected skip from the encoder's map at each stride it passes (an FPN-style path). The
shared vector (the trunk's output: every input fused) gates the channels (FiLM-style, a sigmoid per channel), so a
head can answer "where is the digit that was spoken": the gate carries the audio. Every op is a builtin of TFLite
and ONNX (Conv2D, UpSampling2D -> RESIZE_NEAREST_NEIGHBOR / Resize, Add, Mul, Logistic).
"""
from ..errors import EdgemtlError
from ..tfk import keras
from .encoders.blocks import conv_bn_relu

L = keras.layers
MAX_WIDTH = 64


def dense_head(features: dict, shared, stride: int, channels: int, name: str, bias: float = 0.0):
    """Logits [B, H / stride, W / stride, channels]. features: {stride: feature map} of one image encoder. The
    decoder is as wide as the encoder's map at the head's stride (at most MAX_WIDTH): light where the encoder is."""
    if not features:
        raise EdgemtlError(f"tasks.{name}: a dense head needs an image encoder's feature maps (an image input)")
    deepest = max(features)
    if stride not in features and stride > deepest:
        raise EdgemtlError(f"tasks.{name}: stride {stride} is coarser than the image encoder's deepest feature map "
                           f"(stride {deepest})")
    width = min(MAX_WIDTH, int(features[min(features, key=lambda k: abs(k - stride))].shape[-1]))
    x = conv_bn_relu(features[deepest], width, f"{name}_top", kernel=1)
    s = deepest
    while s > stride:
        s //= 2
        x = L.UpSampling2D(2, interpolation="nearest", name=f"{name}_up{s}")(x)
        if s in features:
            skip = L.Conv2D(width, 1, name=f"{name}_skip{s}")(features[s])
            x = L.Add(name=f"{name}_merge{s}")([x, skip])
        x = conv_bn_relu(x, width, f"{name}_dec{s}")
    gate = L.Dense(width, activation="sigmoid", name=f"{name}_gate")(shared)
    gate = L.Reshape((1, 1, width), name=f"{name}_gate_map")(gate)
    x = L.Multiply(name=f"{name}_gated")([x, gate])
    x = conv_bn_relu(x, width, f"{name}_out")
    return L.Conv2D(channels, 1, bias_initializer=keras.initializers.Constant(bias), name=f"{name}_logits")(x)
