"""TFLite conversion: fp32, fp16, dynamic-range, full-int8 (float I/O) and int8 I/O, builtin ops only.

Full-int8 calibration can crash the process (e.g. a segfault calibrating a fused GRU), so callers run it in a child
process (worker.py).
"""
from ..models.layers import float_outputs
from ..tfk import tf
from .signature import serving_function


def _converter(model, precision: str, representative=None, batch=None):
    conv = tf.lite.TFLiteConverter.from_concrete_functions([serving_function(model, batch)], model)
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
    # Selective quantization: the debugger takes the output tensor names of ops to keep in float, and its
    # dataset as lists in interpreter input order (not dicts).
    float_model = _converter(model, "fp32", batch=batch).convert()
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_content=float_model)
    outputs = details.get_signature_runner().get_output_details()
    names = [d["name"] for d in details.get_tensor_details() if any(f"/{p}" in d["name"] or d["name"].startswith(p)
                                                                   for p in keep_float)
             or any(f"/{n}/" in d["name"] for n in label_units)]
    names += [outputs[n]["name"] for n in label_units]
    order = [d["name"].split("serving_default_")[-1].split(":")[0] for d in details.get_input_details()]

    def as_lists():
        for s in samples:
            yield [s[name] for name in order]

    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=names)
    debugger = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=as_lists,
                                                         debug_options=options)
    return debugger.get_nondebug_quantized_model()
