"""Kills: `kill -9` at named points of a write (EDGEMTL_TEST_KILL_AT, docs/testing.md), then the next start. No
finished file lost, no half file taken for done, no `.tmp-*` left once the next writing command has started, and
nothing in the system temp folder. The CI cases reuse the session run (atomic writes, pack, export); training,
compression and bench kills, and kills after random delays, are in the slow set."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import AV_RECIPE, DEMO, REPO, TINY_AV, set_args
from edgemtl.cli import main
from fuzz.test_runtime_fuzz import session_run  # noqa: F401 - fixture

KILLED = -signal.SIGKILL
BUNDLE = "teacher-onnx-fp32"


def _env(tmp_path, point: str | None = None) -> dict:
    temp = tmp_path / "system-temp"
    temp.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(temp), "OMP_NUM_THREADS": "1"}
    env.pop("EDGEMTL_TEST_KILL_AT", None)
    if point:
        env["EDGEMTL_TEST_KILL_AT"] = point
    return env


def _edgemtl(args: list, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgemtl", *map(str, args)], cwd=REPO, env=env, timeout=timeout,
                          capture_output=True, text=True)


def _no_edgemtl_temp(tmp_path) -> bool:
    """Nothing of edgemtl's in the system temp folder (TensorFlow's own autograph files may be there)."""
    return not list((tmp_path / "system-temp").glob("edgemtl-*"))


def _temporaries(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".tmp-*"))


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and ".tmp-" not in str(p) and p.name != ".lock"}


@pytest.fixture
def run(session_run, tmp_path):  # noqa: F811 - the imported fixture
    copy = tmp_path / "run"
    shutil.copytree(session_run, copy, ignore=shutil.ignore_patterns("single-*", "tensorboard", "bench", ".lock"))
    return copy


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_kill_before_the_rename_keeps_the_old_version(what, tmp_path):
    """The process dies with the new version complete under .tmp-<pid>-*: the old one is what is read, and the next
    write removes the temporary of the dead process."""
    from edgemtl.rundir import atomic_save, atomic_write_json

    target = tmp_path / ("metrics.json" if what == "file" else "bundle")
    write = (f"atomic_write_json({str(target)!r}, {{'new': 1}})" if what == "file" else
             f"atomic_save({str(target)!r}, lambda p: (p.mkdir(), (p / 'manifest.json').write_text('new')))")
    atomic_write_json(target, {"old": 1}) if what == "file" else \
        atomic_save(target, lambda p: (p.mkdir(), (p / "manifest.json").write_text("old")))
    done = subprocess.run([sys.executable, "-c", f"from edgemtl.rundir import *; {write}"], cwd=REPO,
                          env=_env(tmp_path, f"before-rename:{target.name}"))
    assert done.returncode == KILLED
    left = list(tmp_path.glob(f".tmp-*-{target.name}*"))
    assert len(left) == 1
    assert (json.loads(target.read_text()) == {"old": 1}) if what == "file" else \
        (target / "manifest.json").read_text() == "old"
    atomic_write_json(tmp_path / "other.json", {})  # the next write in the folder
    assert not left[0].exists()


def test_a_kill_in_pack_between_build_and_rename(run, tmp_path):
    out = tmp_path / "pack"
    assert main(["pack", str(run), str(out)]) == 0
    earlier = _files(out)
    done = _edgemtl(["pack", run, out, "--overwrite"], _env(tmp_path, "pack-before-rename"))
    assert done.returncode == KILLED, done.stderr[-2000:]
    assert _files(out) == earlier  # the earlier pack, whole
    assert [p.name for p in tmp_path.glob(".tmp-*")]  # the new one was complete beside it, never renamed
    assert main(["pack", str(run), str(out), "--overwrite"]) == 0
    assert not list(tmp_path.glob(".tmp-*")) and _files(out).keys() == earlier.keys()


def test_a_kill_in_export_between_bundle_build_and_rename(run, tmp_path, capsys):
    from edgemtl.bench.run import bundles
    from edgemtl.rundir import RunDir

    before = _files(run / "exports" / BUNDLE)
    env = _env(tmp_path, f"before-rename:{BUNDLE}")
    done = _edgemtl(["export", run, "--model", "teacher", "--format", "onnx", "--precision", "fp32"], env)
    assert done.returncode == KILLED, done.stderr[-2000:]
    left = _temporaries(run)
    assert any(t.startswith("exports/.tmp-") and t.endswith(BUNDLE) for t in left), left  # built, not renamed
    assert any(t.startswith(".tmp-") and "-export-" in t for t in left), left  # the scratch folder: in the run
    assert _no_edgemtl_temp(tmp_path)  # nothing leaked into the system temp folder
    assert _files(run / "exports" / BUNDLE) == before  # the earlier bundle, whole
    assert all(not b.name.startswith(".") for b in bundles(RunDir(run)))  # never measured
    assert main(["pack", str(run), str(tmp_path / "pack")]) == 0  # the next writing command: cleans, never packs it
    assert not _temporaries(run)
    assert not _temporaries(tmp_path / "pack")
    capsys.readouterr()


# ---- the slow set: real trainings killed and resumed ------------------------------------------------------------
TRAIN = ["train", AV_RECIPE] + set_args(TINY_AV + ["training.epochs=3", "stages=[train]"])


def _history(run: Path, model: str = "teacher") -> list:
    path = run / "models" / model / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _check_finished(run: Path, epochs: int, model: str = "teacher") -> None:
    rows = _history(run, model)
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1)), rows  # every epoch once, none lost
    folder = run / "models" / model
    assert (folder / "saved_model" / "saved_model.pb").exists() and not (folder / "backup").exists()
    assert not _temporaries(run)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["epoch-end:teacher#2", "before-rename:model.keras",
                                   "before-rename:saved_model", "before-rename:metrics.json"])
def test_a_killed_training_resumes_without_losing_a_finished_epoch(point, tmp_path):
    out = tmp_path / "run"
    done = _edgemtl(TRAIN + ["--out", out], _env(tmp_path, point))
    assert done.returncode == KILLED, done.stderr[-2000:]
    finished = _history(out)
    best = out / "models" / "teacher" / "model.keras"
    model = best.read_bytes() if best.exists() else None  # a kill at the first save: no best model yet
    resumed = _edgemtl(TRAIN + ["--out", out, "--resume"], _env(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _check_finished(out, 3)
    again = _history(out)
    complete = [r for r in finished if r["epoch"] < len(finished)]  # the last row may be redone (its backup came after)
    assert again[:len(complete)] == complete
    if point.startswith("before-rename:saved_model") or point.startswith("before-rename:metrics"):
        assert best.read_bytes() == model  # not retrained over
    assert _no_edgemtl_temp(tmp_path)


@pytest.mark.slow
def test_a_killed_training_resumed_over_a_damaged_checkpoint_keeps_the_best_model(tmp_path):
    out = tmp_path / "run"
    assert _edgemtl(TRAIN + ["--out", out], _env(tmp_path, "epoch-end:teacher#2")).returncode == KILLED
    for part in (out / "models" / "teacher" / "backup").rglob("*.data-*"):
        part.write_bytes(part.read_bytes()[:100])  # a step checkpoint cut short
    finished, model = _history(out), (out / "models" / "teacher" / "model.keras").read_bytes()
    resumed = _edgemtl(TRAIN + ["--out", out, "--resume"], _env(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step checkpoint cannot be restored" in resumed.stderr
    assert _history(out) == finished and (out / "models" / "teacher" / "model.keras").read_bytes() == model
    assert (out / "models" / "teacher" / "saved_model" / "saved_model.pb").exists()


@pytest.mark.slow
def test_a_killed_bench_keeps_the_earlier_results(run, tmp_path):
    data = ["--data", DEMO / "pairs.csv", "--runs", "2", "--threads", "1", "--backend", "litert"]
    assert main(["bench", str(run)] + [str(a) for a in data]) == 0
    earlier = (run / "bench" / "results.json").read_bytes()
    done = _edgemtl(["bench", run, *data], _env(tmp_path, "before-rename:results.json"))
    assert done.returncode == KILLED, done.stderr[-2000:]
    assert (run / "bench" / "results.json").read_bytes() == earlier
    assert main(["report", str(run)]) == 0  # the next start cleans
    assert not _temporaries(run) and _no_edgemtl_temp(tmp_path)


@pytest.mark.slow
def test_a_killed_compress_resumes(run, tmp_path):
    env = _env(tmp_path, "epoch-end:student-scratch#1")
    done = _edgemtl(["compress", run], env)
    assert done.returncode == KILLED, done.stderr[-2000:]
    resumed = _edgemtl(["compress", run, "--resume"], _env(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for model in ("student-scratch", "student"):
        assert (run / "models" / model / "saved_model" / "saved_model.pb").exists()
    assert not _temporaries(run)


@pytest.mark.slow
def test_random_kills_then_resume(tmp_path):
    """kill -9 after random delays, three times, resuming each time; then a resume that finishes."""
    out, rng = tmp_path / "run", random.Random(os.getpid())
    for attempt in range(3):
        args = TRAIN + ["--out", out] + (["--resume"] if attempt else [])
        proc = subprocess.Popen([sys.executable, "-m", "edgemtl", *map(str, args)], cwd=REPO, env=_env(tmp_path),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(8, 40))
        proc.kill()
        proc.wait()
    resumed = _edgemtl(TRAIN + ["--out", out, "--resume"] if (out / "recipe.yaml").exists() else TRAIN + ["--out", out],
                       _env(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _check_finished(out, 3)
    assert _no_edgemtl_temp(tmp_path)


def test_the_next_start_removes_what_dead_processes_left(tmp_path, monkeypatch):
    """Scratch folders of dead pids in every folder of the run and in the system temp folder (edgemtl-<what>-<pid>-*)
    go when a writing command takes the run lock; a live process's stay."""
    import tempfile

    from edgemtl.rundir import lock_run, release_run_locks

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    temp = tmp_path / "system-temp"
    run = tmp_path / "run"
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    stale = [temp / f"edgemtl-gate-{dead.pid}-abc", temp / f"edgemtl-onnx-int8-{dead.pid}-x",
             run / f".tmp-{dead.pid}-export-q", run / "models" / "teacher" / f".tmp-{dead.pid}-saved_model",
             run / "exports" / f".tmp-{dead.pid}-{BUNDLE}",
             run / "exports" / "rejected" / f".tmp-{dead.pid}-{BUNDLE}", run / "bench" / f".tmp-{dead.pid}-bench-z"]
    alive = [temp / f"edgemtl-gate-{os.getppid()}-abc", run / "exports" / f".tmp-{os.getppid()}-{BUNDLE}",
             temp / "unrelated-folder"]
    for folder in stale + alive:
        folder.mkdir(parents=True)
        (folder / "file").write_text("x")
    try:
        lock_run(run)
    finally:
        release_run_locks()
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in alive)
