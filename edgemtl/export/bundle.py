"""A bundle is a folder a device can use alone: the model file, manifest.json, the tokenizer vocabularies, parity.json."""
import json
import shutil
from pathlib import Path

from ..recipe.schema import InputSpec, Recipe, TaskSpec
from .. import __version__
from ..data.features import clip_samples
from ..rundir import atomic_save

SCHEMA_VERSION = 1
DECODE = {"multiclass": "argmax", "binary": "threshold", "multilabel": "threshold", "regression": "value"}


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
