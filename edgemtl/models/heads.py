"""One head per task; the output layer carries the task's name so Keras, TFLite and ONNX outputs are named by it."""
from ..data.labels import n_outputs
from ..tfk import keras
from .layers import Denormalize

L = keras.layers
ACTIVATION = {"multiclass": "softmax", "binary": "sigmoid", "multilabel": "sigmoid"}


def head(x, task: dict, label_spec: dict):
    name = task["name"]
    if task["type"] == "regression":
        z = L.Dense(1, name=f"{name}_standardised")(x)
        return Denormalize(label_spec["mean"], label_spec["std"], name=name)(z)
    return L.Dense(n_outputs(label_spec), activation=ACTIVATION[task["type"]], name=name)(x)
