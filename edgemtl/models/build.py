"""Recipe -> one functional tf_keras model with inputs named after features and outputs named after tasks."""
import numpy as np

from .. import kinds
from ..errors import EdgemtlError
from ..presence import PRESENCE_DTYPE, presence_name
from ..recipe.schema import Recipe, TaskSpec
from ..tfk import keras
from .encoders import EncoderContext
from .files import ACCEPTED, copy_layer_weights, load_model_file, source_layers
from .fusion import fuse, present_vectors
from .towers import trunk


def numeric_stats(recipe: Recipe, train_x: dict) -> dict:
    """Per-column mean and variance of the inputs whose modality standardises in the graph (training split)."""
    return {i.name: kinds.modality(i.type).stats(train_x[i.name]) for i in recipe.inputs
            if kinds.modality(i.type).has_stats}


def build_model(recipe: Recipe, labels: dict, tokenizers: dict, stats: dict, tasks=None, name="model"):
    """Build the model for `tasks` (default: all recipe tasks)."""
    tasks = tasks if tasks is not None else recipe.tasks
    inputs, vectors, presences, maps = {}, [], [], {}
    for inp in recipe.inputs:
        mk = kinds.modality(inp.type)
        x = keras.Input(shape=mk.input_shape(inp), dtype=mk.dtype, name=inp.name)
        inputs[inp.name] = x
        presences.append(_presence_input(inp, inputs))
        spec = inp.encoder
        tok = tokenizers.get(inp.name)
        ctx = EncoderContext(inp, len(tok.vocab) if tok else 0, stats.get(inp.name))
        v = mk.encoders()[spec.type](x, spec, inp.name, ctx)
        maps[inp.name] = ctx.features
        if spec.dropout:
            v = keras.layers.Dropout(spec.dropout, name=f"{inp.name}_dropout")(v)
        vectors.append(v)
    vectors = present_vectors(vectors, presences, [i.name for i in recipe.inputs], recipe.fusion.modality_dropout)
    towers = trunk(fuse(vectors, recipe.fusion), recipe.trunk, [t.name for t in tasks])
    presences = _token_presences(recipe, tasks, inputs, labels, tokenizers)
    outputs = {t.name: _head(t, towers[t.name], recipe, inputs, labels, tokenizers, maps, presences) for t in tasks}
    model = keras.Model(inputs=inputs, outputs=outputs, name=name)
    _load_encoder_weights(model, recipe)
    return model


def _head(task: TaskSpec, shared, recipe: Recipe, inputs: dict, labels: dict, tokenizers: dict, maps: dict,
          presences: dict):
    """The task's output: dense kinds (boxes, masks) also read their image input's feature maps."""
    kind = kinds.task_kind(task.type)
    if getattr(kind, "dense", False):
        return kind.head(shared, task, labels[task.name], features=maps[dense_input(recipe, task)])
    return kind.head(shared, task, labels[task.name], _match(task, recipe, inputs, labels, tokenizers, presences))


def _token_presences(recipe: Recipe, tasks: list, inputs: dict, labels: dict, tokenizers: dict) -> dict:
    """text input -> (TokenPresence output, its ids): one token comparison for every head matching class names on
    that text, over the union of their names' token ids."""
    from .layers import TokenPresence, presence_ids

    forms: dict[str, list] = {}
    for t in tasks:
        kind = kinds.task_kind(t.type)
        if t.match_labels and not getattr(kind, "dense", False):
            forms.setdefault(t.match_labels, []).extend(
                kind.match_tables(labels[t.name]["classes"], tokenizers[t.match_labels])[0])
    out = {}
    for source, found in forms.items():
        ids = presence_ids(found)
        out[source] = (TokenPresence(ids, name=f"{source}_token_presence")(inputs[source]), ids)
    return out


def dense_input(recipe: Recipe, task: TaskSpec) -> str:
    """The image input a dense task's head reads: tasks.*.input, else the recipe's only image input."""
    images = [i.name for i in recipe.inputs if i.type == "image"]
    where = f"tasks[{[t.name for t in recipe.tasks].index(task.name)}]"
    if task.input:
        if task.input not in images:
            raise EdgemtlError(f"{where}.input: '{task.input}' is not an image input (image inputs: "
                               f"{', '.join(images) or 'none'})")
        return task.input
    if len(images) != 1:
        raise EdgemtlError(f"{where} ({task.name}): a {task.type} task reads an image input's feature maps; "
                           f"the recipe has {len(images)} image inputs: name one in {where}.input")
    return images[0]


def _match(task: TaskSpec, recipe: Recipe, inputs: dict, labels: dict, tokenizers: dict, presences: dict):
    """The task's label-name-match logits when the recipe asks for them, else None."""
    source = task.match_labels
    if not source:
        return None
    where = f"tasks[{[t.name for t in recipe.tasks].index(task.name)}].match_labels"
    return kinds.task_kind(task.type).label_match(inputs[source], task, labels[task.name], tokenizers[source], where,
                                                  presences.get(source))


def _presence_input(inp, inputs: dict):
    """An optional input's presence flag, a model input of its own ([batch, 1] float32: 1 present, 0 absent)."""
    if not inp.optional:
        return None
    name = presence_name(inp.name)
    inputs[name] = keras.Input(shape=(1,), dtype=PRESENCE_DTYPE, name=name)
    return inputs[name]


def _load_encoder_weights(model, recipe: Recipe):
    """Transfer learning: copy same-named layers of each encoder from a local .keras model, freeze if asked."""
    for inp in recipe.inputs:
        spec, prefix = inp.encoder, f"{inp.name}_"
        layers = [layer for layer in model.layers if layer.name.startswith(prefix) and layer.weights]
        if spec.weights and spec.type != "backbone":  # a backbone loaded its file itself (encoders/backbone.py)
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
