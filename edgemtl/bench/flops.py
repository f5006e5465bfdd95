"""Floating-point operations of one forward pass at batch 1 (TensorFlow's profiler on the frozen serving graph)."""


def model_flops(model) -> int:
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from ..tfk import tf

    specs = {i.name: tf.TensorSpec([1, *i.shape[1:]], i.dtype, name=i.name) for i in model.inputs}
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(specs)
    graph = convert_variables_to_constants_v2(concrete).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    profile = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                            options=options)
    return int(profile.total_float_ops)
