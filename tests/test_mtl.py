"""Task towers (trunk.type mmoe / ple) and the negative-transfer verdict (Δm, helped / hurt / neutral)."""
import json
import math

import numpy as np
import pytest

from conftest import FASHION_MINI_MODEL, write_recipe
from edgemtl.recipe.schema import TaskSpec
from edgemtl.reports.transfer import task_transfer, transfer

# ---- Δm and the verdict ---------------------------------------------------------------------------------------------

TASKS = [TaskSpec(name="colour", type="multiclass"), TaskSpec(name="kind", type="multiclass"),
         TaskSpec(name="age", type="regression")]


def test_delta_m_signs_by_direction_and_verdicts_use_the_spread():
    teacher = {"colour": {"accuracy": 0.60, "n": 2000}, "kind": {"accuracy": 0.905, "n": 2000},
               "age": {"mae": 4.0, "rmse": 5.0, "n": 2000}}
    single = {"colour": {"accuracy": 0.74, "n": 2000}, "kind": {"accuracy": 0.90, "n": 2000},
              "age": {"mae": 5.0, "rmse": 6.0, "n": 2000}}
    result = transfer(TASKS, teacher, single)
    expected = ((0.60 - 0.74) / 0.74 + (0.905 - 0.90) / 0.90 - (4.0 - 5.0) / 5.0) / 3
    assert result["delta_m"] == pytest.approx(expected)
    rows = result["tasks"]
    assert rows["age"]["lower_is_better"] and rows["age"]["relative_change"] == pytest.approx(0.2)
    # colour: 14 points on 2000 rows, far beyond 2 SE; kind: half a point, within 2 SE (about 1.9 points)
    assert rows["colour"]["verdict"] == "hurt" and rows["kind"]["verdict"] == "neutral"
    se_kind = math.sqrt(0.905 * 0.095 / 2000 + 0.9 * 0.1 / 2000)
    assert rows["kind"]["se"] == pytest.approx(se_kind)
    # MAE: SE from sqrt(RMSE^2 - MAE^2) / sqrt(n) of each model; a lower MAE by 1.0 helps
    assert rows["age"]["se"] == pytest.approx(math.sqrt((25 - 16) / 2000 + (36 - 25) / 2000))
    assert rows["age"]["verdict"] == "helped"
    assert result["hurt"] == ["colour"] and result["helped"] == ["age"] and result["neutral"] == ["kind"]


def test_verdict_with_a_measured_seed_spread_and_without_any():
    st = {"accuracy": 0.90, "n": 100}
    # a seed spread of 0.01 makes a 0.025 gain neutral (2 * 0.01 * sqrt 2 = 0.028); 0.035 is a gain
    assert task_transfer("accuracy", False, {"accuracy": 0.925, "n": 100}, st, spread=0.01)["verdict"] == "neutral"
    assert task_transfer("accuracy", False, {"accuracy": 0.935, "n": 100}, st, spread=0.01)["verdict"] == "helped"
    # an MAE without its RMSE has no SE: judged by direction alone
    row = task_transfer("mae", True, {"mae": 5.2, "n": 50}, {"mae": 5.0, "n": 50})
    assert row["se"] is None and row["verdict"] == "hurt" and row["relative_change"] == pytest.approx(-0.04)
    missing = task_transfer("accuracy", False, {"accuracy": None, "n": 0}, st)
    assert missing["verdict"] is None and missing["relative_change"] is None
    assert transfer(TASKS, {"colour": {"accuracy": 0.5, "n": 10}}, {}) is None


def test_dense_tasks_are_judged_by_map50_and_miou_over_their_test_rows():
    """Boxes and mask tasks: Δm and the verdict use mAP@0.5 and mIoU (not a missing accuracy), the SE binomial over
    the rows scored (the canvas table of bench/mtl_methods.py)."""
    tasks = [TaskSpec(name="boxes", type="boxes"), TaskSpec(name="mask", type="mask")]
    teacher = {"boxes": {"map50": 0.60, "map": 0.3, "n": 100}, "mask": {"miou": 0.25, "n": 100}}
    single = {"boxes": {"map50": 0.80, "map": 0.4, "n": 100}, "mask": {"miou": 0.22, "n": 100}}
    result = transfer(tasks, teacher, single)
    rows = result["tasks"]
    assert rows["boxes"]["metric"] == "map50" and rows["mask"]["metric"] == "miou"
    assert result["delta_m"] == pytest.approx(((0.60 - 0.80) / 0.80 + (0.25 - 0.22) / 0.22) / 2)
    # boxes: 20 points against 2 SE of about 12.6 on 100 rows; mask: 3 points within 2 SE of about 12
    assert rows["boxes"]["se"] == pytest.approx(math.sqrt(0.6 * 0.4 / 100 + 0.8 * 0.2 / 100))
    assert result["hurt"] == ["boxes"] and result["neutral"] == ["mask"]

def test_report_names_the_hurt_tasks_and_metrics_json_holds_the_numbers(tmp_path):
    """On a copy of a real run's metrics files: the teacher worse than its single-task model on one task."""
    from edgemtl.recipe import load_recipe
    from edgemtl.reports.run_report import write_report
    from edgemtl.rundir import RunDir

    recipe_path = write_recipe(tmp_path, f"""name: t
{FASHION_MINI_MODEL}tasks:
  - {{name: gender, type: multiclass}}
  - {{name: masterCategory, type: multiclass}}
  - {{name: year, type: regression, auxiliary: true}}
""")
    recipe = load_recipe(recipe_path)
    run = RunDir(tmp_path / "run")
    models = {"teacher": {"gender": 0.70, "masterCategory": 0.95},
              "single-gender": {"gender": 0.90}, "single-masterCategory": {"masterCategory": 0.95}}
    for name, accuracies in models.items():
        run.model_dir(name).mkdir(parents=True)
        test = {t: {"accuracy": a, "macro_f1": a, "n": 400} for t, a in accuracies.items()}
        run.metrics_file(name).write_text(json.dumps({"params": 10, "train_seconds": 1.0, "splits": {"test": test}}))
    text = write_report(run, recipe)
    assert "## Negative transfer" in text and "Multitask training hurts: gender." in text
    assert "loss_combination" in text and "trunk.type" in text  # the levers
    stored = json.loads(run.metrics_file("teacher").read_text())["transfer"]
    assert stored["hurt"] == ["gender"] and stored["neutral"] == ["masterCategory"]
    assert stored["delta_m"] == pytest.approx((0.70 - 0.90) / 0.90 / 2)


# ---- task towers ----------------------------------------------------------------------------------------------------

TOWER_RECIPE = """
name: towers
stages: [train, export]
{model}tasks:
  - {{name: gender, type: multiclass}}
  - {{name: masterCategory, type: multiclass}}
training: {{epochs: 1, batch_size: 16, learning_rate: 0.01}}
export: {{formats: [tflite, onnx], precisions: [int8], model: teacher, default_tolerance: 0.1}}
"""


def _tower_recipe(tmp_path, trunk: str):
    model = FASHION_MINI_MODEL.replace("trunk: {units: [32]}", trunk)
    return write_recipe(tmp_path, TOWER_RECIPE.format(model=model))


def test_ple_levels_mix_own_and_shared_experts(tmp_path):
    from edgemtl.data.dataset import prepare
    from edgemtl.models.build import build_model, numeric_stats
    from edgemtl.models.towers import last_shared
    from edgemtl.recipe import load_recipe

    recipe = load_recipe(_tower_recipe(tmp_path, "trunk: {type: ple, units: [16, 8], experts: 2, task_experts: 1}"))
    data = prepare(recipe, rows_per_split=20)
    net = build_model(recipe, data.labels, data.tokenizers, numeric_stats(recipe, data["train"].x))
    names = {layer.name for layer in net.layers}
    # level 0: a gate per task and a shared gate over 2 + 2 experts; level 1 (the last): task gates only
    assert {"trunk_gate_l0_gender", "trunk_gate_l0_masterCategory", "trunk_gate_l0_shared",
            "trunk_gate_l1_gender", "trunk_gate_l1_masterCategory"} <= names
    assert "trunk_gate_l1_shared" not in names
    assert net.get_layer("trunk_gate_l0_shared").output.shape[-1] == 4
    assert net.get_layer("trunk_gate_l1_gender").output.shape[-1] == 3  # its own expert + 2 shared
    out = net({k: v[:4] for k, v in data["train"].x.items()})
    assert all(np.isfinite(v.numpy()).all() for v in out.values())
    last = {v.name.split("/")[0] for v in last_shared(net.trainable_variables)}
    assert last == {"trunk_l1_shared0", "trunk_l1_shared1"}


def test_mmoe_trains_and_exports_int8_with_builtin_ops(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from edgemtl.cli import main

    recipe = _tower_recipe(tmp_path, "trunk: {type: mmoe, units: [16], experts: 3}")
    # ONNX int8 of the towers: the slow PLE test (each int8 export calibrates and gates: seconds of CI)
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--set", "export.formats=[tflite]"]) == 0
    run = tmp_path / "run"
    metrics = json.loads((run / "models/teacher/metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and math.isfinite(metrics["val"]["loss"])
    for fmt in ("tflite",):
        parity = json.loads((run / f"exports/teacher-{fmt}-int8/parity.json").read_text())
        assert parity["deployable"] and not parity.get("kept_in_float"), (fmt, parity)
    ops = Interpreter(model_path=str(run / "exports/teacher-tflite-int8/model.tflite"))._get_ops_details()
    names = {op["op_name"] for op in ops}
    assert not any(n.startswith("Flex") or n == "CUSTOM" for n in names), names
    mixing = [op for op in ops if op["op_name"] in ("PACK", "SUM")]  # the experts' stack (shared), a sum per task
    assert sum(op["op_name"] == "SUM" for op in mixing) == 2 and any(op["op_name"] == "PACK" for op in mixing)
    assert all(np.int8 in op["operand_types"] for op in mixing), mixing


@pytest.mark.parametrize("trunk", ["trunk: {type: mmoe, units: [16], experts: 3}",
                                   "trunk: {type: ple, units: [16, 8], experts: 2, task_experts: 1}"])
def test_a_tower_student_starts_from_the_teachers_experts_gates_and_heads(tmp_path, trunk):
    """Weight selection follows the kept channels through each expert mixture (the gate weighs the experts, it adds
    no channel): the heads after it take the teacher's weights too; at the teacher's width the student answers as
    the teacher does."""
    from edgemtl.compress.selection import select_from_teacher
    from edgemtl.compress.student import student_recipe
    from edgemtl.data.dataset import prepare
    from edgemtl.models.build import build_model, numeric_stats
    from edgemtl.recipe import load_recipe

    path = _tower_recipe(tmp_path, trunk)
    recipe = load_recipe(path)
    data = prepare(recipe, rows_per_split=20)
    stats = numeric_stats(recipe, data["train"].x)
    teacher = build_model(recipe, data.labels, data.tokenizers, stats)
    x = {k: v[:8] for k, v in data["test"].x.items()}
    for preset in ("none", "small"):
        student = student_recipe(load_recipe(path, [f"compress.student.preset={preset}"]))
        net = build_model(student, data.labels, data.tokenizers, stats, student.tasks, "student")
        done, left = select_from_teacher(net, teacher)
        assert left == [] and {"gender", "masterCategory"} <= set(done), (preset, left)
        assert any(n.startswith("trunk_gate_") for n in done)
        if preset == "none":
            ours, theirs = net.predict(x, verbose=0), teacher.predict(x, verbose=0)
            assert all(np.allclose(ours[t], theirs[t], atol=1e-6) for t in theirs)


@pytest.mark.slow
def test_ple_trains_and_exports_int8_tflite_and_onnx(tmp_path):
    from edgemtl.cli import main

    recipe = _tower_recipe(tmp_path, "trunk: {type: ple, units: [16, 16], experts: 2}")
    assert main(["run", str(recipe), "--out", str(tmp_path / "run")]) == 0
    for fmt in ("tflite", "onnx"):
        parity = json.loads((tmp_path / f"run/exports/teacher-{fmt}-int8/parity.json").read_text())
        assert parity["deployable"], (fmt, parity)
