"""The exported graph: exported tasks only (auxiliary heads dropped), named inputs, a None batch dimension."""
from ..models.fused_match import fuse_label_matches
from ..recipe.schema import Recipe
from ..tfk import keras, tf


def exported_model(model, recipe: Recipe):
    """A model over the same weights with only the non-auxiliary task outputs, its heads' label matches on one
    input merged into one set of ops (models/fused_match.py)."""
    model = fuse_label_matches(model)
    keep = [t.name for t in recipe.tasks if not t.auxiliary and t.name in model.output_names]
    outputs = {name: model.get_layer(name).output for name in keep}
    return keras.Model(model.inputs, outputs, name=model.name)


def input_specs(model, batch: int | None = None) -> dict:
    return {i.name: tf.TensorSpec([batch, *i.shape[1:]], i.dtype, name=i.name) for i in model.inputs}


def serving_function(model, batch: int | None = None):
    """A concrete function whose signature names inputs after features and outputs after tasks. batch: None (any),
    or fixed (the micro export: static shapes throughout)."""
    specs = input_specs(model, batch)

    @tf.function(input_signature=[specs])
    def serve(inputs):
        return model(inputs, training=False)

    return serve.get_concrete_function()
