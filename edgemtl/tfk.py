"""The one place TensorFlow and Keras 2 (tf_keras) are imported; importing edgemtl first sets TF_USE_LEGACY_KERAS."""
import edgemtl  # noqa: F401  (sets the environment before TensorFlow loads)
import tensorflow as tf
import tf_keras as keras

# TensorFlow's Python warnings (deprecations inside tfmot/tf2onnx, "compiled metrics have yet to be built" after a
# SavedModel save) say nothing a user can act on; errors still show.
tf.get_logger().setLevel("ERROR")

__all__ = ["tf", "keras"]
