"""ONNX static int8 variants of one model (the precision search, the float fallback) pre-process the graph and
calibrate once, and each file is what a fresh quantization makes."""
from edgemtl.artifacts import ArtifactId

ONNX_INT8 = ArtifactId("teacher", "onnx", "int8")


def test_onnx_int8_variants_share_pre_processing_and_ranges_and_match_a_fresh_quantization(tiny_run, av_data,
                                                                                           monkeypatch):
    import onnxruntime.quantization as ort_quantization

    from edgemtl.export import onnx as onnx_export
    from edgemtl.export.convert import Converter, calibration_samples
    from edgemtl.stages import open_run

    run, recipe = open_run(tiny_run)
    samples = calibration_samples(av_data["train"], [t for t in recipe.tasks if not t.auxiliary], 12, recipe.seed)
    pre_processed, real = [], ort_quantization.quant_pre_process
    monkeypatch.setattr(ort_quantization, "quant_pre_process", lambda *a, **k: pre_processed.append(a) or real(*a, **k))
    with Converter(run, recipe, "teacher", samples=samples, cache=False) as c:
        whole = c.convert(ONNX_INT8).read_bytes()
        front = c.convert(ONNX_INT8, ("audio_logmel",)).read_bytes()
        assert len(pre_processed) == 1 and whole != front
        assert (c.workdir / "onnx-int8" / "int8-ranges.json").exists()
        fresh = c.workdir / "fresh.onnx"
        onnx_export.quantize_static(c.workdir / "fp32.onnx", fresh, onnx_export.onnx_samples(list(samples)),
                                    ("audio_logmel",))
        assert len(pre_processed) == 2 and fresh.read_bytes() == front


def test_tflite_conversion_around_the_variables_is_the_file_converted_around_the_keras_model(tiny_run, av_data,
                                                                                            tmp_path):
    """The converter saves the serving function with the model's variables only (not the Keras model, whose saving
    traces every layer): the same signature, tensors and answers."""
    import numpy as np

    from edgemtl.export import tflite
    from edgemtl.export.convert import load_exported
    from edgemtl.export.signature import serving_function
    from edgemtl.runtime.backends import open_runner
    from edgemtl.stages import open_run
    from edgemtl.tfk import tf

    run, recipe = open_run(tiny_run)
    model = load_exported(run, recipe, "teacher")
    around_keras = tf.lite.TFLiteConverter.from_concrete_functions([serving_function(model)], model)
    around_keras.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    (tmp_path / "keras.tflite").write_bytes(around_keras.convert())
    (tmp_path / "variables.tflite").write_bytes(tflite.convert(model, "fp32"))
    a, b = open_runner(tmp_path / "keras.tflite"), open_runner(tmp_path / "variables.tflite")
    assert list(a.inputs) == list(b.inputs) and list(a.outputs) == list(b.outputs)
    assert len(a.interpreter.get_tensor_details()) == len(b.interpreter.get_tensor_details())
    x = {k: v[:16] for k, v in av_data["test"].x.items()}
    out_a, out_b = a.run(x), b.run(x)
    for name in out_a:
        np.testing.assert_array_equal(out_a[name], out_b[name])
