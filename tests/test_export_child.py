"""The conversion child: one child serves a model's full-int8 conversions (what a fresh child per conversion would
write), a crash fails only its own job, a converter error is that job's message and the child keeps serving."""
import json
import sys

import pytest

from edgemtl.artifacts import ArtifactId
from edgemtl.errors import EdgemtlError

INT8 = ArtifactId("teacher", "tflite", "int8")
CRASH = "import os, signal, sys; sys.stdin.readline(); os.kill(os.getpid(), signal.SIGSEGV)"


@pytest.fixture
def converter(tiny_run, av_data):
    """The demo teacher's converter, outside RUN/cache (every conversion below runs in the child)."""
    from edgemtl.export.convert import Converter, calibration_samples
    from edgemtl.stages import open_run

    run, recipe = open_run(tiny_run)
    tasks = [t for t in recipe.tasks if not t.auxiliary]
    samples = calibration_samples(av_data["train"], tasks, 12, recipe.seed)
    made = []

    def make():
        made.append(Converter(run, recipe, "teacher", samples=samples, cache=False))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_one_child_converts_every_int8_variant_as_a_fresh_child_would(converter):
    shared = converter()
    whole = shared.convert(INT8).read_bytes()
    front = shared.convert(INT8, ("audio_logmel",)).read_bytes()
    assert shared.child.started == 1 and whole != front  # two conversions, one child
    alone = converter()
    assert alone.convert(INT8, ("audio_logmel",)).read_bytes() == front  # nothing carried over between jobs
    assert alone.child.started == 1


def test_a_crash_fails_only_its_job_and_the_next_job_gets_a_fresh_child(converter, monkeypatch):
    from edgemtl.export.child import ConversionChild

    real, starts = ConversionChild.command, []

    def first_crashes(self):  # the first child started dies on its job (a segfault); later ones are real
        starts.append(self)
        return [sys.executable, "-c", CRASH] if len(starts) == 1 else real(self)

    monkeypatch.setattr(ConversionChild, "command", first_crashes)
    c = converter()
    with pytest.raises(EdgemtlError, match=r"teacher: TFLite int8 conversion crashed \(signal 11\)"):
        c.convert(INT8)
    assert c.convert(INT8).stat().st_size > 0 and c.child.started == 2


def test_a_converter_error_is_the_jobs_message_and_the_child_stays(converter, tmp_path):
    c = converter()
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"model": str(tmp_path / "missing.keras"), "recipe": str(c.run.recipe),
                               "precision": "int8", "samples": str(tmp_path / "none.npz"), "keep_float": [],
                               "out": str(tmp_path / "out.tflite")}))
    done = c.child.run(job)
    assert not done.ok and done.how == "failed" and "missing.keras" in done.message, done
    assert c.convert(INT8).stat().st_size > 0 and c.child.started == 1  # the same child converted the next job


def test_variants_kept_in_float_share_one_calibration_and_match_the_quantization_debugger(converter, monkeypatch):
    """Two parts-in-float variants of one model: calibrated once; each file is what TFLite's QuantizationDebugger
    makes with the same denylist."""
    from tensorflow.lite.python import convert as lite_convert

    from edgemtl.export import tflite
    from edgemtl.tfk import tf

    c = converter()
    model, samples = c.model, list(c.samples)
    denied, real_quantize = [], lite_convert.mlir_quantize
    monkeypatch.setattr(lite_convert, "mlir_quantize", lambda *a, **k: denied.append(k["denylisted_nodes"])
                        or real_quantize(*a, **k))
    monkeypatch.setattr(tflite, "_last", [])
    front = tflite.convert(model, "int8", samples, ("audio_logmel",))
    calibrated = tflite._last[0][-1]
    encoder = tflite.convert(model, "int8", samples, ("audio_logmel", "image_"))
    assert tflite._last[0][-1] is calibrated and front != encoder and len(denied[1]) > len(denied[0])
    monkeypatch.setattr(lite_convert, "mlir_quantize", real_quantize)
    for names, made in zip(denied, (front, encoder)):
        conv = tflite._converter(model, "int8", lambda: iter(samples))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=conv, debug_dataset=lambda: iter([]),
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=names))
        assert debugger.get_nondebug_quantized_model() == made


def test_the_first_int8_file_is_sent_ahead_and_is_what_convert_would_make(converter):
    c = converter()
    c.prepare([ArtifactId("teacher", "tflite", "fp32"), ArtifactId("teacher", "onnx", "int8")])  # no child needed
    assert c.child.started == 0 and c.child.pending is None
    c.prepare([ArtifactId("teacher", "c", "int8")])  # the C array wraps int8io, made from the int8 file
    assert c.child.started == 1 and c.child.pending is not None  # converting while this process goes on
    ahead = c.convert(INT8).read_bytes()
    assert c.child.started == 1 and c.child.pending is None and not c.ahead
    assert converter().convert(INT8).read_bytes() == ahead


def test_a_crash_of_the_job_sent_ahead_is_reported_by_the_conversion_that_needs_it(converter, monkeypatch):
    from edgemtl.export.child import ConversionChild

    monkeypatch.setattr(ConversionChild, "command", lambda self: [sys.executable, "-c", CRASH])
    c = converter()
    c.prepare([ArtifactId("teacher", "tflite", "int8io")])  # no error yet: the job runs in the background
    with pytest.raises(EdgemtlError, match=r"teacher: TFLite int8 conversion crashed \(signal 11\)"):
        c.convert(ArtifactId("teacher", "tflite", "int8io"))
