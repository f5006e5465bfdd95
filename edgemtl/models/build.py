"""Recipe -> one functional tf_keras model with inputs named after features and outputs named after tasks."""
import numpy as np

from ..recipe.schema import InputSpec, Recipe, TaskSpec
from ..errors import EdgemtlError
from ..tfk import keras
from .encoders import REGISTRY, EncoderContext
from .files import ACCEPTED, copy_layer_weights, load_model_file, source_layers
from .fusion import fuse, trunk
from .heads import head, label_match

INPUT_DTYPES = {"image": "uint8", "text": "int32", "audio": "float32", "numeric": "float32", "sequence": "float32"}


def input_shape(inp: InputSpec) -> tuple:
    kind = inp.type
    if kind == "image":
        return (*inp.size, inp.channels)
    if kind == "text":
        return (inp.max_length,)
    if kind == "audio":
        return (int(round(inp.sample_rate * inp.clip_seconds)),)
    if kind == "numeric":
        return (len(inp.columns),)
    return (inp.length, inp.channels)


def numeric_stats(recipe: Recipe, train_x: dict) -> dict:
    """Per-column mean and variance of numeric inputs on the training split (baked into the graph)."""
    return {i.name: (train_x[i.name].mean(axis=0), train_x[i.name].var(axis=0) + 1e-8)
            for i in recipe.inputs if i.type == "numeric"}


def build_model(recipe: Recipe, labels: dict, tokenizers: dict, stats: dict, tasks=None, name="model"):
    """Build the model for `tasks` (default: all recipe tasks)."""
    tasks = tasks if tasks is not None else recipe.tasks
    inputs, vectors = {}, []
    for inp in recipe.inputs:
        x = keras.Input(shape=input_shape(inp), dtype=INPUT_DTYPES[inp.type], name=inp.name)
        inputs[inp.name] = x
        spec = inp.encoder
        tok = tokenizers.get(inp.name)
        ctx = EncoderContext(inp, len(tok.vocab) if tok else 0, stats.get(inp.name))
        v = REGISTRY[inp.type][spec.type](x, spec, inp.name, ctx)
        if spec.dropout:
            v = keras.layers.Dropout(spec.dropout, name=f"{inp.name}_dropout")(v)
        vectors.append(v)
    vectors = _modality_dropout(vectors, recipe)
    shared = trunk(fuse(vectors, recipe.fusion), recipe.trunk)
    outputs = {t.name: head(shared, t, labels[t.name], _match(t, recipe, inputs, labels, tokenizers))
               for t in tasks}
    model = keras.Model(inputs=inputs, outputs=outputs, name=name)
    _load_encoder_weights(model, recipe)
    return model


def _match(task: TaskSpec, recipe: Recipe, inputs: dict, labels: dict, tokenizers: dict):
    """The task's label-name-match logits when the recipe asks for them, else None."""
    source = task.match_labels
    if not source:
        return None
    where = f"tasks[{[t.name for t in recipe.tasks].index(task.name)}].match_labels"
    return label_match(inputs[source], task.name, labels[task.name], tokenizers[source], where)


def _modality_dropout(vectors: list, recipe: Recipe) -> list:
    """Zero each modality's whole vector for a training row with the recipe's chance (noise shape: one draw per
    row and modality), so no modality leans on another; a model with one modality gets none."""
    rate = recipe.fusion.modality_dropout
    if not rate or len(vectors) < 2:
        return vectors
    return [keras.layers.Dropout(rate, noise_shape=(None, 1), name=f"{inp.name}_modality_dropout")(v)
            for v, inp in zip(vectors, recipe.inputs)]


def _load_encoder_weights(model, recipe: Recipe):
    """Transfer learning: copy same-named layers of each encoder from a local .keras model, freeze if asked."""
    for inp in recipe.inputs:
        spec, prefix = inp.encoder, f"{inp.name}_"
        layers = [layer for layer in model.layers if layer.name.startswith(prefix) and layer.weights]
        if spec.weights:
            copied = copy_layer_weights(layers, _source_layers(spec.weights, inp.name))
            if copied == 0:
                raise EdgemtlError(f"inputs.{inp.name}.encoder.weights: '{spec.weights}' has no layer named "
                                   f"'{prefix}...' with matching shapes; use a model built with the same encoder")
        if not spec.trainable:
            for layer in layers:
                layer.trainable = False


def load_model(path):
    """A model file of a run (models/files.py: never a file that can run code on load)."""
    try:
        return load_model_file(path)
    except (OSError, ValueError) as e:
        raise EdgemtlError(f"{path}: not a readable Keras model ({str(e).splitlines()[0][:200]})") from None


def _source_layers(path, name: str) -> dict:
    try:
        return source_layers(path)
    except EdgemtlError as e:
        raise EdgemtlError(f"inputs.{name}.encoder.weights: {e.messages[0]}") from None
    except (OSError, ValueError) as e:
        raise EdgemtlError(f"inputs.{name}.encoder.weights: {path}: not loaded ({str(e).splitlines()[0][:200]}); "
                           f"accepted: {ACCEPTED}") from None


def count_params(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.weights))
