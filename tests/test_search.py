"""The latency-aware precision search (export/search.py), the side-by-side timing it stands on
(bench/interleave.py), and the floor bench reports each artifact against (bench/headline.py)."""
import itertools
import json

import pytest

from edgemtl.artifacts import ArtifactId
from edgemtl.bench.headline import floor_entry, headline
from edgemtl.bench.interleave import measure, tied
from edgemtl.bench.machine import cpu_info
from edgemtl.env_info import describe_cpu
from edgemtl.export.search import Candidate, blocks, choose
from edgemtl.runtime.manifest import BundleManifest


def _manifests(run):
    return {p.name: BundleManifest.read(p) for p in (run / "exports").iterdir() if (p / "manifest.json").exists()}


def test_every_format_recommends_one_deployable_bundle_measured_here(fashion_tiny_run):
    manifests = _manifests(fashion_tiny_run)
    for fmt in ("tflite", "onnx"):
        mine = {n: m for n, m in manifests.items() if m.format == fmt}
        assert len(mine) == 2 and all(m.selection is not None for m in mine.values())
        chosen = [m for m in mine.values() if m.recommended]
        assert len(chosen) == 1 and chosen[0].deployable
        s = chosen[0].selection
        assert s.target == "latency" and s.measured_on == describe_cpu(cpu_info()) and s.threads == 1
        assert set(s.compared_ms) == set(mine)  # every deployable candidate was timed side by side
        fastest = min(s.compared_ms, key=s.compared_ms.get)
        # the fastest median, or a stated tie resolved by size
        assert chosen[0].artifact.name == fastest or fastest in s.tie_with
    rows = json.loads((fashion_tiny_run / "exports" / "teacher-summary.json").read_text())
    assert sum(r["recommended"] for r in rows) == 2 and all(r["latency_ms"] > 0 for r in rows)


def test_the_export_table_marks_the_recommended_bundle(fashion_tiny_run):
    from edgemtl.export.run import format_table
    from edgemtl.recipe import load_recipe

    rows = json.loads((fashion_tiny_run / "exports" / "teacher-summary.json").read_text())
    text = format_table(rows, load_recipe(fashion_tiny_run / "recipe.yaml").tasks)
    marked = [line for line in text.splitlines() if "**recommended**" in line]
    assert len(marked) == 2 and all(line.split("|")[1].strip() in {r["artifact"] for r in rows if r["recommended"]}
                                    for line in marked)
    assert cpu_info()["model"] in text


def _candidates(run):
    """The run's bundles as search candidates (real files, real sizes)."""
    out = []
    for _, m in sorted(_manifests(run).items()):
        if m.format == "tflite":
            out.append(Candidate(m.artifact, (), m.model_path, True))
    return out


def test_choose_never_returns_an_artifact_over_tolerance_and_resolves_ties_by_size(fashion_tiny_run):
    fp16, fp32 = sorted(_candidates(fashion_tiny_run), key=lambda c: c.size)  # the fp16 file is the smaller
    assert fp16.aid.precision == "fp16" and fp16.size < fp32.size
    fp32.latency = {"median_ms": 0.10, "q1_ms": 0.099, "q3_ms": 0.101}
    fp16.latency = {"median_ms": 0.30, "q1_ms": 0.29, "q3_ms": 0.31}
    failed = Candidate(ArtifactId("teacher", "tflite", "int8"), (), fp16.path, False)
    failed.latency = {"median_ms": 0.01, "q1_ms": 0.009, "q3_ms": 0.011}  # fastest, but over tolerance
    for order in itertools.permutations([fp32, fp16, failed]):
        assert choose(list(order), "latency") == (fp32, ())
        assert choose(list(order), "size")[0] is fp16
    fp16.latency = {"median_ms": 0.102, "q1_ms": 0.1, "q3_ms": 0.104}  # within noise of fp32: a tie, stated
    for order in itertools.permutations([fp32, fp16, failed]):
        best, ties = choose(list(order), "latency")
        assert best is fp16 and ties == (fp32.label,)
    assert choose([failed], "latency") == (None, ())


def test_the_recommendation_is_reproducible_on_the_pinned_kernels(fashion_tiny_run):
    manifests = {n: m for n, m in _manifests(fashion_tiny_run).items() if m.format == "tflite"}
    targets = [{"name": n, "path": str(m.model_path), "kernels": m.runtime.kernels} for n, m in manifests.items()]
    feeds = _feeds(fashion_tiny_run)
    picks = []
    for _ in range(2):
        latency = measure(targets, feeds, rounds=7, calls=10, inline=True)["latency"]
        fastest = min(latency, key=lambda n: latency[n]["median_ms"])
        picks.append((fastest, {n for n in latency if n != fastest and tied(latency[n], latency[fastest])}))
    (first, first_ties), (second, second_ties) = picks
    # a different pick is a tie one of the runs stated (a loaded machine may move a 5 % tie's edge between runs)
    assert first == second or second in first_ties or first in second_ties, picks


def _feeds(run):
    import numpy as np

    from edgemtl.runtime import load

    model = load(run / "exports" / "teacher-tflite-fp32")
    return {k: np.asarray(v) for k, v in model.prepare(image=str(_image(run)), title="Nike Men Black Shoes").items()}


def _image(run):
    from pathlib import Path

    from edgemtl.recipe import load_recipe

    source = load_recipe(run / "recipe.yaml").data.source
    return sorted((Path(source).parent / "images").iterdir())[0]


def test_blocks_name_the_image_stem_encoders_trunk_and_heads(fashion_tiny_run):
    from edgemtl.models.build import load_model
    from edgemtl.recipe import load_recipe

    recipe = load_recipe(fashion_tiny_run / "recipe.yaml")
    model = load_model(fashion_tiny_run / "models" / "teacher" / "model.keras")
    found = {b.name: b.parts for b in blocks(model, recipe, recipe.tasks)}
    assert list(found) == ["stem:image", "encoder:image", "encoder:title", "trunk", "heads"]
    stem = found["stem:image"]
    # everything from the pixels to the first convolution and the pooling after it, nothing of the second block
    assert {"image_block0_conv", "image_block0_bn", "image_block0_relu", "image_pool0"} <= set(stem)
    assert all(s.startswith("image_") for s in stem) and not any("block1" in s for s in stem)
    assert found["heads"] == ("gender", "masterCategory")


@pytest.mark.parametrize("measured", [0.001, 0.5, 5.0])
def test_the_floor_share_is_never_above_100_percent(measured):
    peaks = {"fp32": {"gops": 20.0}, "int8": {"gops": 60.0}}
    f = floor_entry("student-tflite-int8", measured, {"student": 2_000_000}, peaks, 0.002)
    assert f["floor_ms"] == pytest.approx(2e6 / 60e9 * 1e3 + 0.002)  # a quantized file: the faster peak
    assert 0 < f["share"] <= 1.0 and f["distance"] >= 1.0
    assert f["below_floor"] == (measured < f["floor_ms"])
    assert floor_entry("student-tflite-fp32", measured, {"student": 2_000_000}, peaks, 0.002)["peak_gops"] == 20.0


@pytest.mark.slow
def test_the_int8_walk_returns_a_deployable_artifact_within_every_tolerance(fashion_tiny_run):
    """Converts int8 once per block (minutes on a loaded machine): behind --slow."""
    from edgemtl.data.dataset import prepare
    from edgemtl.export.run import ModelExport
    from edgemtl.export.search import PrecisionSearch
    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import RunDir

    run = RunDir(fashion_tiny_run)
    recipe = load_recipe(run.require_recipe(), ["export.default_tolerance=0.02"])
    with ModelExport(run, recipe, prepare(recipe), "teacher", 50) as session:
        rec = PrecisionSearch(session, "latency", say=lambda line: None).run("tflite", ["fp32", "int8"])
        assert rec.chosen is not None and rec.chosen.deployable
        for c in rec.candidates:
            report = session.reports[c.path]
            assert c.deployable == report.deployable
            assert all(t.drop is None or t.drop <= 0.02 + 1e-12 for t in report.tasks.values())
        if rec.chosen.aid.precision == "int8":
            assert session.searched.get(("tflite", "int8"), rec.chosen.keep) == rec.chosen.keep


def test_bench_headline_names_the_smallest_of_the_files_tied_with_the_fastest(tmp_path):
    """bench's headline resolves a tie as export's recommendation does: the smallest file among those within noise
    of the fastest median; a file outside the tie is never named, however small."""
    latency = {"teacher-tflite-fp32": {"median_ms": 0.43}, "student-tflite-fp16": {"median_ms": 0.0577},
               "student-tflite-dynamic": {"median_ms": 0.0592}, "student-tflite-int8": {"median_ms": 0.0620},
               "student-tflite-int8io": {"median_ms": 0.1041}, "1-op model": {"median_ms": 0.004}}
    sizes = {"teacher-tflite-fp32": 3_152_000, "student-tflite-fp16": 170_000, "student-tflite-dynamic": 107_600,
             "student-tflite-int8": 126_000, "student-tflite-int8io": 100_000}
    files = {}
    for name, size in sizes.items():
        files[name] = tmp_path / f"{name}.tflite"
        files[name].write_bytes(bytes(size))
    head = headline(latency, ["student"], files)
    assert head["student"] == "student-tflite-dynamic"  # fp16 is 2.6 % faster: tied, and 1.6x larger
    assert set(head["tied_with"]) == {"student-tflite-fp16"}  # int8: 7.5 % behind, outside the tie
    assert head["teacher"] == "teacher-tflite-fp32" and head["int8"] == "student-tflite-int8"
    latency["student-tflite-dynamic"]["median_ms"] = 0.0700  # no longer tied: the fastest median is named
    assert headline(latency, ["student"], files)["student"] == "student-tflite-fp16"


def test_bench_headline_names_exports_recommendation_for_this_cpu_where_its_timing_agrees(tmp_path):
    """The manifest's recommended bundle is the one bench names when bench's own timing ties it with the fastest
    (export and bench then name the same file), not when it is slower beyond noise (named as overruled) or when it
    was recommended on another CPU."""
    latency = {"teacher-tflite-fp32": {"median_ms": 0.36}, "student-tflite-int8": {"median_ms": 0.0330},
               "student-tflite-dynamic": {"median_ms": 0.0345}, "student-tflite-fp32": {"median_ms": 0.0460}}
    files = {}
    for name, size in {"teacher-tflite-fp32": 3_000_000, "student-tflite-int8": 110_000,
                       "student-tflite-dynamic": 107_000, "student-tflite-fp32": 300_000}.items():
        files[name] = tmp_path / f"{name}.tflite"
        files[name].write_bytes(bytes(size))
    here = describe_cpu(cpu_info())
    alone = headline(latency, ["student"], files)
    assert alone["student"] == "student-tflite-dynamic" and alone["chosen_by"] == "bench"  # tied: the smaller
    agreed = headline(latency, ["student"], files, {"student-tflite-int8": here})
    assert agreed["student"] == "student-tflite-int8" and agreed["chosen_by"] == "export"
    assert agreed["tied_with"] == ["student-tflite-dynamic"] and agreed["overruled"] == []
    elsewhere = headline(latency, ["student"], files, {"student-tflite-int8": "another CPU, 8 cores, flags: avx2"})
    assert elsewhere["student"] == "student-tflite-dynamic" and elsewhere["chosen_by"] == "bench"
    slower = headline(latency, ["student"], files, {"student-tflite-fp32": here})
    assert slower["student"] == "student-tflite-dynamic" and slower["overruled"] == ["student-tflite-fp32"]
