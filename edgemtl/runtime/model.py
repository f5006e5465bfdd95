"""A loaded bundle: raw inputs in, per-task answers out. numpy, PIL, simplejpeg, LiteRT and ONNX Runtime only.

The bundle names the runtime configuration its parity gate verified (manifest `runtime`: LiteRT kernel set and
threads, ONNX Runtime graph optimisation); load() opens exactly that unless asked for another, which it says is
unverified. A bundle that failed the gate is refused unless allow_undeployable=True.
"""
import logging
from pathlib import Path

import numpy as np

from .. import kinds
from ..errors import EdgemtlError, did_you_mean
from .backends import ModelLoadError, open_runner
from .inputs import InputPreparer
from .manifest import BundleManifest

log = logging.getLogger("edgemtl")


def load(bundle, threads: int | None = None, device: str = "cpu", kernels: str | None = None,
         allow_undeployable: bool = False) -> "BundleModel":
    """Open a bundle folder written by `edgemtl export` (or its manifest.json). threads / kernels: None for what the
    bundle's gate verified (manifest `runtime`); another value runs, with a warning that its answers are unverified.
    allow_undeployable: open a bundle that failed the parity gate (for inspection; its answers failed the gate)."""
    return BundleModel(bundle, threads, device, kernels, allow_undeployable)


class BundleModel:
    def __init__(self, bundle, threads: int | None = None, device: str = "cpu", kernels: str | None = None,
                 allow_undeployable: bool = False):
        # every file the manifest names resolves inside the bundle (checked when it is read)
        self.manifest = BundleManifest.read(bundle)
        self.folder: Path = self.manifest.bundle_dir
        if not self.manifest.deployable:
            if not allow_undeployable:
                raise EdgemtlError(f"{self.folder}: this bundle failed the parity gate and is not deployable "
                                   f"({self.manifest.parity.reason}); pass allow_undeployable=True "
                                   f"(predict --allow-undeployable) to run it anyway")
            log.warning("%s: running a bundle that failed the parity gate (%s)", self.folder.name,
                        self.manifest.parity.reason)
        self.manifest.require_files()
        self.settings = self._settings(threads, kernels)
        try:
            self.runner = open_runner(self.manifest.model_path, self.settings["threads"], device,
                                      self.settings["kernels"], self.settings["graph_optimization"])
        except ModelLoadError as e:
            raise EdgemtlError(str(e)) from None
        provider, verified = getattr(self.runner, "provider", None), self.manifest.runtime.provider
        if provider and verified and provider != verified:
            log.warning("%s: running on %s, its parity gate verified %s: its answers are unverified",
                        self.folder.name, provider, verified)
        # the preparers and answers read the entries' on-disk form (the modality and task kinds own them)
        self.inputs = {e.name: InputPreparer(e.to_dict(), self.folder) for e in self.manifest.inputs}
        self.outputs = {e.task: e.to_dict() for e in self.manifest.outputs}
        # optional input -> its presence input: a request may leave the input out (zeros fed, presence 0)
        self.presence = {e.name: e.presence for e in self.manifest.inputs if e.optional}
        self._names = frozenset(self.inputs)
        self._required = frozenset(n for n in self.inputs if n not in self.presence)
        # each task's answer function, its label names read once (a kind's answerer)
        self._answers = [(task, kinds.task_kind(e["type"]).answerer(e)) for task, e in self.outputs.items()]
        self._check_model_matches_manifest(self.manifest.model_path)

    def _settings(self, threads, kernels) -> dict:
        """The bundle's verified runtime configuration with the caller's overrides; warns when they differ."""
        pinned = self.manifest.runtime
        settings = {"threads": pinned.threads if threads is None else int(threads),
                    "kernels": (pinned.kernels or "xnnpack") if kernels is None else kernels,
                    "graph_optimization": pinned.graph_optimization or "all"}
        if kernels is not None and kernels not in ("xnnpack", "builtin", "auto"):
            raise EdgemtlError(f"kernels: unknown LiteRT kernel set '{kernels}' (one of xnnpack, builtin, auto)")
        changed = [f"{k} {settings[k]} (verified: {v})" for k, v in
                   (("threads", pinned.threads), ("kernels", pinned.kernels)) if v is not None and settings[k] != v]
        if changed:
            log.warning("%s: runtime settings differ from those its parity gate verified: %s; its answers are "
                        "unverified", self.folder.name, ", ".join(changed))
        elif not pinned.pinned:
            log.warning("%s: %s", self.folder.name, pinned.note)
        return settings

    def _check_model_matches_manifest(self, model_file: Path):
        have_in, have_out = self.runner.input_names(), self.runner.output_names()
        problems = []
        if set(have_in) != set(self.manifest.model_input_names):
            problems.append(f"inputs {sorted(have_in)} vs manifest {sorted(self.manifest.model_input_names)}")
        if set(have_out) != set(self.outputs):
            problems.append(f"outputs {sorted(have_out)} vs manifest {sorted(self.outputs)}")
        for name, shape in self.runner.input_shapes().items():
            want = self.manifest.input(name).sample_shape if name in self.inputs else (
                (1,) if name in self.presence.values() else None)
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
        missing = [n for n in self.inputs if n not in given and n not in self.presence]
        if missing:
            optional = f" ({', '.join(self.presence)} optional)" if self.presence else ""
            raise EdgemtlError(f"missing input '{missing[0]}'; this model takes {', '.join(self.inputs)}{optional}")

    def _absent(self, name: str, value) -> bool:
        """An optional input left out (or given as None): the model gets zeros and presence 0."""
        return name in self.presence and value is None

    def _placeholder(self, name: str) -> np.ndarray:
        prep = self.inputs[name]
        return np.zeros(prep.shape, prep.dtype)

    def _with_presence(self, arrays: dict, present: dict) -> dict:
        """present: optional input -> [n] booleans; adds each presence input ([n, 1] float32)."""
        return {**arrays, **{self.presence[n]: p.astype(np.float32)[:, None] for n, p in present.items()}}

    def prepare(self, rate=None, **raw) -> dict:
        """Raw inputs of one sample -> model input arrays with a batch dimension of 1. An optional input may be left
        out (or None): zeros and presence 0 go in its place."""
        if not (raw.keys() <= self._names and self._required <= raw.keys()):
            self._check_names(raw)  # raises, naming the input
        if not self.presence:  # every input given: no placeholder, no presence flag
            return {n: prepare(raw[n], rate)[None] for n, prepare in self.inputs.items()}
        arrays = {n: (self._placeholder(n) if self._absent(n, raw.get(n)) else self.inputs[n](raw[n], rate))[None]
                  for n in self.inputs if n in raw or n in self.presence}
        present = {n: np.array([not self._absent(n, raw.get(n))]) for n in self.presence}
        return self._with_presence(arrays, present)

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
        n_rows = next(iter(sizes.values()))
        # an optional input left out is absent in every sample; a None item, in that sample
        given = {n: raw.get(n, [None] * n_rows) for n in self.inputs if n in raw or n in self.presence}
        arrays = {n: np.stack([self._placeholder(n) if self._absent(n, x) else self.inputs[n](x, rate) for x in v])
                  for n, v in given.items()}
        present = {n: np.array([not self._absent(n, x) for x in given[n]]) for n in self.presence}
        return self._with_presence(arrays, present)

    # --- running ---------------------------------------------------------------------------------------------
    def run(self, arrays: dict) -> dict:
        """Model input arrays (batched) -> raw outputs by task name."""
        return self.runner.run(arrays)

    def predict(self, rate=None, **raw) -> dict:
        """One sample: predict(image="shoe.jpg", title="...") -> {task: answer}. rate: of an audio sample array."""
        return self.answers(self.run(self.prepare(rate, **raw)))

    def answers(self, outputs: dict, row: int = 0) -> dict:
        """Raw outputs by task (batched, what run() returns) -> {task: answer} of one row."""
        return {task: answer(outputs[task][row]) for task, answer in self._answers}

    def predict_batch(self, rate=None, **raw) -> list:
        """Lists of raw inputs, one item per sample -> a list of {task: answer}."""
        outputs = self.run(self.prepare_batch(rate, **raw))
        n = len(next(iter(raw.values()))) if raw else 0
        return [self.answers(outputs, i) for i in range(n)]

    def __repr__(self):
        m = self.manifest
        return (f"BundleModel({self.folder.name}: {m.format} {m.precision}, inputs {list(self.inputs)}, "
                f"tasks {list(self.outputs)})")
