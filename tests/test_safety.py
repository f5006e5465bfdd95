"""Nothing lost, nothing executed, no stray folder taken for an artifact (issue 21, items 1, 2 and 4)."""
import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fuzz.test_runtime_fuzz import session_run  # noqa: F401 - fixture (EDGEMTL_FUZZ_RUN)

from conftest import AV_RECIPE, DEMO, REPO, TINY_AV, set_args
from edgemtl.cli import main

BUNDLE = "teacher-onnx-fp32"


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(line.startswith("error: ") for line in err), err
    return "\n".join(err)


def _project(tmp_path) -> Path:
    """A user's project folder: their recipe and their data."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    shutil.copy(AV_RECIPE, project / "recipe.yaml")
    return project


# --- 1. data loss -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "run"])
def test_overwrite_never_deletes_a_folder_edgemtl_did_not_make(tmp_path, capsys, command):
    project = _project(tmp_path)
    before = sorted(p.name for p in project.iterdir())
    args = [command, str(AV_RECIPE), "--out", str(project), "--overwrite"] + set_args(TINY_AV)
    assert main(args) == 2
    err = _one_error(capsys)
    assert str(project) in err and "not a run directory made by edgemtl" in err
    assert sorted(p.name for p in project.iterdir()) == before
    assert (project / "notes.txt").read_text() == "mine"
    assert main(args[:-len(set_args(TINY_AV)) - 1] + set_args(TINY_AV)) == 2  # without --overwrite: not used either
    assert "not a run directory made by edgemtl" in _one_error(capsys)
    assert sorted(p.name for p in project.iterdir()) == before


def test_overwrite_refuses_a_run_holding_the_recipe_or_its_data(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".edgemtl-run").write_text("edgemtl 0.1.0\n")
    recipe = run / "my_recipe.yaml"
    recipe.write_text(AV_RECIPE.read_text())
    data = ["--set", f"data.source={DEMO / 'pairs.csv'}"]
    assert main(["train", str(recipe), "--out", str(run), "--overwrite"] + data + set_args(TINY_AV)) == 2
    err = _one_error(capsys)
    assert f"{run}: holds {recipe}" in err and recipe.exists()

    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import release_run_locks
    from edgemtl.stages import init_run

    copied = run / "data"
    shutil.copytree(DEMO, copied, ignore=shutil.ignore_patterns("images", "recordings"))
    in_run = load_recipe(AV_RECIPE, TINY_AV, data=copied / "pairs.csv")
    recipe.unlink()
    try:
        with pytest.raises(Exception, match="holds .*pairs.csv"):
            init_run(in_run, run, overwrite=True)
    finally:
        release_run_locks()
    assert (copied / "pairs.csv").exists()


def test_overwrite_replaces_a_run_of_an_earlier_version_and_marks_it(tmp_path):
    from edgemtl import __version__
    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import release_run_locks
    from edgemtl.stages import init_run

    old = tmp_path / "old"
    (old / "models" / "teacher").mkdir(parents=True)
    (old / "recipe.yaml").write_text("# recipe_hash: 0123456789abcdef\nname: x\n")  # made before run markers
    (old / "models" / "teacher" / "model.keras").write_text("old")
    try:
        run = init_run(load_recipe(AV_RECIPE, TINY_AV), old, overwrite=True)
    finally:
        release_run_locks()
    assert not (old / "models").exists() and run.recipe_hash() != "0123456789abcdef"
    assert (old / ".edgemtl-run").read_text() == f"edgemtl {__version__}\n"
    assert not list(old.glob(".tmp-*"))


def test_pack_refuses_the_run_itself_and_folders_around_it(tiny_run, tmp_path, capsys):
    before = sorted(str(p.relative_to(tiny_run)) for p in tiny_run.rglob("*"))
    for out in (tiny_run, tiny_run / "exports", tiny_run.parent):
        assert main(["pack", str(tiny_run), str(out), "--overwrite"]) == 2
        assert "pack cannot write into the run it packs" in _one_error(capsys)
    assert sorted(str(p.relative_to(tiny_run)) for p in tiny_run.rglob("*") if p.name != ".lock") == \
        [p for p in before if not p.endswith(".lock")]
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["pack", str(tiny_run), str(other), "--overwrite"]) == 2
    assert "not a folder 'edgemtl pack' made" in _one_error(capsys)
    assert (other / "keep.txt").read_text() == "mine"


def test_a_failing_pack_keeps_the_earlier_good_one(tiny_run, tmp_path, capsys):
    out = tmp_path / "pack"
    assert main(["pack", str(tiny_run), str(out)]) == 0
    capsys.readouterr()
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert ".edgemtl-pack" in files
    broken = tmp_path / "broken"
    shutil.copytree(DEMO, broken)
    for media in (broken / "images").glob("*.png"):
        media.unlink()  # whatever the test rows are, their images are gone
    assert main(["pack", str(tiny_run), str(out), "--overwrite", "--data", str(broken / "pairs.csv")]) == 2
    assert "not found" in _one_error(capsys)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == files  # the earlier pack, whole
    assert not list(tmp_path.glob(".tmp-*"))
    assert main(["pack", str(tiny_run), str(out), "--overwrite"]) == 0  # a pack it made is replaced
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == files


def _manifest(path: Path, rows: list) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["audio", "image"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _demo_rows(n: int) -> list:
    with open(DEMO / "pairs.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    return [{"audio": str(DEMO / r["audio"]), "image": str(DEMO / r["image"])} for r in rows]


def test_predict_manifest_failing_row_keeps_the_old_output_and_is_named(tiny_run, tmp_path, capsys):
    rows = _demo_rows(40)
    rows[36]["image"] = str(tmp_path / "missing.png")  # in the second batch of 32
    manifest = _manifest(tmp_path / "rows.csv", rows)
    out = tmp_path / "answers.csv"
    out.write_text("earlier answers\n")
    assert main(["predict", str(tiny_run / "exports" / BUNDLE), "--manifest", str(manifest), "--out", str(out)]) == 2
    err = _one_error(capsys)
    assert f"{manifest} row 37, column 'image'" in err
    assert out.read_text() == "earlier answers\n"
    assert not list(tmp_path.glob(".tmp-*"))


def test_predict_out_equal_to_the_manifest_is_refused(tiny_run, tmp_path, capsys):
    manifest = _manifest(tmp_path / "rows.csv", _demo_rows(3))
    before = manifest.read_text()
    for out in (manifest, tmp_path / "." / "rows.csv"):
        assert main(["predict", str(tiny_run / "exports" / BUNDLE), "--manifest", str(manifest),
                     "--out", str(out)]) == 2
        assert "is the manifest itself" in _one_error(capsys)
    assert manifest.read_text() == before


# --- 2. code execution --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A Keras model whose Lambda layer writes a marker file when its code runs: as .h5, as .keras, and as an HDF5
    file named .keras."""
    from edgemtl.tfk import keras

    root = tmp_path_factory.mktemp("planted")
    marker = root / "code-ran"
    code = f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), x)[1]"
    inp = keras.Input((28, 28, 1), name="image")
    out = keras.layers.Lambda(eval(code), name="image_lambda")(keras.layers.Rescaling(1.0, name="image_rescale")(inp))
    model = keras.Model(inp, out)
    marker.unlink(missing_ok=True)  # building the model called the function once
    model.save(root / "evil.h5")
    model.save(root / "evil.keras")
    shutil.copy(root / "evil.h5", root / "evil-hdf5.keras")
    keras.models.load_model(root / "evil.h5")  # the attack is real: tf_keras's legacy loader runs it
    assert marker.exists()
    marker.unlink()
    return root, marker


@pytest.mark.parametrize("name, message", [("evil.h5", "full Keras model in the legacy .h5 format"),
                                           ("evil.keras", "accepted: a .keras model"),
                                           ("evil-hdf5.keras", "edgemtl reads models only from .keras files")])
def test_encoder_weights_never_run_code(planted, capsys, name, message):
    root, marker = planted
    sets = TINY_AV + [f"inputs.image.encoder.weights={root / name}"]
    assert main(["check", str(AV_RECIPE)] + set_args(sets)) == 2
    err = _one_error(capsys)
    assert "inputs.image.encoder.weights" in err and message in err, err
    assert not marker.exists()


def test_a_model_h5_planted_in_a_run_is_refused_by_name(planted, tiny_run, tmp_path, capsys):
    root, marker = planted
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("exports", "single-*", "tensorboard"))
    planted_file = run / "models" / "teacher" / "model.h5"
    shutil.copy(root / "evil.h5", planted_file)
    for command in (["evaluate", str(run)], ["export", str(run), "--format", "tflite", "--precision", "fp32"]):
        assert main(command) == 2
        err = _one_error(capsys)
        assert str(planted_file) in err and "never loads legacy .h5 model files" in err
    (run / "models" / "teacher" / "model.keras").unlink()  # the only file there: still never loaded
    assert main(["evaluate", str(run)]) == 2
    assert str(planted_file) in _one_error(capsys)
    assert not marker.exists()


def test_weights_only_h5_files_are_accepted_as_encoder_weights(tmp_path):
    import numpy as np

    from edgemtl.data.dataset import prepare
    from edgemtl.models.build import build_model, numeric_stats
    from edgemtl.recipe import load_recipe

    recipe = load_recipe(AV_RECIPE, TINY_AV)
    data = prepare(recipe, rows_per_split=8)
    stats = numeric_stats(recipe, data["train"].x)
    source = build_model(recipe, data.labels, data.tokenizers, stats)
    rng = np.random.default_rng(0)
    source.set_weights([w + rng.normal(size=w.shape).astype(w.dtype) for w in source.get_weights()])  # "trained"
    source.save_weights(str(tmp_path / "encoder.h5"))
    again = load_recipe(AV_RECIPE, TINY_AV + [f"inputs.image.encoder.weights={tmp_path / 'encoder.h5'}"])
    model = build_model(again, data.labels, data.tokenizers, stats)
    image_layers = [layer for layer in model.layers if layer.name.startswith("image_") and layer.weights]
    assert image_layers
    for layer in image_layers:
        for got, want in zip(layer.get_weights(), source.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(got, want)
    audio = next(layer for layer in model.layers if layer.name.startswith("audio_") and layer.trainable_weights)
    assert not all(np.array_equal(a, b) for a, b in zip(audio.get_weights(),
                                                         source.get_layer(audio.name).get_weights()))


# --- 4. kill windows --------------------------------------------------------------------------------------------
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_dead_processes_are_removed_at_the_next_write(tmp_path):
    from edgemtl.rundir import atomic_save, atomic_write_json

    dead = tmp_path / f".tmp-{_dead_pid()}-teacher-tflite-fp32"
    dead.mkdir()
    (dead / "manifest.json").write_text("{}")
    stale_file = tmp_path / f".tmp-{_dead_pid()}-metrics.json.abc"
    stale_file.write_text("half")
    alive = tmp_path / f".tmp-{os.getppid()}-other"  # a live process's write in progress
    alive.mkdir()
    atomic_save(tmp_path / "bundle", lambda p: p.mkdir())
    assert not dead.exists() and not stale_file.exists() and alive.exists()
    dead.mkdir()
    atomic_write_json(tmp_path / "x.json", {})
    assert not dead.exists() and alive.exists()


def test_dot_folders_in_exports_are_never_benched_or_packed(tiny_run, tmp_path):
    from edgemtl.bench.run import bundles
    from edgemtl.rundir import RunDir

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("models"))
    shutil.copytree(run / "exports" / BUNDLE, run / "exports" / f".tmp-{os.getpid()}-{BUNDLE}")
    names = [b.name for b in bundles(RunDir(run))]
    assert BUNDLE in names and not any(n.startswith(".") for n in names)
    assert main(["pack", str(run), str(tmp_path / "pack")]) == 0
    assert not [p for p in (tmp_path / "pack" / "run" / "exports").iterdir() if p.name.startswith(".")]


def test_a_second_writer_on_a_run_gets_one_clear_error(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_run / "recipe.yaml", run / "recipe.yaml")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from edgemtl.rundir import lock_run; "
                               f"lock_run({str(run)!r}); print('held', flush=True); time.sleep(60)"],
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for command in (["evaluate", str(run)], ["export", str(run)], ["bench", str(run)]):
            assert main(command) == 2
            assert _one_error(capsys) == (f"error: {run} is in use by another edgemtl process (pid {holder.pid}); "
                                          f"wait for it to finish")
    finally:
        holder.kill()
        holder.wait()
    assert main(["evaluate", str(run)]) == 2  # the lock is free again: now the command's own error
    assert "in use" not in capsys.readouterr().err


def test_sigterm_during_export_leaves_no_temporary_folder(session_run, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(session_run, run, ignore=shutil.ignore_patterns("single-*", "tensorboard", ".lock"))
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "edgemtl", "export", str(run), "--format", "tflite,onnx",
                             "--precision", "fp32,fp16,dynamic"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and not list(run.glob(".tmp-*-export-*")) and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, "the export ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert not list(run.glob(".tmp-*")) and not list(temp.glob("edgemtl-*"))  # scratch folders are in the run
    assert not list((run / "exports").glob(".tmp-*"))


class _Killed(Exception):
    pass


def test_kill_while_the_finished_model_is_saved_then_resume_finishes_it(av_recipe, av_data, tmp_path, monkeypatch):
    """A kill during the SavedModel write, even one that leaves an empty backup/: --resume trains no epoch again
    and keeps the best model."""
    from edgemtl.rundir import RunDir
    from edgemtl.train import fit

    real = fit.atomic_save

    def killed_at_saved_model(path, save_fn):
        if Path(path).name == "saved_model":
            raise _Killed()
        return real(path, save_fn)

    monkeypatch.setattr(fit, "atomic_save", killed_at_saved_model)
    with pytest.raises(_Killed):
        fit.train_model(av_recipe, av_data, RunDir(tmp_path))
    monkeypatch.setattr(fit, "atomic_save", real)
    teacher = tmp_path / "models" / "teacher"
    assert (teacher / "backup").is_dir()  # kept until the model is finished
    shutil.rmtree(teacher / "backup")
    (teacher / "backup").mkdir()  # the worst case: an empty backup
    history = (teacher / "history.jsonl").read_text()
    best = (teacher / "model.keras").read_bytes()
    summary = fit.train_model(av_recipe, av_data, RunDir(tmp_path), resume=True)
    assert (teacher / "history.jsonl").read_text() == history
    assert (teacher / "model.keras").read_bytes() == best
    assert (teacher / "saved_model" / "saved_model.pb").exists() and not (teacher / "backup").exists()
    assert summary["epochs_run"] == av_recipe.training.epochs


# --- file modes, full disks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_the_umask_gives(umask, mode, session_run, tmp_path, capsys):  # noqa: F811
    from edgemtl.rundir import atomic_save, atomic_write_json

    run = tmp_path / "run"
    shutil.copytree(session_run, run, ignore=shutil.ignore_patterns("exports", "models", "cache", ".lock"))
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "x.json", {})
        atomic_save(tmp_path / "folder", lambda p: (p.mkdir(), (p / "f.txt").write_text("x")))
        assert main(["report", str(run)]) == 0
        manifest = _manifest(tmp_path / "rows.csv", _demo_rows(2))
        assert main(["predict", str(session_run / "exports" / BUNDLE), "--manifest", str(manifest),
                     "--out", str(tmp_path / "answers.csv")]) == 0
    finally:
        os.umask(old)
    for path in (tmp_path / "x.json", tmp_path / "folder" / "f.txt", run / "report.md", tmp_path / "answers.csv"):
        assert path.stat().st_mode & 0o777 == mode, f"{path}: {oct(path.stat().st_mode & 0o777)}"
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~umask
    capsys.readouterr()


def test_a_failing_write_keeps_the_old_file_and_names_it(tmp_path, monkeypatch):
    """Any OS error while writing (here a full disk, injected) removes the temporary and keeps the old file."""
    import errno

    from edgemtl import runsafety
    from edgemtl.errors import EdgemtlError

    target = tmp_path / "metrics.json"
    runsafety.atomic_write_json(target, {"old": 1})
    real = os.fdopen

    class Full:
        def __init__(self, fd, *a, **k):
            self.f = real(fd, *a, **k)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runsafety.os, "fdopen", Full)
    with pytest.raises(EdgemtlError, match=f"{target}: cannot write: the disk is full"):
        runsafety.atomic_write_json(target, {"new": 1})
    with pytest.raises(EdgemtlError, match="folder: cannot write: the disk is full"):
        runsafety.atomic_save(tmp_path / "folder", lambda p: (p.mkdir(), (_ for _ in ()).throw(
            OSError(errno.ENOSPC, "No space left on device"))))
    monkeypatch.undo()
    assert target.read_text() == '{\n  "old": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


@pytest.fixture
def full_disk(tmp_path):
    """A small tmpfs, filled up once the test has copied what it needs (mount needs root: skipped otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up here ({(done.stderr or done.stdout).strip()[:200]})")

    def fill():
        with open(disk / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        for size in (4096, 512, 1):  # the last partial blocks too
            try:
                with open(disk / f"filler-{size}", "wb") as f:
                    while True:
                        f.write(b"\0" * size)
                        f.flush()
            except OSError:
                pass

    yield disk, fill
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_one_error_and_loses_nothing(full_disk, session_run, capsys):  # noqa: F811
    disk, fill = full_disk
    run = disk / "run"
    shutil.copytree(session_run, run, ignore=shutil.ignore_patterns("single-*", "tensorboard", "saved_model", "cache",
                                                                 "rejected", "*-int8*", "*-fp16", "*-dynamic",
                                                                 "teacher-c-*", "bench", ".lock"))
    fill()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    for command, named in ((["report", run], "report.md"),
                           (["evaluate", run, "--model", "teacher"], str(run)),  # metrics.json (split.csv: older runs)
                           (["export", run, "--model", "teacher", "--format", "onnx", "--precision", "fp32"], str(run)),
                           (["train", AV_RECIPE, "--out", disk / "new"] + set_args(TINY_AV), str(disk / "new"))):
        assert main([str(a) for a in command]) == 2, command
        stderr = capsys.readouterr().err
        errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
        err = errors[0]
        assert named in err and "the disk is full" in err, err
        after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
        assert after == before, command  # every earlier file intact
        assert not list(disk.rglob(".tmp-*")), list(disk.rglob(".tmp-*"))


@pytest.mark.parametrize("error", ["oserror", "wrapped"])
def test_a_full_disk_anywhere_in_a_command_is_one_error_line(error, session_run, tmp_path, capsys, monkeypatch):  # noqa: F811
    """A write outside the atomic helpers (an append, a library's own file: TensorBoard, SavedModel) that hits a full
    disk ends the command with one line naming the file where the error does, not a traceback."""
    import errno

    from edgemtl.reports import run_report

    run = tmp_path / "run"
    shutil.copytree(session_run, run, ignore=shutil.ignore_patterns("exports", "models", "cache", ".lock"))
    events = str(run / "tensorboard" / "events")
    raised = (OSError(errno.ENOSPC, "No space left on device", events) if error == "oserror"
              else RuntimeError("ResourceExhausted: saved_model.pb: No space left on device"))

    def full(*a, **k):
        raise raised

    monkeypatch.setattr(run_report, "write_report", full)
    assert main(["report", str(run)]) == 2
    err = _one_error(capsys)
    assert "the disk is full" in err
    assert (events in err) if error == "oserror" else "a file of the command" in err
    monkeypatch.setattr(run_report, "write_report", lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError):  # anything else is not hidden
        main(["report", str(run)])


def test_scratch_folders_are_absolute_for_a_relative_run_path(tmp_path, monkeypatch):
    """The ONNX int8 quantizer runs with the working directory changed: a scratch path relative to the old one (a run
    given as `runs/x`, as the demo does) made its input file 'not found'."""
    from edgemtl.rundir import RunDir

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "x").mkdir(parents=True)
    scratch = RunDir(Path("runs/x")).scratch("export")
    assert scratch.is_absolute() and scratch.parent == (tmp_path / "runs" / "x").resolve()
