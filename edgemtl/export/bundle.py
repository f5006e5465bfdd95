"""A bundle is a folder a device can use alone: the model file, manifest.json, the tokenizer vocabularies,
parity.json. Only a bundle that passed the parity gate lands in RUN/exports/; a failed one goes to exports/rejected/."""
import shutil
from pathlib import Path

from .. import __version__, kinds
from ..artifacts import MANIFEST_FILE, PARITY_FILE, ArtifactId
from ..presence import presence_name
from ..recipe.schema import InputSpec, Recipe, TaskSpec
from ..rundir import RunDir, atomic_save
from ..runtime.manifest import SCHEMA_VERSION, BundleManifest, Memory, ParityReport, Quantization, RuntimeConfig


def input_entry(inp: InputSpec, spec) -> dict:
    """The manifest entry of an input; spec: the exported signature's TensorSpec (dtype and shape as exported). An
    optional input names its presence input (a model input of its own, not an entry)."""
    entry = kinds.modality(inp.type).manifest_entry(inp, spec.dtype.name, spec.shape[1:])
    return {**entry, "optional": True, "presence": presence_name(inp.name)} if inp.optional else entry


def output_entry(task: TaskSpec, label_spec: dict) -> dict:
    return kinds.task_kind(task.type).output_entry(task, label_spec)


def build_manifest(run: RunDir, recipe: Recipe, aid: ArtifactId, file: str, inputs: list[dict],
                   outputs: list[dict], quantization: Quantization, report: ParityReport,
                   memory: Memory | None = None, selection: dict | None = None) -> BundleManifest:
    """The bundle's manifest, read back through its own reader: a writer bug is caught here, not on a device."""
    data = {"schema_version": SCHEMA_VERSION, "edgemtl_version": __version__, "recipe": recipe.name,
            "recipe_hash": run.recipe_hash(), "model": aid.model, "format": aid.format, "precision": aid.precision,
            "file": file, "inputs": inputs, "outputs": outputs, "quantization": quantization.to_dict(),
            "parity": {"deployable": report.deployable, "reason": report.reason},
            "runtime": (report.runtime or RuntimeConfig()).to_dict()}
    if memory is not None:
        data["memory"] = memory.to_dict()
    if selection is not None:  # the precision search's measured recommendation (export/search.py)
        data["selection"] = selection
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


def place_bundle(run: RunDir, aid: ArtifactId, files: dict[str, bytes], manifest: BundleManifest,
                 parity: ParityReport) -> Path:
    """A deployable bundle goes to RUN/exports/<artifact>/ (its old rejected copy is removed); a failed one to
    RUN/exports/rejected/<artifact>/ with its parity.json, and never replaces a deployable bundle already in place
    (a failed bundle there from an older export is removed: exports/ holds what passed). Returns where it went."""
    target, rejected = run.bundle_dir(aid), run.rejected_dir(aid)
    if parity.deployable:
        write_bundle(target, files, manifest, parity, run)
        shutil.rmtree(rejected, ignore_errors=True)
        return target
    write_bundle(rejected, files, manifest, parity, run)
    if target.exists() and not _is_deployable(target):
        shutil.rmtree(target, ignore_errors=True)
    return rejected


def _is_deployable(folder: Path) -> bool:
    from ..errors import EdgemtlError

    try:
        return BundleManifest.read(folder).deployable
    except EdgemtlError:
        return False
