"""edgemtl: one YAML recipe -> a small, fast, verified multitask multimodal model on a device."""
import os

# tfmot and tf2onnx need Keras 2: this must be set before TensorFlow is first imported anywhere.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
