"""The micro export target: TFLite Micro's op check, its gate in TFLM with the arena it measured, the C array."""
import json
import shutil
import subprocess
import sys

import pytest

from edgemtl.errors import EdgemtlError
from edgemtl.export.c_array import write_c_array
from edgemtl.export.micro import check_ops, model_ops, tflm_dir, tflm_ops
from edgemtl.runtime.manifest import BundleManifest

needs_tflm = pytest.mark.skipif(tflm_dir() is None, reason="tflite-micro is not installed (the [micro] extra)")
STRICT = ["-Wall", "-Wextra", "-pedantic", "-Werror", "-c"]


@pytest.fixture(scope="session")
def micro_run(tiny_run, av_data, tmp_path_factory):
    """A copy of the session run (its exports are checked as they are elsewhere) exported as micro int8, on the
    session's decoded data (the same recipe data as the run's)."""
    from edgemtl.export.run import export_model, require_deployable
    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import RunDir

    run = tmp_path_factory.mktemp("micro") / "av"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("exports"))
    rundir = RunDir(run)
    export_model(rundir, load_recipe(rundir.recipe), av_data, "teacher", ["micro"], ["int8"], 20)
    require_deployable(rundir, ["teacher"])
    return run


@needs_tflm
def test_op_check_names_the_op_and_layer_tflm_cannot_run(tiny_run):
    """The standard TFLite export carries RFFT2D (the audio front-end's FFT), which TFLM has no kernel for."""
    model = (tiny_run / "exports" / "teacher-tflite-fp32" / "model.tflite").read_bytes()
    assert "RFFT2D" in {u.op for u in model_ops(model)} and "RFFT2D" not in tflm_ops()
    assert {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= tflm_ops()
    with pytest.raises(EdgemtlError) as error:
        check_ops(model, "teacher", ["audio_logmel", "image_scale"])
    assert len(error.value.messages) == 1
    assert "op RFFT2D (layer 'audio_logmel')" in error.value.messages[0] and "TFLite Micro" in error.value.messages[0]


@needs_tflm
def test_micro_bundle_passes_the_gate_in_tflm_with_integer_io(micro_run):
    bundle = micro_run / "exports" / "teacher-micro-int8"
    manifest = BundleManifest.read(bundle)
    parity = json.loads((bundle / "parity.json").read_text())
    assert manifest.deployable and parity["rows"] == 300 and set(parity["tasks"]) == {"digit", "speaker"}
    assert {n: q.dtype for n, q in manifest.quantization.io.items()} == {
        "audio": "int16", "image": "int8", "digit": "int8", "speaker": "int8"}  # PCM audio, int8 pixels: no CAST
    assert manifest.memory.flash_bytes == (bundle / "model.tflite").stat().st_size
    assert set(manifest.memory.ops) == {u.op for u in model_ops((bundle / "model.tflite").read_bytes())}
    assert "RFFT2D" not in manifest.memory.ops and "CAST" in manifest.memory.ops  # int16 PCM -> float front-end
    source = (bundle / "model_data.cc").read_text()
    assert f"model_data_len = {manifest.memory.flash_bytes};" in source
    summary = json.loads((micro_run / "exports" / "teacher-summary.json").read_text())
    assert summary[0]["memory"]["arena_bytes"] == manifest.memory.arena_bytes


@needs_tflm
def test_arena_figure_is_the_smallest_that_runs(micro_run, tmp_path):
    """TFLM runs the micro model in the manifest's arena and fails 16 bytes below it (in a child: TFLM's C++ runtime
    stays out of this process)."""
    bundle = micro_run / "exports" / "teacher-micro-int8"
    arena = BundleManifest.read(bundle).memory.arena_bytes
    script = ("import sys; from pathlib import Path; from edgemtl.export.micro_worker import _runs; "
              "m, n = Path(sys.argv[1]).read_bytes(), int(sys.argv[2]); print(_runs(m, n, 2), _runs(m, n - 16, 2))")
    done = subprocess.run([sys.executable, "-c", script, str(bundle / "model.tflite"), str(arena)],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True", "False"], done.stderr[-500:]


def test_c_array_compiles_as_c11_and_cpp11(tiny_run, tmp_path):
    gcc, gxx = shutil.which("gcc"), shutil.which("g++")
    if not (gcc and gxx):
        pytest.skip("gcc/g++ not installed")
    model = (tiny_run / "exports" / "teacher-c-int8" / "model.tflite").read_bytes()
    write_c_array(model, tmp_path, "model_data")
    for compiler, std, lang in ((gcc, "-std=c11", "c"), (gxx, "-std=c++11", "c++")):
        done = subprocess.run([compiler, "-x", lang, std, *STRICT, str(tmp_path / "model_data.cc"), "-o",
                               str(tmp_path / f"model_data-{lang}.o")], capture_output=True, text=True)
        assert done.returncode == 0, (lang, done.stderr[-800:])
    example = tmp_path / "use.c"  # the header declares what a C program links against
    example.write_text('#include "model_data.h"\nunsigned int size(void) { return model_data_len + model_data[0]; }\n')
    done = subprocess.run([gcc, "-std=c11", *STRICT, "-I", str(tmp_path), str(example), "-o", str(tmp_path / "u.o")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-800:]


def test_export_table_shows_arena_and_flash_of_micro_rows():
    from edgemtl.export.run import format_table
    from edgemtl.recipe.schema import TaskSpec

    rows = [{"artifact": "m-tflite-int8", "size": 2048, "deployable": True, "reason": "", "tasks": {}},
            {"artifact": "m-micro-int8", "size": 4096, "deployable": True, "reason": "", "tasks": {},
             "memory": {"arena_bytes": 10240, "flash_bytes": 4096, "ops": ["ADD"], "measured_by": "tflite-micro"}}]
    lines = format_table(rows, [TaskSpec(name="digit", type="multiclass", column="digit")]).splitlines()
    assert "| arena KB | flash KB |" in lines[0]
    assert "| m-micro-int8 | 4.0 | 10.0 | 4.0 | pass |" in lines[3] and "| m-tflite-int8 | 2.0 | - | - |" in lines[2]


@needs_tflm
def test_micro_settings_header_compiles_with_the_manifest_values(micro_run, tmp_path):
    """examples/micro/gen_settings.py turns the manifest into model_settings.h for the TFLM example: it compiles as
    C++11 and carries the measured arena and the ops as MicroMutableOpResolver calls."""
    gxx = shutil.which("g++")
    if not gxx:
        pytest.skip("g++ not installed")
    from conftest import REPO

    bundle = micro_run / "exports" / "teacher-micro-int8"
    done = subprocess.run([sys.executable, str(REPO / "examples" / "micro" / "gen_settings.py"), str(bundle)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    manifest = BundleManifest.read(bundle)
    assert f"kArenaBytes = {manifest.memory.arena_bytes};" in done.stdout and "(resolver).AddConv2D();" in done.stdout
    assert done.stdout.count("(resolver).Add") == len(manifest.memory.ops)
    (tmp_path / "model_settings.h").write_text(done.stdout)
    (tmp_path / "use.cc").write_text('#include "model_settings.h"\nint main() { return kArenaBytes > 0 ? 0 : 1; }\n')
    built = subprocess.run([gxx, "-std=c++11", *STRICT, str(tmp_path / "use.cc"), "-o", str(tmp_path / "use.o")],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-800:]
