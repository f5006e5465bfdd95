"""A loaded bundle: raw inputs in, per-task answers out. numpy, PIL, LiteRT and ONNX Runtime only."""
import json
from pathlib import Path

import numpy as np

from ..errors import EdgemtlError
from ..recipe.spec import did_you_mean
from .answers import answer
from .backends import ModelLoadError, open_runner
from .inputs import InputPreparer

SCHEMA_VERSION = 1  # the newest bundle manifest this runtime reads


def load(bundle, threads: int = 1, device: str = "cpu") -> "BundleModel":
    """Open a bundle folder written by `edgemtl export` (or its manifest.json)."""
    return BundleModel(bundle, threads, device)


def read_manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not folder.exists():
        raise EdgemtlError(f"{folder}: bundle folder not found")
    if not path.exists():
        raise EdgemtlError(f"{folder}: no manifest.json, so not an edgemtl bundle (make one with 'edgemtl export')")
    try:
        manifest = json.loads(path.read_text())
        version = int(manifest["schema_version"])
    except (ValueError, KeyError, TypeError):
        raise EdgemtlError(f"{path}: not a readable bundle manifest") from None
    if version > SCHEMA_VERSION:
        raise EdgemtlError(f"{path}: bundle schema version {version} is newer than this runtime reads "
                           f"({SCHEMA_VERSION}); upgrade edgemtl")
    return manifest


class BundleModel:
    def __init__(self, bundle, threads: int = 1, device: str = "cpu"):
        folder = Path(bundle)
        self.folder = folder.parent if folder.name == "manifest.json" else folder
        self.manifest = read_manifest(self.folder)
        model_file = self.folder / self.manifest["file"]
        if not model_file.exists():
            raise EdgemtlError(f"{self.folder}: model file '{self.manifest['file']}' named by manifest.json is missing")
        try:
            self.runner = open_runner(model_file, threads, device)
        except ModelLoadError as e:
            raise EdgemtlError(str(e)) from None
        self.inputs = {e["name"]: InputPreparer(e, self.folder) for e in self.manifest["inputs"]}
        self.outputs = {e["task"]: e for e in self.manifest["outputs"]}
        self._check_model_matches_manifest(model_file)

    def _check_model_matches_manifest(self, model_file: Path):
        have_in, have_out = self.runner.input_names(), self.runner.output_names()
        problems = []
        if set(have_in) != set(self.inputs):
            problems.append(f"inputs {sorted(have_in)} vs manifest {sorted(self.inputs)}")
        if set(have_out) != set(self.outputs):
            problems.append(f"outputs {sorted(have_out)} vs manifest {sorted(self.outputs)}")
        for name, shape in self.runner.input_shapes().items():
            want = self.inputs.get(name)
            if want is not None and tuple(shape[1:]) != want.shape:
                problems.append(f"input '{name}' shape {list(shape[1:])} vs manifest {list(want.shape)}")
        if problems:
            raise EdgemtlError(f"{model_file}: the model does not match its manifest.json ({'; '.join(problems)}); "
                               f"re-export the bundle")

    # --- inputs ----------------------------------------------------------------------------------------------
    def _check_names(self, given: dict):
        unknown = [n for n in given if n not in self.inputs]
        if unknown:
            raise EdgemtlError(f"unknown input '{unknown[0]}'{did_you_mean(unknown[0], self.inputs)}; this model "
                               f"takes {', '.join(self.inputs)}")
        missing = [n for n in self.inputs if n not in given]
        if missing:
            raise EdgemtlError(f"missing input '{missing[0]}'; this model takes {', '.join(self.inputs)}")

    def prepare(self, rate=None, **raw) -> dict:
        """Raw inputs of one sample -> model input arrays with a batch dimension of 1."""
        self._check_names(raw)
        return {n: self.inputs[n](v, rate)[None] for n, v in raw.items()}

    def prepare_batch(self, rate=None, **raw) -> dict:
        self._check_names(raw)
        sizes = {n: len(v) for n, v in raw.items()}
        if len(set(sizes.values())) > 1:
            raise EdgemtlError(f"batch inputs have different lengths: {sizes}")
        return {n: np.stack([self.inputs[n](x, rate) for x in v]) for n, v in raw.items()}

    # --- running ---------------------------------------------------------------------------------------------
    def run(self, arrays: dict) -> dict:
        """Model input arrays (batched) -> raw outputs by task name."""
        return self.runner.run(arrays)

    def predict(self, rate=None, **raw) -> dict:
        """One sample: predict(image="shoe.jpg", title="...") -> {task: answer}. rate: of an audio sample array."""
        outputs = self.run(self.prepare(rate, **raw))
        return {task: answer(self.outputs[task], outputs[task][0]) for task in self.outputs}

    def predict_batch(self, rate=None, **raw) -> list:
        """Lists of raw inputs, one item per sample -> a list of {task: answer}."""
        outputs = self.run(self.prepare_batch(rate, **raw))
        n = len(next(iter(raw.values())))
        return [{task: answer(self.outputs[task], outputs[task][i]) for task in self.outputs} for i in range(n)]

    def __repr__(self):
        m = self.manifest
        return (f"BundleModel({self.folder.name}: {m['format']} {m['precision']}, inputs {list(self.inputs)}, "
                f"tasks {list(self.outputs)})")
