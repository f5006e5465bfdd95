"""compress.student.target_ms: the student's width chosen by measured latency (compress/student_search.py), on the
embedded fashion subset. Latencies are only compared with each other and with the targets built from them."""
import json

import pytest

from conftest import AV_RECIPE, FASHION_MINI_MODEL, set_args, write_recipe

SEARCH = f"""name: search_mini
{FASHION_MINI_MODEL}tasks:
  - {{name: gender, type: multiclass, match_labels: title}}
  - {{name: masterCategory, type: multiclass}}
compress:
  student: {{preset: small, target_ms: 1000.0, encoders: {{image: [{{type: mobilenet, filters: [8, 16]}}]}}}}
export: {{formats: [tflite], precisions: [fp32, int8]}}
"""
SCALES = (0.5, 2.0)  # x (the cnn image encoder at 2 stem strides + the mobilenet alternative): 6 candidates


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
    """fp32 and dynamic-range candidates (in-process conversions: the cheap path), any latency within the budget."""
    from edgemtl.compress.student_search import StudentSearch

    run, recipe, data, student = mini
    return StudentSearch(run, recipe, data, student, precisions=("fp32", "dynamic")).run_search(1e6, scales=SCALES)


def test_candidates_scale_the_student_its_stem_stride_and_each_encoder(mini):
    from edgemtl.compress.student_search import candidates

    _, _, _, student = mini
    found = {c.name: c for c in candidates(student, (0.5, 1.0, 2.0))}
    assert list(found) == ["image cnn x0.5/s1", "image cnn x1/s1", "image cnn x2/s1", "image cnn x0.5/s2",
                           "image cnn x1/s2", "image cnn x2/s2", "image mobilenet x0.5", "image mobilenet x1",
                           "image mobilenet x2"]  # a mobilenet has no stem stride: one candidate per width
    one = found["image cnn x1/s1"]
    assert one.recipe.input("title").encoder == student.input("title").encoder  # x1 is the student as written
    two = found["image cnn x2/s2"]
    assert list(two.recipe.input("image").encoder.filters) == [2 * f for f in student.input("image").encoder.filters]
    assert two.recipe.input("image").encoder.stem_stride == 2
    assert two.recipe.trunk.units[0] == 2 * student.trunk.units[0]
    mobile = found["image mobilenet x2"].recipe
    assert mobile.input("image").encoder.type == "mobilenet" and list(mobile.input("image").encoder.filters) == [16, 32]
    assert mobile.input("title").encoder == two.recipe.input("title").encoder  # the other inputs scale alike


def without_encoders(recipe):
    import dataclasses

    return dataclasses.replace(recipe, compress=dataclasses.replace(
        recipe.compress, student=dataclasses.replace(recipe.compress.student, encoders={})))


def test_without_encoders_the_names_are_the_widths(mini):
    from edgemtl.compress.student_search import candidates

    _, _, _, student = mini
    names = [c.name for c in candidates(without_encoders(student), (0.5, 1.0))]
    assert names == ["x0.5/s1", "x1/s1", "x0.5/s2", "x1/s2"]


def test_the_choice_is_the_largest_candidate_within_the_target(mini, measured):
    from edgemtl.compress.student_search import choose

    run, _, _, _ = mini
    found = measured.candidates
    assert len(found) == 6 and all(c.latency_ms > 0 and c.params > 0 and c.mflops > 0 for c in found)
    # a candidate's time is its fastest file's: every precision on both kernel sets was timed
    for c in found:
        assert sorted(c.files) == ["dynamic builtin", "dynamic xnnpack", "fp32 builtin", "fp32 xnnpack"]
        assert c.latency_ms == min(c.files.values()) == c.files[f"{c.precision} {c.kernels}"]
    # a generous budget takes the candidate of most capacity: parameters, then MFLOPs (stride 1 at equal params)
    assert measured.record["chosen"] == max(found, key=lambda c: c.capacity).name
    stored = json.loads(run.student_search.read_text())
    assert [r["chosen"] for r in stored["candidates"]].count(True) == 1
    assert stored["precisions"] == ["fp32", "dynamic"]
    assert [r["params"] for r in stored["candidates"]] == sorted(r["params"] for r in stored["candidates"])
    # every measured latency as a target, and just below it: within the target, and nothing larger is
    for target in sorted({c.latency_ms for c in found} | {c.latency_ms * 0.999 for c in found}):
        fits = [c for c in found if c.latency_ms <= target]
        if not fits:
            continue
        chosen = choose(found, target)
        assert chosen.latency_ms <= target
        assert all(c.latency_ms > target for c in found if c.capacity > chosen.capacity)


def test_the_measurements_are_reused_for_any_target_on_the_same_cpu(mini, measured, monkeypatch):
    """A budget that fits nothing keeps the measurements (chosen: null); another budget then chooses from them
    without measuring again; another CPU measures again."""
    from edgemtl.compress import student_search
    from edgemtl.compress.student_search import StudentSearch
    from edgemtl.errors import EdgemtlError
    from edgemtl.runsafety import atomic_write_json

    run, recipe, data, student = mini
    atomic_write_json(run.student_search, measured.record)  # as the fixture left it (other tests write the file)

    def measured_again(*_):
        raise AssertionError("measured again")

    monkeypatch.setattr(StudentSearch, "measure", measured_again)
    search = StudentSearch(run, recipe, data, student, precisions=("fp32", "dynamic"))
    with pytest.raises(EdgemtlError) as e:
        search.run_search(1e-6, scales=SCALES)
    assert "the measurements stay in RUN/student_search.json" in e.value.messages[0]
    kept = json.loads(run.student_search.read_text())
    assert kept["chosen"] is None and kept["target_ms"] == 1e-6
    assert [r["latency_ms"] for r in kept["candidates"]] == [r["latency_ms"] for r in measured.record["candidates"]]
    smallest = min(measured.candidates, key=lambda c: c.capacity)
    again = search.run_search(smallest.latency_ms, scales=SCALES)
    assert again.record["chosen"] == max((c for c in measured.candidates if c.latency_ms <= smallest.latency_ms),
                                         key=lambda c: c.capacity).name
    monkeypatch.setattr(student_search, "describe_cpu", lambda cpu: "another CPU")
    with pytest.raises(AssertionError, match="measured again"):
        search.run_search(1e6, scales=SCALES)


def test_the_search_table_names_each_candidates_encoder_and_fastest_file(measured):
    from edgemtl.compress.student_search import search_table

    text = "\n".join(search_table(measured.record))
    assert "as fp32, dynamic TFLite" in text
    for c in measured.candidates:
        row = next(line for line in text.splitlines() if line.startswith(f"| {c.name} |"))
        assert f"image {c.recipe.input('image').encoder.type} filters" in row
        assert f"| {c.latency_ms:.4f} | {c.precision} | {c.kernels} |" in row


def test_a_speedup_budget_is_the_teachers_time_divided(mini, measured):
    """target_speedup: the budget is the teacher's measured time / the speedup, chosen as target_ms would be, and
    nothing fitting says how far to lower it; the table then shows each candidate's speedup."""
    from edgemtl.compress.student_search import Budget, choose, search_table
    from edgemtl.errors import EdgemtlError

    found = measured.candidates
    teacher_ms = 10 * max(c.latency_ms for c in found)
    for target in sorted({c.latency_ms for c in found}):
        speedup = teacher_ms / target * (1 - 1e-9)  # the budget a hair above the candidate's time
        budget = Budget(None, speedup, teacher_ms)
        assert budget.ms == pytest.approx(target) and choose(found, budget) is choose(found, budget.ms)
    fastest = min(c.latency_ms for c in found)
    with pytest.raises(EdgemtlError) as e:
        choose(found, Budget(None, 2 * teacher_ms / fastest, teacher_ms))
    message = e.value.messages[0]
    assert message.startswith("compress.student.target_speedup: no candidate student runs within "
                              f"{fastest / 2:.4f} ms (the teacher's fp32 TFLite {teacher_ms:.4f} ms / ")
    assert f"lower target_speedup to at most {teacher_ms / fastest:.2f}" in message
    record = {**measured.record, "target_speedup": 10.0, "teacher_ms": teacher_ms, "target_ms": teacher_ms / 10}
    text = "\n".join(search_table(record))
    assert f"target_speedup: 10, a budget of the teacher's fp32 TFLite {teacher_ms:.4f} ms / 10 =" in text
    assert "| x the teacher |" in text and f"| {teacher_ms / fastest:.1f}x |" in text


def test_compress_times_the_teacher_beside_the_candidates_for_a_speedup(tiny_run, tmp_path, capsys, monkeypatch):
    """The stage with target_speedup: the run's teacher fp32 file is timed in the same side-by-side measurement,
    the budget is its time / the speedup; nothing fitting stops before training, and another speedup then chooses
    from the stored measurements without measuring again."""
    import shutil

    from edgemtl.cli import main
    from edgemtl.compress import student_search
    from edgemtl.compress.student import student_recipe
    from edgemtl.data.dataset import prepare
    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import RunDir

    monkeypatch.setattr(student_search, "SCALES", (0.5,))
    run = tmp_path / "av"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("exports", "rejected"))
    assert main(["compress", str(run)] + set_args(["compress.student.target_speedup=1e6"])) == 2
    err = capsys.readouterr().err
    assert "compress.student.target_speedup: no candidate student runs within" in err and "Traceback" not in err
    assert not (run / "models" / "student").exists()
    stored = json.loads((run / "student_search.json").read_text())
    teacher_ms = stored["teacher_ms"]
    assert teacher_ms > 0 and stored["target_speedup"] == 1e6 and stored["target_ms"] == teacher_ms / 1e6
    fastest = min(c["latency_ms"] for c in stored["candidates"])
    assert f"lower target_speedup to at most {teacher_ms / fastest:.2f}" in err

    def measured_again(*_):
        raise AssertionError("measured again")

    monkeypatch.setattr(student_search.StudentSearch, "measure", measured_again)
    recipe = load_recipe(run / "recipe.yaml", ["compress.student.target_speedup=1e-3"])
    search = student_search.StudentSearch(RunDir(run), recipe, prepare(recipe), student_recipe(recipe), teacher=True)
    again = search.run_search(None, scales=(0.5,), speedup=1e-3)  # 1000x slower than the teacher: all fit
    assert again.record["teacher_ms"] == teacher_ms and again.record["target_ms"] == pytest.approx(teacher_ms * 1e3)
    assert again.record["chosen"] == max(again.candidates, key=lambda c: c.capacity).name
    assert again.record["within_budget"] is True
    # over_budget: fastest: the same unreachable speedup trains the fastest candidate and says by how much it misses
    missed = search.run_search(None, scales=(0.5,), speedup=1e6, over_budget="fastest")
    quickest = min(missed.candidates, key=lambda c: c.latency_ms)
    assert missed.record["chosen"] == quickest.name and missed.record["within_budget"] is False
    assert missed.recipe is quickest.recipe
    text = "\n".join(student_search.search_table(missed.record))
    assert (f"**no candidate is within the budget on this CPU**; compress.student.over_budget: fastest trained the "
            f"fastest, {quickest.name} ({quickest.latency_ms:.4f} ms, "
            f"{teacher_ms / quickest.latency_ms:.2f}x the teacher, not the 1e+06x asked)"
            in text)


@pytest.mark.parametrize("sets, message", [
    (["compress.student.target_ms=null"], "compress.student.encoders: only the latency search tries other encoders"),
    (["compress.student.target_speedup=10"], "compress.student.target_speedup: give the latency budget once"),
    (["compress.student.target_ms=null", "compress.student.over_budget=fastest"],
     "compress.student.over_budget: only the latency search has a budget to miss"),
    (["compress.student.over_budget=best"], "compress.student.over_budget: 'best' is not one of error, fastest"),
    (["compress.student.encoders={imag: [{type: cnn}]}"], "compress.student.encoders.imag: not an input of the "
                                                           "recipe (did you mean 'image'?)"),
    (["compress.student.encoders.image=[{type: mobilenett}]"], "compress.student.encoders.image.0.type: "
                                                               "'mobilenett' is not one of"),
    (["compress.student.encoders.image=[{filters: [8, -1]}]"], "compress.student.encoders.image.0.filters"),
])
def test_a_bad_encoder_alternative_is_named_when_the_recipe_loads(tmp_path, sets, message):
    from edgemtl.errors import EdgemtlError
    from edgemtl.recipe import load_recipe

    with pytest.raises(EdgemtlError) as e:
        load_recipe(write_recipe(tmp_path, SEARCH), sets)
    assert any(f"recipe.yaml: {message}" in m for m in e.value.messages), e.value.messages


def test_a_target_below_every_candidate_is_one_clear_error(mini, tmp_path):
    """fp32 and int8, as the recipe exports them (int8: random weights calibrated on real rows, converted in the
    child); a budget of 1e-6 ms fits nothing."""
    from edgemtl.compress.student_search import StudentSearch, timed_precisions
    from edgemtl.errors import EdgemtlError

    run, recipe, data, student = mini
    assert timed_precisions(recipe) == ("fp32", "int8")
    search = StudentSearch(run, recipe, data, without_encoders(student))  # 2 candidates
    with pytest.raises(EdgemtlError) as e:
        search.run_search(1e-6, scales=(0.5,))
    message = e.value.messages[0]
    assert message.startswith("compress.student.target_ms: no candidate student runs within 1e-06 ms")
    fastest = float(message.split("takes ")[1].split(" ms")[0])
    assert fastest > 1e-6 and f"raise target_ms to at least {fastest:.4f}" in message
    assert not run.cache.exists()  # one-off conversions stay out of RUN/cache
    assert not list(run.root.glob(".tmp-*"))  # scratch folders gone


def test_the_candidates_int8_files_share_one_conversion_child_and_stay_their_own(mini, tmp_path):
    """Every candidate's full-int8 file comes from one conversion child (TensorFlow imported once), and each is
    still its own model's: on the same rows it answers like its own fp32 file, not like another candidate's."""
    import numpy as np

    from edgemtl.compress.student_search import StudentSearch, candidates
    from edgemtl.export.child import ConversionChild
    from edgemtl.export.convert import calibration_samples
    from edgemtl.runtime.backends import open_runner

    run, recipe, data, student = mini
    search = StudentSearch(run, recipe, data, without_encoders(student), precisions=("fp32", "int8"))
    found = candidates(search.student, (0.5, 2.0))[:2]
    samples = calibration_samples(data["train"], list(student.tasks), 10, recipe.seed)
    child = ConversionChild(tmp_path / "worker.log")
    try:
        files = [search._convert(c, search._build(c, tmp_path / f"c{i}.keras"), i, 2, samples, tmp_path, child)
                 for i, c in enumerate(found)]
    finally:
        child.close()
    assert child.started == 1

    def outputs(path):
        runner = open_runner(path, 1)
        return np.concatenate([np.concatenate(list(runner.run(s).values()), axis=1) for s in samples])

    fp32, int8 = [outputs(f["fp32"]) for f in files], [outputs(f["int8"]) for f in files]
    for i in range(2):
        own, other = np.abs(int8[i] - fp32[i]).mean(), np.abs(int8[i] - fp32[1 - i]).mean()
        assert own < other, (i, own, other)


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
