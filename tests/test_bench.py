"""edgemtl bench: the harness on a real tiny run, its reports, and the statistics it prints."""
import json
import shutil

import numpy as np
import pytest

from edgemtl.bench.backends import BACKENDS, unavailable
from edgemtl.bench.timing import percentiles, time_calls
from edgemtl.cli import main


@pytest.fixture(scope="session")
def benched(tiny_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("bench") / "av"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("*-fp16", "*-dynamic", "*-c-*"))
    assert main(["bench", str(run), "--runs", "5", "--threads", "1", "--batch", "4",
                 "--student", "teacher-tflite-int8"]) == 0
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
    peaks = results["peak_1core"]  # numpy and LiteRT GEMMs, the best per precision
    assert peaks["fp32"]["gops"] > 0.1 and "LiteRT" in peaks["int8"]["engine"]


def test_reports_hold_every_artifact(benched):
    folder = benched / "bench"
    report, page = (folder / "report.md").read_text(), (folder / "report.html").read_text()
    results = json.loads((folder / "results.json").read_text())
    for r in results["rows"]:
        assert f"| {r['artifact']} | {r['backend']} | 1 |" in report
        assert r["artifact"] in page
    assert "Runtime vs `keras.Model.predict`" in report and "of the fp32 peak" in report
    assert (folder / "pareto.png").read_bytes()[:4] == b"\x89PNG" and "data:image/png;base64," in page


def test_bench_without_bundles_is_one_message(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("exports"))
    assert main(["bench", str(run)]) == 2
    assert "no bundles in exports/ to bench" in capsys.readouterr().err
