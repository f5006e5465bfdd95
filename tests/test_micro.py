"""The micro export target: TFLite Micro's op check, its gate in TFLM with the arena it measured, the C array."""
import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, set_args
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
def test_bench_measures_the_micro_bundle_and_shows_its_arena_and_flash(micro_run):
    """bench plans a LiteRT job for the micro bundle (its model file is a .tflite; it had none) and its report shows
    the arena and flash read from the bundle's manifest (the full bench CLI runs in tests/test_bench.py)."""
    from edgemtl.bench.run import _memory, plan_jobs
    from edgemtl.recipe import load_recipe
    from edgemtl.reports.bench_report import table
    from edgemtl.rundir import RunDir

    rundir = RunDir(micro_run)
    jobs, _ = plan_jobs(rundir, load_recipe(rundir.recipe), ["litert"], [1])
    bundle = micro_run / "exports" / "teacher-micro-int8"
    assert [(j["artifact"], j["target"]) for j in jobs] == [("teacher-micro-int8", str(bundle))]
    memory = BundleManifest.read(bundle).memory
    assert _memory(bundle, "tflite") == memory.to_dict()
    latency = {"p50": 1.0, "p90": 1.0, "p99": 1.0}
    results = {"rows": [{**jobs[0], "latency_ms": latency, "throughput_per_s": 1.0, "cold_start_s": 1.0,
                         "peak_rss_mb": 1.0}], "accuracy": {"teacher-micro-int8": {}}, "batch": 1,
               "sizes": {"teacher-micro-int8": (bundle / "model.tflite").stat().st_size},
               "memory": {"teacher-micro-int8": _memory(bundle, "tflite")}}
    header, _, row = table(results).splitlines()[:3]
    assert "| arena KB | flash KB |" in header
    assert f"| {memory.arena_bytes / 1024:.1f} | {memory.flash_bytes / 1024:.1f} |" in row

@needs_tflm
def test_micro_settings_header_compiles_with_the_manifest_values(micro_run, tmp_path):
    """examples/micro/gen_settings.py turns the manifest into model_settings.h for the TFLM example: it compiles as
    C++11 and carries the measured arena and the ops as MicroMutableOpResolver calls."""
    gxx = shutil.which("g++")
    if not gxx:
        pytest.skip("g++ not installed")
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



SENSOR_RECIPE = REPO / "recipes" / "sensor_digits.yaml"  # the embedded 240 windows of 16 log band energies
SENSOR_NPZ = REPO / "tests" / "data" / "sensor_digits" / "bands.npz"
SENSOR_MICRO = ["training.epochs=2", "stages=[train,export]", "export.formats=[micro]", "export.precisions=[int8]",
                "export.default_tolerance=1.0", "export.float_fallback=false"]


@pytest.fixture(scope="module")
def sensor_micro_run(tmp_path_factory):
    from edgemtl.cli import main

    out = tmp_path_factory.mktemp("sensor_micro") / "run"
    main(["run", str(SENSOR_RECIPE), "--out", str(out)] + set_args(SENSOR_MICRO))
    return out


@needs_tflm
def test_sequence_micro_bundle_takes_int8_raw_windows_in_tflm(sensor_micro_run):
    """The sequence model standardises each channel in the graph: its micro file takes int8 of the raw window
    (scale and zero point of the calibration rows' range, written on the input tensor), CASTs it to float for the
    standardisation and runs the network in int8; TFLM answers like Keras and the runtime quantizes raw windows."""
    import numpy as np

    from edgemtl.runtime import load

    bundle = sensor_micro_run / "exports" / "teacher-micro-int8"
    assert bundle.is_dir(), [p.read_text()[:300] for p in (sensor_micro_run / "exports").rglob("parity.json")]
    manifest = BundleManifest.read(bundle)
    bands, digit = manifest.quantization.io["bands"], manifest.quantization.io["digit"]
    assert manifest.deployable and (bands.dtype, digit.dtype) == ("int8", "int8")
    windows = np.load(SENSOR_NPZ)["window"].astype(np.float32)
    low, high = (bands.zero_point - (-128)) * -bands.scale, (127 - bands.zero_point) * bands.scale
    # the calibration rows' range (training rows): within all the windows' range, and most of it
    assert windows.min() - bands.scale <= low < high <= windows.max() + bands.scale
    assert high - low > 0.8 * (windows.max() - windows.min())
    assert {"CAST", "QUANTIZE", "CONV_2D"} <= set(manifest.memory.ops)
    task = json.loads((bundle / "parity.json").read_text())["tasks"]["digit"]
    assert task["agreement"] >= 0.9, task
    model = load(bundle)  # LiteRT, the desktop runtime of the same file: raw float windows in
    assert model.predict(bands=windows[0])["digit"]["label"] in manifest.outputs[0].labels


def test_raw_input_standardisation_in_integer_units_matches_the_float_model(sensor_micro_run):
    """micro_model rescales each raw input's Normalization to integer units: on int8 rows it answers what the
    trained model answers on the same rows dequantized (up to float rounding)."""
    import numpy as np

    from edgemtl.export.convert import load_exported
    from edgemtl.export.micro import micro_model, raw_inputs
    from edgemtl.recipe import load_recipe
    from edgemtl.rundir import RunDir

    rundir = RunDir(sensor_micro_run)
    model = load_exported(rundir, load_recipe(rundir.recipe), "teacher")
    x = np.load(SENSOR_NPZ)["window"][:20].astype(np.float32)
    raw = raw_inputs(model, [{"bands": x}])
    assert [(r.name, r.layer) for r in raw] == [("bands", "bands_norm")]
    q = np.clip(np.round(x / raw[0].scale + raw[0].zero_point), -128, 127).astype(np.int8)
    micro = micro_model(model, raw)
    assert micro.inputs[0].dtype.name == "int8"
    real = ((q.astype(np.float32) - raw[0].zero_point) * raw[0].scale).astype(np.float32)
    np.testing.assert_allclose(micro(q)["digit"].numpy(), model(real)["digit"].numpy(), atol=1e-4)


DIGIT_ROWS = """
name: digit_rows
stages: [train, export]
data: {{source: {npz}, split: {{ratios: [0.7, 0.15, 0.15]}}}}
inputs:
  - {{name: window, type: sequence, column: window, length: 28, channels: 28,
     encoder: {{type: conv1d, filters: [16, 32], kernel_size: 3}}}}
trunk: {{units: [32]}}
tasks:
  - {{name: digit, type: multiclass}}
training: {{epochs: 6, batch_size: 32, learning_rate: 0.005}}
export: {{formats: [micro], precisions: [int8], float_fallback: false, default_tolerance: 0.05}}
"""


@pytest.fixture(scope="module")
def digit_rows_run(tmp_path_factory):
    """Handwritten digits read row by row (28 steps of 28 pixel columns), a sequence model exported as micro int8.
    Its edge columns are nearly always 0, so the per-channel 1/std of the in-graph standardisation spans 2.4..1e4:
    as one int8 constant that zeroed every other channel (LiteRT int8 and TFLM: chance accuracy)."""
    import csv

    import numpy as np

    from conftest import DEMO, write_recipe
    from edgemtl.cli import main
    from edgemtl.kinds.image import load_image

    root = tmp_path_factory.mktemp("digit_rows")
    rows = list(csv.DictReader(open(DEMO / "pairs.csv")))[::5][:300]
    windows = np.stack([load_image(DEMO / r["image"], (28, 28), 1)[..., 0] / 255.0 for r in rows])
    np.savez(root / "rows.npz", window=windows.astype(np.float32), digit=np.array([int(r["digit"]) for r in rows]))
    recipe = write_recipe(root, DIGIT_ROWS.format(npz=root / "rows.npz"))
    main(["run", str(recipe), "--out", str(root / "run")])
    return root / "run"


@pytest.mark.slow
@needs_tflm
def test_near_constant_channels_keep_their_accuracy_in_tflm(digit_rows_run):
    """Rows whose edge columns are nearly always 0 (1/std up to 1e4): a GRU over them answered 15 % vs 67 % in int8
    while the standardisation was int8 (one int8 constant made the small 1/std factors 0). This Conv1D model, the
    cheaper check, answers like Keras in TFLM on int8 pixels 0..1."""
    bundle = digit_rows_run / "exports" / "teacher-micro-int8"
    assert bundle.is_dir(), list((digit_rows_run / "exports").rglob("parity.json"))
    manifest = BundleManifest.read(bundle)
    window = manifest.quantization.io["window"]
    assert manifest.deployable and window.dtype == "int8"
    assert window.scale == pytest.approx(1 / 255, rel=1e-3) and window.zero_point == -128  # pixels 0..1
    assert {"CAST", "QUANTIZE", "CONV_2D"} <= set(manifest.memory.ops)
    digit = json.loads((bundle / "parity.json").read_text())["tasks"]["digit"]
    assert digit["drop"] <= 0.05 and digit["agreement"] >= 0.9, digit

