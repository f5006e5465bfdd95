"""Issue 20: the gate decides. Pinned runtime configuration with bit-identical answers, the verdict governing
export / run / bench / load, the gate's candidates run in a child process, int8io really integer I/O."""
import dataclasses
import json
import logging
import shutil
import subprocess
import sys

import pytest

from conftest import AV_RECIPE, TINY_AV, set_args
from edgemtl.cli import main
from edgemtl.errors import EdgemtlError
from edgemtl.export import gate, parity
from edgemtl.runtime import load
from edgemtl.runtime.backends import outputs_digest, run_batched
from edgemtl.runtime.manifest import KERNELS, BundleManifest, ParityReport

INT8 = "teacher-tflite-int8"


def _digest(model, x) -> str:
    outputs = run_batched(model.runner, x, parity.GATE_BATCH)
    return outputs_digest(outputs, [o.task for o in model.manifest.outputs])


def test_an_int8_bundle_answers_bit_identically_on_every_load_as_its_gate_measured(tiny_run, av_data):
    bundle = tiny_run / "exports" / INT8
    gate_digest = ParityReport.read(bundle).outputs_digest
    pinned = BundleManifest.read(bundle).runtime
    assert gate_digest and pinned.kernels in KERNELS and pinned.threads == parity.GATE_THREADS
    assert pinned.chosen_by == "measured" and pinned.measured_on and set(pinned.timings_ms) == set(KERNELS)
    x = av_data["test"].x
    digests = [_digest(load(bundle), x) for _ in range(9)]  # fresh runtime objects
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # a busy machine at load time
    try:
        digests.append(_digest(load(bundle), x))
    finally:
        burner.kill()
        burner.wait()
    assert digests == [gate_digest] * 10


def test_other_kernels_run_only_when_asked_and_say_they_are_unverified(tiny_run, caplog):
    bundle = tiny_run / "exports" / INT8
    pinned = BundleManifest.read(bundle).runtime.kernels
    other = next(k for k in KERNELS if k != pinned)
    with caplog.at_level(logging.WARNING, logger="edgemtl"):
        assert load(bundle).runner.kernels == pinned
        assert "unverified" not in caplog.text
        assert load(bundle, kernels=other).runner.kernels == other
    assert "unverified" in caplog.text and f"kernels {other} (verified: {pinned})" in caplog.text


def test_a_version_1_bundle_is_read_with_unpinned_defaults(tiny_run, tmp_path, caplog):
    old = tmp_path / "old"
    shutil.copytree(tiny_run / "exports" / INT8, old)
    data = json.loads((old / "manifest.json").read_text())
    data["schema_version"] = 1
    for key in ("runtime", "selection", "memory"):  # sections of later versions (selection: where this file was
        data.pop(key, None)                          # the export's timed recommendation on this CPU)
    (old / "manifest.json").write_text(json.dumps(data))
    runtime = BundleManifest.read(old).runtime
    assert not runtime.pinned and runtime.kernels == "auto" and "not pinned" in runtime.note
    with caplog.at_level(logging.WARNING, logger="edgemtl"):
        load(old)
    assert "not pinned" in caplog.text


@pytest.fixture(scope="module")
def failed_export(tiny_run, tmp_path_factory, request):
    """A copy of the run re-exported as tflite int8 with the digit tolerance below any drop: the gate fails."""
    run = tmp_path_factory.mktemp("trust") / "av"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("rejected"))
    before = (run / "exports" / INT8 / "model.tflite").read_bytes()
    patch = pytest.MonkeyPatch()
    real = gate.gate_data
    patch.setattr(gate, "gate_data", lambda *a: dataclasses.replace(real(*a), tolerance={"digit": -1.0,
                                                                                          "speaker": 1.0}))
    patch.setattr(gate, "fallback_candidates", lambda *a: [])  # no float fallback to search: one conversion
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["export", str(run), "--format", "tflite", "--precision", "int8"])
    patch.undo()
    return run, code, out.getvalue(), err.getvalue(), before


def test_export_exits_3_listing_what_failed_and_keeps_the_deployable_bundle(failed_export):
    run, code, out, err, before = failed_export
    assert code == 3
    assert f"error: {INT8}: not deployable: digit:" in err and "rejected/" in err
    assert INT8 in out and "FAIL" in out  # the table is printed before the error lines
    kept = run / "exports" / INT8
    assert BundleManifest.read(kept).deployable and (kept / "model.tflite").read_bytes() == before
    rejected = run / "exports" / "rejected" / INT8
    report = ParityReport.read(rejected)
    assert not report.deployable and report.reason.startswith("digit:")
    assert not BundleManifest.read(rejected).deployable


def test_load_refuses_an_undeployable_bundle_unless_allowed(failed_export, capsys):
    rejected = failed_export[0] / "exports" / "rejected" / INT8
    with pytest.raises(EdgemtlError, match="failed the parity gate and is not deployable .*digit:"):
        load(rejected)
    assert load(rejected, allow_undeployable=True).manifest.artifact.name == INT8
    sample = ["--audio", str(AV_RECIPE.parents[1] / "demo/av_digits/recordings/0_george_0.wav"),
              "--image", str(AV_RECIPE.parents[1] / "demo/av_digits/images/0000.png")]
    capsys.readouterr()
    assert main(["predict", str(rejected), *sample]) == 2
    assert "allow-undeployable" in capsys.readouterr().err
    assert main(["predict", str(rejected), "--allow-undeployable", *sample]) == 0
    assert "digit:" in capsys.readouterr().out


def test_bench_leaves_out_a_failed_artifact_and_says_so(failed_export, tmp_path):
    run = tmp_path / "av"
    shutil.copytree(failed_export[0], run, ignore=shutil.ignore_patterns("*-fp16", "*-dynamic", "*-c-*",
                                                                         "*-onnx-*", "*-int8io"))
    # an older export left a failed bundle in exports/ itself: bench must not measure it either
    stale = run / "exports" / INT8 / "manifest.json"
    data = json.loads(stale.read_text())
    data["parity"] = {"deployable": False, "reason": "digit: forced failure"}
    stale.write_text(json.dumps(data))
    assert main(["bench", str(run), "--backend", "litert", "--runs", "3", "--threads", "1", "--batch", "2",
                 "--student", INT8]) == 0
    results = json.loads((run / "bench" / "results.json").read_text())
    assert {e["artifact"] for e in results["excluded"]} == {INT8}
    assert INT8 not in {r["artifact"] for r in results["rows"]} and INT8 not in results["sizes"]
    assert "teacher-tflite-fp32" in {r["artifact"] for r in results["rows"]}
    report = (run / "bench" / "report.md").read_text()
    assert f"- `{INT8}`: digit: forced failure" in report and "Excluded (failed the parity gate" in report


def test_run_ends_with_what_is_deployable_and_exits_3_without_a_deployable_model(tmp_path, monkeypatch, capsys):
    real = gate.gate_data
    monkeypatch.setattr(gate, "gate_data", lambda *a: dataclasses.replace(real(*a), tolerance={
        name: -1.0 for name in real(*a).tolerance}))
    monkeypatch.setattr(gate, "fallback_candidates", lambda *a: [])
    overrides = TINY_AV + ["training.epochs=1", "stages=[train,export,bench]", "export.model=teacher",
                           "export.formats=[tflite]", "export.precisions=[int8]"]
    code = main(["run", str(AV_RECIPE), "--out", str(tmp_path / "run")] + set_args(overrides))
    captured = capsys.readouterr()
    assert code == 3
    assert "deployable: none; not deployable: teacher-tflite-int8" in captured.out
    assert "no deployable artifact of teacher" in captured.err
    assert (tmp_path / "run" / "exports" / "rejected" / INT8 / "parity.json").exists()
    assert not (tmp_path / "run" / "exports" / INT8).exists()


def test_a_candidate_that_crashes_its_runtime_fails_the_gate_with_the_reason(tiny_run, av_data, tmp_path,
                                                                             monkeypatch):
    x = {k: v[:4] for k, v in av_data["test"].x.items()}
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes((tiny_run / "exports" / INT8 / "model.tflite").read_bytes()[:3000])
    outputs, facts = parity.run_candidate(truncated, x)
    assert outputs is None and "truncated.tflite" in facts["error"]
    killed = "import os, signal; os.kill(os.getpid(), signal.SIGABRT)"  # what a by-hand int8 file did to LiteRT
    monkeypatch.setattr(parity, "worker_command", lambda job, runtime=None: [sys.executable, "-c", killed])
    test = av_data["test"]
    verdict = parity.check(tiny_run / "exports" / INT8 / "model.tflite", "int8", test.x, test.y, {}, [], {}, {})
    assert not verdict["deployable"] and "crashed (signal 6)" in verdict["reason"]


def test_int8io_bundles_have_integer_io_and_the_c_array_wraps_them(tiny_run):
    exports = tiny_run / "exports"
    io = BundleManifest.read(exports / "teacher-tflite-int8io").quantization.io
    # integer I/O: int8 / uint8, and int16 PCM for an audio input whose front-end stays float (export/pcm.py)
    assert {q.dtype for n, q in io.items() if n != "audio"} <= {"int8", "uint8"}, io
    assert io["audio"].dtype in ("int8", "int16"), io
    c = BundleManifest.read(exports / "teacher-c-int8")
    assert c.quantization.wraps == "int8io" and c.quantization.io is not None
    # the very file its TFLite bundle holds, the one the int8io verdict judged
    c_file, io_file = (exports / b / "model.tflite" for b in ("teacher-c-int8", "teacher-tflite-int8io"))
    assert c_file.read_bytes() == io_file.read_bytes()
    assert c.quantization.io == io


def test_float_io_makes_an_int8io_file_not_deployable():
    facts = {"inputs": ["audio", "image"], "io": {"audio": {"dtype": "float32"}, "image": {"dtype": "int8"},
                                                  "digit": {"dtype": "float32"}}}
    problems = parity.int8io_problems(facts)
    assert problems == ["int8io: input 'audio' is float32, not integer (the converter kept float I/O)",
                        "int8io: output 'digit' is float32, not integer (the converter kept float I/O)"]
