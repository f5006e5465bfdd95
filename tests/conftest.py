"""Shared fixtures. Tests use real data: the embedded av_digits demo, and ../shared/data where it is present."""
import os
from pathlib import Path

os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")  # CI runs on 2 cores; one op thread keeps runs steady
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "av_digits"
AV_RECIPE = REPO / "recipes" / "av_digits.yaml"
FASHION_RECIPE = REPO / "recipes" / "fashion.yaml"
SHARED = REPO.parent / "shared" / "data"

# Small, fast versions of the real recipes (same data, small encoders, few epochs).
TINY_AV = ["training.epochs=2", "inputs.audio.encoder.filters=[8,16]", "inputs.image.encoder.filters=[8,16]",
           "trunk.units=[32]", "training.checkpoint_every=5",
           # the demo's student names absolute widths: scale the small encoders above instead
           "compress.student.preset=small", "compress.student.inputs={}", "compress.student.trunk={}",
           "compress.training={}", "compress.scratch=true",  # students as long as the teacher, both of them
           "bench.backends=[]"]  # every backend (the demo recipe measures three)

# The session run: every stage of the main job, single-task models included.
# Its export accepts any metric drop (export.default_tolerance=1): the gate and fallback have their own tests.
TINY_RUN = TINY_AV + ["stages=[check,train,single_task,evaluate,export,report]", "export.default_tolerance=1.0",
                     "export.model=teacher"]


def set_args(overrides) -> list:
    return [a for s in overrides for a in ("--set", s)]


needs_shared = pytest.mark.skipif(not (SHARED / "fashion" / "products.csv").exists(),
                                  reason="../shared/data is not beside the repository")


@pytest.fixture(scope="session")
def av_recipe():
    from edgemtl.recipe import load_recipe

    return load_recipe(AV_RECIPE, TINY_AV)


@pytest.fixture(scope="session")
def av_data(av_recipe):
    from edgemtl.data.dataset import prepare

    return prepare(av_recipe)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """`edgemtl run` of the demo recipe with every stage, including single-task models: one run for many tests."""
    from edgemtl.cli import main

    out = tmp_path_factory.mktemp("runs") / "av"
    assert main(["run", str(AV_RECIPE), "--out", str(out)] + set_args(TINY_RUN)) == 0
    return out


@pytest.fixture
def own_run(tiny_run, tmp_path):
    """A copy of the session run without its bundles, for a test that writes bundles: the session run's bundles
    stay the ones its own export judged, which other tests check file by file."""
    import shutil

    out = tmp_path / "av"
    shutil.copytree(tiny_run, out, ignore=shutil.ignore_patterns("exports", "rejected"))
    return out


def write_recipe(tmp_path, text: str, name="recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


FASHION_MINI = REPO / "tests" / "data" / "fashion_mini" / "products.csv"
# The data, inputs and trunk of the small fashion_mini recipes (image + title, tiny encoders).
FASHION_MINI_MODEL = f"""data: {{source: {FASHION_MINI}, split: {{ratios: [0.7, 0.1, 0.2]}}}}
inputs:
  - {{name: image, type: image, column: image, size: [32, 32], encoder: {{type: cnn, filters: [8, 16]}}}}
  - {{name: title, type: text, column: title, max_length: 12,
     encoder: {{type: conv1d, embedding_dim: 16, filters: 16}}}}
trunk: {{units: [32]}}
"""
FASHION_TINY = f"""
name: fashion_tiny
stages: [train, export]
{FASHION_MINI_MODEL}tasks:
  - {{name: gender, type: multiclass, match_labels: title}}
  - {{name: masterCategory, type: multiclass}}
training: {{epochs: 3, batch_size: 16, learning_rate: 0.01}}
export: {{formats: [tflite, onnx], precisions: [fp32, fp16]}}
"""


@pytest.fixture(scope="session")
def fashion_tiny_run(tmp_path_factory):
    """A small image + title model on the embedded fashion subset (one head matching class names in the title),
    exported as fp32 and fp16 TFLite and ONNX bundles."""
    from edgemtl.cli import main

    root = tmp_path_factory.mktemp("fashion")
    recipe = write_recipe(root, FASHION_TINY, "fashion_tiny.yaml")
    assert main(["run", str(recipe), "--out", str(root / "run")]) == 0
    return root / "run"
