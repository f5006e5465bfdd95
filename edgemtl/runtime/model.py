"""A loaded bundle: raw inputs in, per-task answers out. numpy, PIL, LiteRT and ONNX Runtime only."""
from pathlib import Path

import numpy as np

from ..errors import EdgemtlError, did_you_mean
from .answers import answer
from .backends import ModelLoadError, open_runner
from .inputs import InputPreparer
from .manifest import BundleManifest


def load(bundle, threads: int = 1, device: str = "cpu") -> "BundleModel":
    """Open a bundle folder written by `edgemtl export` (or its manifest.json)."""
    return BundleModel(bundle, threads, device)


class BundleModel:
    def __init__(self, bundle, threads: int = 1, device: str = "cpu"):
        # every file the manifest names resolves inside the bundle (checked when it is read)
        self.manifest = BundleManifest.read(bundle)
        self.folder: Path = self.manifest.bundle_dir
        self.manifest.require_files()
        try:
            self.runner = open_runner(self.manifest.model_path, threads, device)
        except ModelLoadError as e:
            raise EdgemtlError(str(e)) from None
        # the preparers and answers read the entries' on-disk form (the modality and task kinds own them)
        self.inputs = {e.name: InputPreparer(e.to_dict(), self.folder) for e in self.manifest.inputs}
        self.outputs = {e.task: e.to_dict() for e in self.manifest.outputs}
        self._check_model_matches_manifest(self.manifest.model_path)

    def _check_model_matches_manifest(self, model_file: Path):
        have_in, have_out = self.runner.input_names(), self.runner.output_names()
        problems = []
        if set(have_in) != set(self.inputs):
            problems.append(f"inputs {sorted(have_in)} vs manifest {sorted(self.inputs)}")
        if set(have_out) != set(self.outputs):
            problems.append(f"outputs {sorted(have_out)} vs manifest {sorted(self.outputs)}")
        for name, shape in self.runner.input_shapes().items():
            want = self.manifest.input(name).sample_shape if name in self.inputs else None
            if want is not None and tuple(shape[1:]) != want:
                problems.append(f"input '{name}' shape {list(shape[1:])} vs manifest {list(want)}")
        if problems:
            raise EdgemtlError(f"{model_file}: the model does not match its manifest.json ({'; '.join(problems)}); "
                               f"re-export the bundle")
        self.manifest.check_output_widths({name: int(np.prod(shape[1:], dtype=np.int64))
                                           for name, shape in self.runner.output_shapes().items()
                                           if name in self.outputs and None not in shape[1:]})

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
        for n, v in raw.items():
            if not isinstance(v, (list, tuple, np.ndarray)):
                raise EdgemtlError(f"input '{n}': predict_batch takes a list of values, one per sample, got "
                                   f"{type(v).__name__}")
        sizes = {n: len(v) for n, v in raw.items()}
        if not any(sizes.values()):
            raise EdgemtlError("predict_batch: the input lists are empty (no sample to predict)")
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
        return (f"BundleModel({self.folder.name}: {m.format} {m.precision}, inputs {list(self.inputs)}, "
                f"tasks {list(self.outputs)})")
