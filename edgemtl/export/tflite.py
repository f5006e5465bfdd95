"""TFLite conversion: fp32, fp16, dynamic-range, full-int8 (float I/O) and int8 I/O, builtin ops only.

Full-int8 calibration can crash the process (e.g. a segfault calibrating a fused GRU), so callers run it in a child
process (worker.py).
"""
from ..models.layers import float_outputs
from ..tfk import tf
from .signature import serving_function


def _variables(model):
    """What the converter saves as a SavedModel around the serving function: the model's variables, not the Keras
    model, whose saving traces every layer's call functions (Keras's own SavedModel format): 70-80 % of a
    conversion's time on fashion, for the same graph, signature and weights (only constants are numbered
    differently)."""
    holder = tf.Module()
    holder.model_variables = list(model.variables)
    return holder


def _converter(model, precision: str, representative=None, batch=None):
    conv = tf.lite.TFLiteConverter.from_concrete_functions([serving_function(model, batch)], _variables(model))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision in ("int8", "int8io"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if precision == "int8io":
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    return conv


def convert(model, precision: str, samples=None, keep_float=(), batch=None) -> bytes:
    """samples: list of input dicts for calibration. keep_float: layer-name prefixes left in float. batch: a fixed
    batch size (the micro export), else any."""
    def representative():
        yield from samples

    conv = _converter(model, precision, representative, batch)
    # label-unit outputs (regression) stay in float: the converter folds their de-standardisation into the head's
    # FULLY_CONNECTED, whose int8 output would span 0..2016 for years
    label_units = float_outputs(model) if precision in ("int8", "int8io") else []
    if not keep_float and not label_units:
        return conv.convert()
    # Selective quantization, as TFLite's QuantizationDebugger does it: calibrate once (the float model with every
    # tensor's range), then quantize with the ops to keep in float denylisted by their output tensor names.
    float_model, calibrated = _calibrated(model, precision, samples, batch, conv)
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_content=float_model)
    outputs = details.get_signature_runner().get_output_details()
    names = [d["name"] for d in details.get_tensor_details() if any(f"/{p}" in d["name"] or d["name"].startswith(p)
                                                                   for p in keep_float)
             or any(f"/{n}/" in d["name"] for n in label_units)]
    names += [outputs[n]["name"] for n in label_units]
    from tensorflow.lite.python.convert import mlir_quantize

    return mlir_quantize(calibrated, disable_per_channel=conv._experimental_disable_per_channel,
                         fully_quantize=False, enable_numeric_verify=False, denylisted_nodes=names)


_last: list = []  # the last (model, samples, precision, batch, float file, calibrated file): one entry


def _calibrated(model, precision: str, samples, batch, conv) -> tuple[bytes, bytes]:
    """(the fp32 file, the calibrated float file) of this model on these rows. Neither depends on what is kept in
    float, so a process converting several variants of one model (the conversion child during the precision
    search) converts and calibrates it once."""
    for m, rows, p, b, float_model, calibrated in _last:
        if m is model and p == precision and b == batch and len(rows) == len(samples) \
                and all(x is y for x, y in zip(rows, samples)):
            return float_model, calibrated
    float_model = _converter(model, "fp32", batch=batch).convert()
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.experimental_mlir_quantizer = True
    conv._experimental_calibrate_only = True  # what the debugger sets: convert() stops after calibration
    calibrated = conv.convert()
    _last[:] = [(model, tuple(samples), precision, batch, float_model, calibrated)]
    return float_model, calibrated
