"""A bundle is a folder a device can use alone: the model file, manifest.json, the tokenizer vocabularies, parity.json."""
import shutil
from pathlib import Path

from ..recipe.schema import InputSpec, Recipe, TaskSpec
from .. import __version__
from ..artifacts import MANIFEST_FILE, PARITY_FILE, ArtifactId
from ..data.features import clip_samples
from ..rundir import RunDir, atomic_save
from ..runtime.manifest import DECODE, SCHEMA_VERSION, BundleManifest, ParityReport, Quantization


def input_entry(inp: InputSpec, spec) -> dict:
    entry = {"name": inp.name, "modality": inp.type, "dtype": spec.dtype.name,
             "shape": [None, *spec.shape[1:]], "column": getattr(inp, "column", None)}
    if inp.type == "image":
        entry["preprocess"] = {"size": list(inp.size), "channels": inp.channels}
    elif inp.type == "text":
        entry["preprocess"] = {"vocab": f"vocab_{inp.name}.txt", "max_length": inp.max_length,
                               "lowercase": inp.lowercase}
    elif inp.type == "audio":
        entry["preprocess"] = {"sample_rate": inp.sample_rate, "clip_samples": clip_samples(inp)}
    elif inp.type == "numeric":
        entry["preprocess"] = {"columns": list(inp.columns)}
    else:
        entry["preprocess"] = {"length": inp.length, "channels": inp.channels}
    return entry


def output_entry(task: TaskSpec, label_spec: dict) -> dict:
    entry = {"task": task.name, "type": task.type, "decode": DECODE[task.type]}
    if "classes" in label_spec:
        entry["labels"] = label_spec["classes"]
    if task.type in ("binary", "multilabel"):
        entry["threshold"] = task.threshold
    return entry


def build_manifest(run: RunDir, recipe: Recipe, aid: ArtifactId, file: str, inputs: list[dict],
                   outputs: list[dict], quantization: Quantization, report: ParityReport) -> BundleManifest:
    """The bundle's manifest, read back through its own reader: a writer bug is caught here, not on a device."""
    data = {"schema_version": SCHEMA_VERSION, "edgemtl_version": __version__, "recipe": recipe.name,
            "recipe_hash": run.recipe_hash(), "model": aid.model, "format": aid.format, "precision": aid.precision,
            "file": file, "inputs": inputs, "outputs": outputs, "quantization": quantization.to_dict(),
            "parity": {"deployable": report.deployable, "reason": report.reason}}
    return BundleManifest.from_dict(data, file=f"{aid.name}/{MANIFEST_FILE}")


def write_bundle(folder: Path, files: dict[str, bytes], manifest: BundleManifest, parity: ParityReport,
                 run: RunDir) -> None:
    """files: {name in bundle: bytes}; the vocabularies the manifest names come from RUN/preprocess/. Written to a
    temporary folder, then renamed into place (an interrupted write keeps the previous bundle)."""
    def build(tmp: Path):
        tmp.mkdir(parents=True)
        for name, content in files.items():
            (tmp / name).write_bytes(content)
        for entry in manifest.inputs:
            for name in entry.file_names():
                shutil.copy(run.vocab(entry.name), tmp / name)
        (tmp / MANIFEST_FILE).write_text(manifest.to_json())
        (tmp / PARITY_FILE).write_text(parity.to_json())

    atomic_save(folder, build)
