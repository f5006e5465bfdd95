"""The one place TensorFlow and Keras 2 (tf_keras) are imported; importing edgemtl first sets TF_USE_LEGACY_KERAS."""
import contextlib
import os
import sys
import tempfile
import warnings

import edgemtl  # noqa: F401  (sets the environment before TensorFlow loads)


@contextlib.contextmanager
def _native_stderr_silenced(silence: bool):
    """TensorFlow's native libraries log through absl before it is initialised, which ignores TF_CPP_MIN_LOG_LEVEL
    (`oneDNN custom operations are on`, `Could not find cuda drivers`, once per library): file descriptor 2 goes to
    a temporary file while they load; what they wrote is shown only if the import fails."""
    if not silence:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


with _native_stderr_silenced(os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3"):  # the CLI sets 3 unless -v
    import tensorflow as tf
    import tf_keras as keras

# TensorFlow's Python warnings (deprecations inside tfmot/tf2onnx, "compiled metrics have yet to be built" after a
# SavedModel save) say nothing a user can act on; errors still show.
tf.get_logger().setLevel("ERROR")
# quantization-aware models' weights are saved as .h5 on purpose (RunDir.model_file): Keras's "legacy format"
# advice is noise
warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")

__all__ = ["tf", "keras"]
