"""The one place TensorFlow and Keras 2 (tf_keras) are imported; importing edgemtl first sets TF_USE_LEGACY_KERAS."""
import edgemtl  # noqa: F401  (sets the environment before TensorFlow loads)
import tensorflow as tf
import tf_keras as keras

__all__ = ["tf", "keras"]
