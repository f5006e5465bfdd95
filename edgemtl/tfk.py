"""The one place TensorFlow and Keras 2 (tf_keras) are imported; importing edgemtl first sets TF_USE_LEGACY_KERAS."""
import warnings

import edgemtl  # noqa: F401  (sets the environment before TensorFlow loads)
import tensorflow as tf
import tf_keras as keras

# TensorFlow's Python warnings (deprecations inside tfmot/tf2onnx, "compiled metrics have yet to be built" after a
# SavedModel save) say nothing a user can act on; errors still show.
tf.get_logger().setLevel("ERROR")
# quantization-aware models' weights are saved as .h5 on purpose (RunDir.model_file): Keras's "legacy format"
# advice is noise
warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")

__all__ = ["tf", "keras"]
