"""A bundle is a folder a device can use alone: the model file, manifest.json, the tokenizer vocabularies, parity.json."""
import json
import shutil
from pathlib import Path

from .. import __version__, kinds
from ..recipe.schema import InputSpec, Recipe, TaskSpec
from ..rundir import atomic_save

SCHEMA_VERSION = 1


def input_entry(inp: InputSpec, spec) -> dict:
    """The manifest entry of an input; spec: the exported signature's TensorSpec (dtype and shape as exported)."""
    return kinds.modality(inp.type).manifest_entry(inp, spec.dtype.name, spec.shape[1:])


def output_entry(task: TaskSpec, label_spec: dict) -> dict:
    return kinds.task_kind(task.type).output_entry(task, label_spec)


def write_bundle(folder: Path, files: dict, manifest: dict, parity: dict, preprocess_dir: Path) -> None:
    """files: {name in bundle: bytes}. Written to a temporary folder, then renamed into place."""
    def build(tmp: Path):
        tmp.mkdir(parents=True)
        for name, content in files.items():
            (tmp / name).write_bytes(content)
        for entry in manifest["inputs"]:
            vocab = entry.get("preprocess", {}).get("vocab")
            if vocab:
                shutil.copy(preprocess_dir / vocab, tmp / vocab)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (tmp / "parity.json").write_text(json.dumps(parity, indent=2) + "\n")

    atomic_save(folder, build)


def base_manifest(recipe: Recipe, digest: str, model_name: str, fmt: str, precision: str, file: str) -> dict:
    return {"schema_version": SCHEMA_VERSION, "edgemtl_version": __version__, "recipe": recipe.name,
            "recipe_hash": digest, "model": model_name, "format": fmt, "precision": precision, "file": file}
