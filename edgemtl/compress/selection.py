"""Weight selection: a student starts from its teacher's weights rather than at random (Xu et al. 2024,
"Initializing Models with Larger Ones"). Each student layer takes the same-named teacher layer's weights,
cut to the student's width by keeping the teacher's first channels. The kept channels are followed through the
graph, so a layer reads exactly the teacher channels its input layer kept, also across a concatenation of
modalities. A layer that cannot be cut this way (another encoder type, a recurrent or attention layer, another
kernel size) keeps its random start, and so do the layers that read it.
"""
import numpy as np

from ..models.layers import AbsentVector
from ..models.towers import ExpertMixture
from ..tfk import keras

L = keras.layers
CUT_OUTPUT = (L.Dense, L.Conv1D, L.Conv2D)  # kernel [..., in, out] (+ bias [out]): input and output cut
# channels in = channels out; an optional input's learned absent vector [channels] is cut like its encoder's vector
PER_CHANNEL = (L.BatchNormalization, L.LayerNormalization, L.DepthwiseConv2D, AbsentVector)


def _inbound(model) -> dict:
    """Layer name -> names of the layers it reads, from the functional model's config."""
    out = {}
    for layer in model.get_config()["layers"]:
        nodes = layer["inbound_nodes"]
        out[layer["name"]] = [entry[0] for entry in nodes[0]] if nodes else []
    return out


def _last_dim(shape) -> int:
    shape = shape[0] if isinstance(shape, list) else shape
    return int(shape[-1])


def _cut(layer, source, keep) -> tuple:
    """(weights for the student layer, kept channels of its output), or (None, None) where it cannot be cut."""
    weights, src = layer.get_weights(), source.get_weights()
    if isinstance(layer, CUT_OUTPUT) and keep is not None:
        width = weights[0].shape[-1]
        cut = [src[0][..., keep, :width]] + [b[:width] for b in src[1:]]
        return cut, np.arange(width)
    if isinstance(layer, PER_CHANNEL) and keep is not None:  # a depthwise kernel [h, w, channels, 1]; else [channels]
        return [np.take(w, keep, axis=2 if w.ndim == 4 else 0) for w in src], keep
    if isinstance(layer, L.Embedding):
        width = weights[0].shape[-1]
        return [src[0][:, :width]], np.arange(width)
    if [w.shape for w in weights] == [w.shape for w in src]:  # same shapes: a copy (custom fusion weights, ...)
        return src, keep
    return None, None


def _kept_without_weights(source, inputs: list, teacher_inbound: list, teacher):
    """The kept channels of a layer without weights. Reading every teacher channel in order, it gives every channel
    (a front-end, a reshape); a last-axis concatenation offsets each input's; a layer that keeps the channel count
    (activations, pooling, dropout, add) passes them on; a tower's expert mixture passes on its experts' (its gate
    weighs them, it adds no channel); anything else loses track."""
    if not inputs or any(k is None for k in inputs):
        return None
    if isinstance(source, ExpertMixture):  # [gate, experts...]: its output channels are the experts' channels
        return _common(inputs[1:])
    widths = [_last_dim(teacher.get_layer(n).output_shape) for n in teacher_inbound]
    out_width = _last_dim(source.output_shape)
    if all(np.array_equal(k, np.arange(w)) for k, w in zip(inputs, widths)):
        return np.arange(out_width)
    if isinstance(source, L.Concatenate) and source.axis in (-1, len(source.output_shape) - 1):
        return np.concatenate([k + o for k, o in zip(inputs, np.cumsum([0] + widths))])
    return _common(inputs) if out_width == widths[0] else None


def _common(inputs: list):
    """The kept channels all inputs share (an element-wise layer reads matching channels), else None."""
    same = inputs and all(k is not None and np.array_equal(k, inputs[0]) for k in inputs)
    return inputs[0] if same else None


def select_from_teacher(student, teacher) -> tuple[list, list]:
    """Set every student layer that can be cut from the teacher; returns (names set, names left at random)."""
    inbound, teacher_inbound = _inbound(student), _inbound(teacher)
    by_name, kept, done, left = {x.name: x for x in teacher.layers}, {}, [], []
    for layer in student.layers:
        source = by_name.get(layer.name)
        inputs = [kept.get(n) for n in inbound[layer.name]]
        if isinstance(layer, AbsentVector):  # [vector, presence]: its channels are the vector's
            inputs = inputs[:1]
        if isinstance(layer, L.InputLayer):
            kept[layer.name] = np.arange(_last_dim(layer.output_shape))
        elif source is None or type(source) is not type(layer):
            kept[layer.name] = None
            left += [layer.name] if layer.weights else []
        elif layer.weights:
            weights, kept[layer.name] = _cut(layer, source, _common(inputs))
            if weights is not None and [w.shape for w in weights] == [w.shape for w in layer.get_weights()]:
                layer.set_weights(weights)
                done.append(layer.name)
            else:
                kept[layer.name] = None
                left.append(layer.name)
        else:
            kept[layer.name] = _kept_without_weights(source, inputs, teacher_inbound[layer.name], teacher)
    return done, left
