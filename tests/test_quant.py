"""Int8 that holds: regression heads in label units, BatchNorm folded before QAT, the PTQ hand-over."""
import json

import numpy as np
import pytest

from conftest import FASHION_MINI_MODEL, write_recipe

# year in label units (~2011, std ~2): int8 used to hold it on a range from 0 (steps of ~8 years)
FASHION_YEAR = f"""
name: fashion_year
stages: [train, export]
{FASHION_MINI_MODEL}tasks:
  - {{name: masterCategory, type: multiclass}}
  - {{name: year, type: regression, min: 2000, max: 2030}}
training: {{epochs: 4, batch_size: 16, learning_rate: 0.01}}
# the gate's year tolerance is the 2 % of the std the int8 test below holds it to (the default 0.01 is 1 %)
export: {{formats: [tflite, onnx], precisions: [fp32, fp16, int8, int8io], tolerance: {{year: 0.02}}}}
"""


@pytest.fixture(scope="module")
def year_run(tmp_path_factory):
    from edgemtl.cli import main

    root = tmp_path_factory.mktemp("year")
    recipe = write_recipe(root, FASHION_YEAR, "fashion_year.yaml")
    assert main(["run", str(recipe), "--out", str(root / "run")]) == 0
    return root / "run"


def _parity(run, artifact: str) -> dict:
    return json.loads((run / "exports" / artifact / "parity.json").read_text())


def test_int8_regression_stays_within_two_percent_of_the_label_std(year_run):
    std = json.loads((year_run / "preprocess" / "labels.json").read_text())["year"]["std"]
    for fmt in ("tflite", "onnx"):
        fp32 = _parity(year_run, f"teacher-{fmt}-fp32")["tasks"]["year"]["artifact"]
        int8 = _parity(year_run, f"teacher-{fmt}-int8")
        assert int8["deployable"], (fmt, int8["reason"])
        assert not int8.get("kept_in_float")  # no fallback: the label-unit output alone stays in float
        assert abs(int8["tasks"]["year"]["artifact"] - fp32) <= 0.02 * std, (fmt, fp32, int8["tasks"]["year"])


def test_fp16_keeps_a_label_unit_regression_output(year_run):
    """fp16's step near 2011 is 1 year. TFLite: a mean stored as one fp16 constant moved every answer by up to half a
    year. ONNX: the converter declared the (float-computed) regression output fp16, rounding answers to whole years."""
    for fmt in ("tflite", "onnx"):
        fp32 = _parity(year_run, f"teacher-{fmt}-fp32")["tasks"]["year"]["artifact"]
        fp16 = _parity(year_run, f"teacher-{fmt}-fp16")
        assert fp16["deployable"], (fmt, fp16["reason"])
        assert abs(fp16["tasks"]["year"]["artifact"] - fp32) <= 0.01, (fmt, fp32, fp16["tasks"]["year"])
        # max_abs_diff is relative to the value for years: 1e-5 is 0.02 years (before: 1.4e-4 and 2.4e-4)
        assert fp16["tasks"]["year"]["max_abs_diff"] <= 1e-5, (fmt, fp16["tasks"]["year"])


def test_int8io_of_a_regression_model_says_why_without_trying_fallbacks(year_run):
    rejected = json.loads((year_run / "exports" / "rejected" / "teacher-tflite-int8io" / "parity.json").read_text())
    assert not rejected["deployable"] and rejected["fallback_tried"] == []
    assert rejected["reason"] == ("int8io: output 'year' is float32, not integer (the converter kept float I/O) "
                                  "(regression output year stays float32 in label units: export int8, with float "
                                  "I/O, for this model)")


def test_int8_tflite_body_is_integer_and_the_regression_output_float(year_run):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(year_run / "exports" / "teacher-tflite-int8" / "model.tflite"))
    ops = interpreter._get_ops_details()
    assert sum(np.int8 in op["operand_types"] for op in ops) >= len(ops) // 2
    year = interpreter.get_signature_runner().get_output_details()["year"]
    assert year["dtype"] == np.float32
    producer = next(op for op in ops if year["index"] in op["outputs"])
    assert producer["result_types"] == [np.float32]  # computed in float, not an int8 tensor dequantized


def test_bounds_clip_the_regression_output():
    from edgemtl.models.layers import Denormalize

    layer = Denormalize(2000.0, 10.0, low=1990.0, high=2010.0)
    out = layer(np.array([[-5.0], [0.5], [5.0]], np.float32)).numpy().reshape(-1)
    assert out.tolist() == [1990.0, 2005.0, 2010.0]
    assert Denormalize.from_config(layer.get_config()).high == 2010.0


@pytest.mark.parametrize("task, message", [
    ("{name: year, type: regression, min: 5, max: 5}", "tasks[0].min: 5.0 is not below max 5.0"),
    ("{name: year, type: multiclass, max: 5}", "tasks[0].max: bounds are for regression tasks, not multiclass"),
])
def test_bounds_are_checked(tmp_path, task, message):
    from edgemtl.errors import EdgemtlError
    from edgemtl.recipe import load_recipe

    text = FASHION_YEAR.replace("  - {name: masterCategory, type: multiclass}\n", "").replace(
        "  - {name: year, type: regression, min: 2000, max: 2030}", f"  - {task}")
    with pytest.raises(EdgemtlError) as e:
        load_recipe(write_recipe(tmp_path, text))
    assert message in str(e.value)


def test_batchnorm_folds_into_its_convolution_without_changing_the_outputs(year_run):
    from edgemtl.compress.prune import head_layers
    from edgemtl.compress.qat import fold_batchnorm, foldable_pairs, quantize_for_training
    from edgemtl.models.build import load_model
    from edgemtl.tfk import keras

    path = year_run / "models" / "teacher" / "model.keras"
    net = load_model(path)
    pairs = foldable_pairs(net)
    assert pairs == {"image_block0_bn": "image_block0_conv", "image_block1_bn": "image_block1_conv"}
    folded = fold_batchnorm(net)
    rng = np.random.default_rng(0)
    x = {"image": rng.integers(0, 256, (8, 32, 32, 3)).astype(np.uint8),
         "title": rng.integers(0, 40, (8, 12)).astype(np.int32)}
    ref, got = net.predict(x, verbose=0), folded.predict(x, verbose=0)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-4)
    qat = quantize_for_training(load_model(path), head_layers(net), pruned=False)
    assert not any(isinstance(x, keras.layers.BatchNormalization) for x in qat.layers)
    assert "quant_image_block0_conv" in {x.name for x in qat.layers}


def _int8_row(model, method, deployable, score):
    return {"model": model, "method": method, "deployable": deployable, "reason": "ok" if deployable else "drop",
            "tasks": {"digit": {"accuracy": score, "score": score, "n": 10}}}


@pytest.mark.parametrize("qat_deployable, qat_score, handed", [
    (True, 0.90, "student-qat"),  # passes and beats PTQ
    (True, 0.80, "student-qat"),  # a tie keeps QAT
    (True, 0.70, "student-pruned"),  # loses to PTQ
    (False, 0.95, "student-pruned"),  # better score, but fails the gate
])
def test_int8_hand_over_never_deploys_worse_than_ptq(qat_deployable, qat_score, handed):
    from edgemtl.reports.compress_report import int8_verdict

    rows = [_int8_row("student-pruned", "post-training int8", True, 0.80),
            _int8_row("student-qat", "quantization-aware int8", qat_deployable, qat_score)]
    verdict = int8_verdict(rows)
    assert verdict["model"] == handed
    if handed != "student-qat":
        assert ("fails the gate" if not qat_deployable else "loses to post-training int8") in verdict["why"]


def test_export_and_bench_take_the_handed_over_student(tmp_path):
    from edgemtl.compress.run import deployed_models
    from edgemtl.rundir import RunDir

    run = RunDir(tmp_path)
    assert deployed_models(run, ["teacher", "student-qat"]) == ["teacher", "student-qat"]  # no compress.json
    run.compress_json.write_text(json.dumps({"deployed_int8": {
        "model": "student-pruned", "instead_of": "student-qat", "why": "quantization-aware int8 loses"}}))
    assert deployed_models(run, ["teacher", "student-qat"]) == ["teacher", "student-pruned"]
    assert deployed_models(run, ["student-pruned", "student-qat"]) == ["student-pruned"]


def test_fallback_can_keep_the_trunk_and_heads_in_float_after_the_encoders(av_recipe):
    from edgemtl.export.formats import FORMATS
    from edgemtl.export.gate import fallback_candidates

    found = fallback_candidates(FORMATS["tflite"], "int8", av_recipe.inputs, True, av_recipe.tasks)
    after = ("fusion_", "trunk_", "digit", "speaker")
    assert found[:3] == [("audio_logmel",), ("audio_",), ("image_",)]
    assert found[4:] == [after, ("audio_logmel", *after), ("audio_", *after), ("image_", *after)]
    assert ("audio_", "image_", *after) not in found  # the whole model in float: no candidate
    assert fallback_candidates(FORMATS["tflite"], "fp16", av_recipe.inputs, True, av_recipe.tasks) == []
