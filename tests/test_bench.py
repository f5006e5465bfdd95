"""edgemtl bench: the harness on a real tiny run, its reports, and the statistics it prints."""
import json
import shutil

import numpy as np
import pytest

from conftest import DEMO
from edgemtl.bench.backends import BACKENDS, unavailable
from edgemtl.bench.timing import percentiles, time_calls
from edgemtl.cli import main


@pytest.fixture(scope="session")
def benched(tiny_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("bench") / "av"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("*-fp16", "*-dynamic", "*-c-*"))
    assert main(["bench", str(run), "--runs", "5", "--threads", "1", "--batch", "4",
                 "--student", "teacher-tflite-int8", "--keras"]) == 0
    return run


def test_percentiles_on_a_known_sample():
    stats = percentiles(np.arange(1, 101) / 1000.0)  # 1..100 ms
    assert stats["p50"] == pytest.approx(50.5) and stats["p90"] == pytest.approx(90.1)
    assert stats["p99"] == pytest.approx(99.01) and stats["mean"] == pytest.approx(50.5) and stats["n"] == 100


def test_timed_calls_stop_at_the_time_limit_but_not_before_the_minimum():
    import time

    calls = time_calls(lambda: time.sleep(0.01), warmup=0, runs=500, max_seconds=0.05, min_runs=3)
    assert 3 <= len(calls) <= 8
    assert len(time_calls(lambda: time.sleep(0.01), warmup=0, runs=500, max_seconds=0.0, min_runs=4)) == 4


def test_every_present_backend_measures_every_artifact(benched):
    results = json.loads((benched / "bench" / "results.json").read_text())
    present = [b for b in BACKENDS if unavailable(b) is None]
    assert {"litert", "ort-cpu", "keras", "tf-function"} <= set(present)
    rows = {(r["artifact"], r["backend"]) for r in results["rows"]}
    bundles = [p.name for p in (benched / "exports").iterdir() if (p / "manifest.json").exists()]
    for name in bundles:
        backend = "litert" if "-tflite-" in name else "ort-cpu"
        assert (name, backend) in rows
    assert ("teacher-keras", "keras") in rows and ("teacher-keras", "tf-function") in rows
    for r in results["rows"]:
        assert "error" not in r, r
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p90"] <= r["latency_ms"]["p99"]
        assert r["peak_rss_mb"] > 10 and r["cold_start_s"] > 0 and r["throughput_per_s"] > 0
    skipped = {s["backend"]: s["reason"] for s in results["skipped"]}
    assert set(skipped) == set(BACKENDS) - set(present)
    assert all(reason for reason in skipped.values())
    assert results["accuracy"]["teacher-tflite-fp32"]["digit"]["n"] == 300
    assert results["flops"]["teacher"] > 1e5
    side = results["side_by_side"]  # measured interleaved in one process, with the floor's peaks and fixed cost
    assert side["peaks"]["fp32"]["gops"] > 0.1 and "XNNPACK" in side["peaks"]["int8"]["engine"]
    floor = side["floor"]["teacher-tflite-fp32"]
    assert 0 < floor["share"] <= 1.0 and floor["distance"] >= 1.0 and 0 < side["fixed_ms"] < floor["floor_ms"]
    assert side["latency"]["teacher-tflite-fp32 end-to-end"]["median_ms"] > side["latency"]["teacher-tflite-fp32"][
        "median_ms"]  # decoding the WAV and the PNG costs more than nothing


def test_keras_rows_are_timed_only_when_asked(benched):
    from edgemtl.bench.run import KERAS_SKIPPED, keras_asked, plan_jobs
    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import RunDir

    run = RunDir(benched)
    recipe = load_recipe(run.recipe)
    jobs, skipped = plan_jobs(run, recipe, list(BACKENDS), [1], keras=False)
    assert jobs and all(BACKENDS[j["backend"]][0] != "keras" for j in jobs)
    assert {s["backend"] for s in skipped if s["reason"] == KERAS_SKIPPED} == {"keras", "tf-function"}
    with_keras, _ = plan_jobs(run, recipe, list(BACKENDS), [1], keras=True)
    assert {j["backend"] for j in with_keras} - {j["backend"] for j in jobs} == {"keras", "tf-function"}
    assert not keras_asked(False, ()) and not keras_asked(False, ("litert",))
    assert keras_asked(True, ()) and keras_asked(False, ("litert", "tf-function"))


def test_reports_hold_every_artifact(benched):
    folder = benched / "bench"
    report, page = (folder / "report.md").read_text(), (folder / "report.html").read_text()
    results = json.loads((folder / "results.json").read_text())
    for r in results["rows"]:
        assert f"| {r['artifact']} | {r['backend']} | 1 |" in report
        assert r["artifact"] in page
    assert "Runtime vs `keras.Model.predict`" in report and "**Distance from the floor**" in report
    assert (folder / "pareto.png").read_bytes()[:4] == b"\x89PNG" and "data:image/png;base64," in page


def test_bench_without_bundles_is_one_message(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("exports"))
    assert main(["bench", str(run)]) == 2
    assert "no bundles in exports/ to bench" in capsys.readouterr().err


def test_a_packed_run_benches_on_another_machine_with_only_its_test_files(benched, tmp_path, capsys):
    out = tmp_path / "pack"
    assert main(["pack", str(benched), str(out)]) == 0
    assert "edgemtl bench" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "run").iterdir()) == ["exports", "preprocess", "recipe.yaml"]
    test_rows = json.loads((benched / "bench" / "results.json").read_text())["accuracy"]["teacher-onnx-fp32"]
    media = [p for p in (out / "data").rglob("*") if p.is_file() and p.name != "pairs.csv"]
    assert len(media) == 2 * test_rows["digit"]["n"]  # a recording and an image per test row, nothing else
    assert main(["pack", str(benched), str(out)]) == 2
    assert "already exists and is not empty (use --overwrite)" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(DEMO, broken)
    missing = sorted(media)[0].relative_to(out / "data")
    (broken / missing).unlink()
    assert main(["pack", str(benched), str(tmp_path / "other"), "--data", str(broken / "pairs.csv")]) == 2
    assert f"file '{broken / missing}' not found" in capsys.readouterr().err

    device = tmp_path / "device"  # another machine, another path: the packed recipe finds its data beside it
    shutil.move(out, device)
    bench = ["--backend", "ort-cpu", "--runs", "3", "--threads", "1"]
    assert main(["bench", str(device / "run")] + bench) == 0
    moved = json.loads((device / "run" / "bench" / "results.json").read_text())
    here = json.loads((benched / "bench" / "results.json").read_text())
    assert sorted(r["artifact"] for r in moved["rows"]) == ["teacher-onnx-fp32", "teacher-onnx-int8"]
    for name in ("teacher-onnx-fp32", "teacher-onnx-int8"):
        assert moved["accuracy"][name] == here["accuracy"][name]

    shutil.move(device / "data", tmp_path / "elsewhere")  # the data moved apart from the run: --data names it
    assert main(["bench", str(device / "run")] + bench) == 2
    assert f"data.source: file '{device / 'data' / 'pairs.csv'}' not found" in capsys.readouterr().err
    assert main(["bench", str(device / "run"), "--data", str(tmp_path / "elsewhere" / "pairs.csv")] + bench) == 0


def test_node_placement_counts_every_node_on_the_provider_that_ran_it(benched):
    import onnx

    from edgemtl.bench.backends import ort_node_placement
    from edgemtl.runtime import load

    bundle = benched / "exports" / "teacher-onnx-fp32"
    model = load(bundle)
    feeds = {n: np.zeros((1, *p.shape), p.dtype) for n, p in model.inputs.items()}
    placed = ort_node_placement(bundle, "CPUExecutionProvider", feeds)
    in_file = len(onnx.load(str(model.manifest.model_path)).graph.node)
    assert list(placed) == ["CPUExecutionProvider"] and 0 < placed["CPUExecutionProvider"] <= in_file


def test_gpu_rows_are_compared_with_the_same_file_on_the_cpu_at_its_best_thread_count(benched):
    from edgemtl.reports.bench_report import gpu_vs_cpu

    results = json.loads((benched / "bench" / "results.json").read_text())
    assert gpu_vs_cpu(results) == []  # no GPU rows: no comparison
    cpu = next(r for r in results["rows"] if r["artifact"] == "teacher-onnx-fp32" and r["backend"] == "ort-cpu")
    slow_cpu = {**cpu, "threads": 2, "latency_ms": {**cpu["latency_ms"], "p50": cpu["latency_ms"]["p50"] * 10}}
    gpu = {**cpu, "backend": "ort-cuda", "latency_ms": {**cpu["latency_ms"], "p50": cpu["latency_ms"]["p50"] / 2},
           "throughput_per_s": cpu["throughput_per_s"] * 3, "gpu_memory_mb": 512.0,
           "nodes_by_provider": {"CPUExecutionProvider": 2, "CUDAExecutionProvider": 10}}
    results["rows"] += [slow_cpu, gpu]
    results["machine"]["gpu"] = {"present": True, "name": "a GPU"}
    results["gpu_accuracy"] = {"teacher-onnx-fp32 ort-cuda": {"error": "RuntimeError: out of memory"}}
    head, line = gpu_vs_cpu(results)
    assert "(a GPU vs ONNX Runtime" in head
    assert line.startswith("  - teacher-onnx-fp32 (ort-cuda): batch 1 ")
    assert "ms (1 thread), 2.0x;" in line and "rows/s (1 thread), 3.0x, 512 MB of GPU memory" in line
    assert "nodes 10 on CUDA, 2 on CPU; accuracy on the GPU not measured (RuntimeError: out of memory)" in line
