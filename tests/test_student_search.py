"""compress.student.target_ms: the student's width chosen by measured latency (compress/student_search.py), on the
embedded fashion subset. Latencies are only compared with each other and with the targets built from them."""
import json

import pytest

from conftest import AV_RECIPE, FASHION_MINI_MODEL, set_args, write_recipe

SEARCH = f"""name: search_mini
{FASHION_MINI_MODEL}tasks:
  - {{name: gender, type: multiclass, match_labels: title}}
  - {{name: masterCategory, type: multiclass}}
compress: {{student: {{preset: small, target_ms: 1000.0}}}}
export: {{formats: [tflite], precisions: [fp32, int8]}}
"""
SCALES = (0.5, 1.0, 2.0)  # x 2 stem strides (the cnn image encoder has one): 6 candidates


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from edgemtl.compress.student import student_recipe
    from edgemtl.data.dataset import prepare
    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import RunDir

    root = tmp_path_factory.mktemp("search")
    recipe = load_recipe(write_recipe(root, SEARCH))  # root/recipe.yaml: the run's recipe the converter reads
    return RunDir(root), recipe, prepare(recipe), student_recipe(recipe)


@pytest.fixture(scope="module")
def measured(mini):
    """fp32 candidates (in-process conversions: the cheap path), any latency within the budget."""
    from edgemtl.compress.student_search import StudentSearch

    run, recipe, data, student = mini
    return StudentSearch(run, recipe, data, student, precision="fp32").run_search(1e6, scales=SCALES)


def test_candidates_scale_the_student_and_its_stem_stride(mini):
    from edgemtl.compress.student_search import candidates

    _, _, _, student = mini
    found = candidates(student, SCALES)
    assert [c.name for c in found] == ["x0.5/s1", "x1/s1", "x2/s1", "x0.5/s2", "x1/s2", "x2/s2"]
    one = next(c for c in found if c.name == "x1/s1")
    assert one.recipe.input("title").encoder == student.input("title").encoder  # x1 is the student as written
    two = next(c for c in found if c.name == "x2/s2")
    assert list(two.recipe.input("image").encoder.filters) == [2 * f for f in student.input("image").encoder.filters]
    assert two.recipe.input("image").encoder.stem_stride == 2
    assert two.recipe.trunk.units[0] == 2 * student.trunk.units[0]


def test_the_choice_is_the_largest_candidate_within_the_target(mini, measured):
    from edgemtl.compress.student_search import choose

    run, _, _, _ = mini
    found = measured.candidates
    assert len(found) == 6 and all(c.latency_ms > 0 and c.params > 0 and c.mflops > 0 for c in found)
    # a generous budget takes the candidate of most capacity: parameters, then MFLOPs (stride 1 at equal params)
    assert measured.record["chosen"] == "x2/s1" == max(found, key=lambda c: c.capacity).name
    assert measured.recipe.input("image").encoder.stem_stride == 1
    stored = json.loads(run.student_search.read_text())
    assert [r["chosen"] for r in stored["candidates"]].count(True) == 1 and stored["precision"] == "fp32"
    assert [r["params"] for r in stored["candidates"]] == sorted(r["params"] for r in stored["candidates"])
    # every measured latency as a target, and just below it: within the target, and nothing larger is
    for target in sorted({c.latency_ms for c in found} | {c.latency_ms * 0.999 for c in found}):
        fits = [c for c in found if c.latency_ms <= target]
        if not fits:
            continue
        chosen = choose(found, target)
        assert chosen.latency_ms <= target
        assert all(c.latency_ms > target for c in found if c.capacity > chosen.capacity)


def test_a_target_below_every_candidate_is_one_clear_error(mini, tmp_path):
    """int8, as the recipe exports it: random weights calibrated on real rows, converted in the child; a budget of
    1e-6 ms fits nothing."""
    from edgemtl.compress.student_search import StudentSearch, shipped_precision
    from edgemtl.errors import EdgemtlError

    run, recipe, data, student = mini
    assert shipped_precision(recipe) == "int8"
    search = StudentSearch(run, recipe, data, student)
    with pytest.raises(EdgemtlError) as e:
        search.run_search(1e-6, scales=(0.5,))
    message = e.value.messages[0]
    assert message.startswith("compress.student.target_ms: no candidate student runs within 1e-06 ms")
    fastest = float(message.split("takes ")[1].split(" ms")[0])
    assert fastest > 1e-6 and f"raise target_ms to at least {fastest:.4f}" in message
    assert not run.cache.exists()  # one-off conversions stay out of RUN/cache
    assert not list(run.root.glob(".tmp-*"))  # scratch folders gone


def test_without_target_ms_nothing_is_measured(mini):
    import dataclasses

    from edgemtl.compress.student_search import searched_student

    run, recipe, data, student = mini
    plain = dataclasses.replace(recipe, compress=dataclasses.replace(
        recipe.compress, student=dataclasses.replace(recipe.compress.student, target_ms=None)))
    before = sorted(p.name for p in run.root.iterdir())
    assert searched_student(run, plain, data, student, teacher_params=lambda: 1 / 0) is None
    assert sorted(p.name for p in run.root.iterdir()) == before


def test_a_bad_target_is_named():
    from edgemtl.errors import EdgemtlError
    from edgemtl.recipe import load_recipe

    with pytest.raises(EdgemtlError) as e:
        load_recipe(AV_RECIPE, ["compress.student.target_ms=0"])
    assert any("compress.student.target_ms" in m and "must be > 0" in m for m in e.value.messages)


def test_compress_stops_before_training_when_nothing_fits(tiny_run, tmp_path, capsys, monkeypatch):
    """The stage: the search runs first, and its error leaves no student behind (one width: 2 int8 candidates)."""
    import shutil

    from edgemtl.cli import main
    from edgemtl.compress import student_search

    monkeypatch.setattr(student_search, "SCALES", (0.5,))
    run = tmp_path / "av"
    shutil.copytree(tiny_run, run)
    assert main(["compress", str(run)] + set_args(["compress.student.target_ms=1e-6"])) == 2
    err = capsys.readouterr().err
    assert "compress.student.target_ms: no candidate student runs within 1e-06 ms" in err
    assert "Traceback" not in err
    assert not any((run / "models" / name).exists() for name in ("student", "student-scratch"))
