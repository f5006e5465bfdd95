"""Model files without code execution: architectures come from recipes or a safe-mode .keras config, and only
weights are read from other files.

tf_keras's legacy HDF5 model loader ignores `safe_mode`: a Lambda layer's marshalled bytecode in a `.h5` model runs
while it loads, and a `.keras` name on an HDF5 file takes that same legacy path. So a full model is read only from
a real `.keras` zip with safe_mode=True, and `.h5` files are read as weights only (arrays by layer name, no config).
Quantization-aware models (whose tfmot wrappers do not round-trip `.keras`) are saved as weights only, with
`qat.json` naming how to rebuild them: the model they were made from and the quantize settings.
"""
import json
import zipfile
from pathlib import Path

import numpy as np

from ..errors import EdgemtlError
from ..rundir import MODEL_FILE, QAT_WEIGHTS_FILE, atomic_write_json
from ..tfk import keras
from .layers import CUSTOM_OBJECTS

QAT_SPEC = "qat.json"
ACCEPTED = ("a .keras model (read in safe mode) or a weights-only .h5 file (written by model.save_weights('x.h5')); "
            "legacy full-model .h5 files are refused because loading them can run code")


def load_model_file(path):
    """A Keras model from a model file of a run: `.keras` in safe mode, or a quantization-aware weights file."""
    path = Path(path)
    if path.name == QAT_WEIGHTS_FILE:
        return load_qat(path)
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise EdgemtlError(f"{path}: not loaded: edgemtl reads models only from .keras files (zip archives, read in "
                           f"safe mode); legacy .h5 or SavedModel files can run code on load")
    return keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False, safe_mode=True)


def save_model_file(model, path) -> None:
    """The counterpart of load_model_file: weights only for a quantization-aware weights file, else the model."""
    path = Path(path)
    if path.name.endswith(QAT_WEIGHTS_FILE):  # atomic_save's temporary name ends with it too
        model.save_weights(str(path), save_format="h5")
    else:
        model.save(path)


# --- quantization-aware models: weights plus how to rebuild them -----------------------------------------------
def write_qat_spec(model_dir, base: str, heads, pruned: bool) -> None:
    """models/<qat>/qat.json: the run's model the QAT model was made from (its .keras is the architecture)."""
    atomic_write_json(Path(model_dir) / QAT_SPEC, {"base": base, "heads": sorted(heads), "pruned": bool(pruned)})


def load_qat(path: Path):
    from ..compress.qat import quantize_for_training

    spec_path = path.parent / QAT_SPEC
    try:
        spec = json.loads(spec_path.read_text())
        base, heads, pruned = str(spec["base"]), set(spec["heads"]), bool(spec["pruned"])
    except (OSError, ValueError, KeyError, TypeError):
        raise EdgemtlError(f"{spec_path}: missing or unreadable; it says how to rebuild the quantization-aware "
                           f"model {path.parent.name} (run compress again)") from None
    if "/" in base or "\\" in base or base in ("", ".", ".."):
        raise EdgemtlError(f"{spec_path}: base '{base}' is not a model name of this run")
    import tensorflow_model_optimization as tfmot

    built = quantize_for_training(load_model_file(path.parent.parent / base / MODEL_FILE), heads, pruned)
    # built reuses the base model's unwrapped layers (heads), so their first outputs belong to the base graph: a
    # copy from its config (held in memory, made from the safe-mode base) has layers of its own
    with tfmot.quantization.keras.quantize_scope(CUSTOM_OBJECTS):
        net = keras.Model.from_config(built.get_config())
    try:
        net.load_weights(str(path))
    except (OSError, ValueError) as e:
        raise EdgemtlError(f"{path}: weights do not fit the quantization-aware model rebuilt from {base} "
                           f"({str(e).splitlines()[0][:200]})") from None
    return net


# --- transfer learning: encoder weights ------------------------------------------------------------------------
def source_layers(path) -> dict:
    """{layer name: weight arrays (trainable first, as tf_keras's weight files order them)} of an encoder.weights
    file, read without running any code from it."""
    path = Path(path)
    if path.suffix == ".keras":
        model = load_model_file(path)
        return {layer.name: [np.asarray(w) for w in layer.trainable_weights + layer.non_trainable_weights]
                for layer in model.layers}
    if path.suffix == ".h5":
        return _h5_weights(path)
    raise EdgemtlError(f"{path}: unsupported file type; accepted: {ACCEPTED}")


def _h5_weights(path: Path) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "model_config" in f.attrs:
                raise EdgemtlError(f"{path}: a full Keras model in the legacy .h5 format; accepted: {ACCEPTED}")
            if "layer_names" not in f.attrs:
                raise EdgemtlError(f"{path}: not a weights file (no layer_names); accepted: {ACCEPTED}")
            out = {}
            for name in _names(f.attrs["layer_names"]):
                group = f[name]
                out[name] = [np.asarray(group[w]) for w in _names(group.attrs.get("weight_names", []))]
            return out
    except OSError as e:
        raise EdgemtlError(f"{path}: not a readable HDF5 file ({str(e).splitlines()[0][:200]})") from None


def _names(values) -> list:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def copy_layer_weights(layers: list, source: dict) -> int:
    """Set each layer from the same-named source layer where every shape matches; returns how many were set."""
    copied = 0
    for layer in layers:
        values = source.get(layer.name)
        targets = layer.trainable_weights + layer.non_trainable_weights
        if values is not None and [tuple(w.shape) for w in targets] == [v.shape for v in values]:
            keras.backend.batch_set_value(list(zip(targets, values)))
            copied += 1
    return copied
