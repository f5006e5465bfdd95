"""Run-directory layout and atomic writes: an interrupted stage never leaves a half file that looks done."""
import fcntl
import logging
import os
import platform
import shutil
import tempfile
from pathlib import Path

from . import jsonio
from .artifacts import MANIFEST_FILE, PARITY_FILE, ArtifactId
from .errors import EdgemtlError

log = logging.getLogger("edgemtl")


class RunDir:
    """Paths of one run directory (see README 'Run directory'): every file and folder of a run is named here, so
    no other module spells a path literal.

    RUN/recipe.yaml, env.json, report.md, report.html, compress.md, compress.json
    RUN/preprocess/      labels.json, vocab_<input>.txt, split.csv (each manifest row's split: row, split[, group])
    RUN/models/<model>/  model.keras (model.h5: quantization-aware), saved_model/, metrics.json, history.jsonl,
                         test_predictions.npz,
                         backup/ (while training), tensorboard/
    RUN/exports/<model>-<format>-<precision>/   bundles (manifest.json, parity.json, model file, vocabularies)
    RUN/exports/<model>-summary.json, RUN/exports/rejected/<artifact>/ (bundles that failed the gate)
    RUN/cache/<digest>.tflite  int8 conversions shared by compress and export
    RUN/bench/           results.json, report.md, report.html, pareto.png
    """

    def __init__(self, root):
        self.root = Path(root)

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def env(self) -> Path:
        return self.root / "env.json"

    @property
    def preprocess(self) -> Path:
        return self.root / "preprocess"

    def model_dir(self, name: str) -> Path:
        return self.root / "models" / name

    def model_file(self, name: str) -> Path:
        """model.keras, or model.qat-weights.h5 for quantization-aware models (weights only: tfmot's wrappers do not
        round-trip .keras; the model is rebuilt from its base, see models.build.load_model). A legacy model.h5 is
        returned only when nothing else is there, so that loading it is refused by name."""
        folder = self.model_dir(name)
        for file in (MODEL_FILE, QAT_WEIGHTS_FILE, LEGACY_H5_FILE):
            if (folder / file).exists():
                return folder / file
        return folder / MODEL_FILE

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        """The one page people open: every section of the run, self-contained."""
        return self.root / "report.html"

    # --- preprocess/ ---
    @property
    def labels(self) -> Path:
        """Label vocabularies and regression statistics learnt on the training split."""
        return self.preprocess / LABELS_FILE

    @property
    def split(self) -> Path:
        """Each manifest row's split (row, split[, group]): written by the first stage that splits, then reused."""
        return self.preprocess / SPLIT_FILE

    def vocab(self, input_name: str) -> Path:
        """A text input's tokenizer vocabulary; a bundle carries it under the same file name."""
        return self.preprocess / vocab_file_name(input_name)

    # --- models/<model>/ ---
    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def keras_file(self, name: str) -> Path:
        return self.model_dir(name) / MODEL_FILE

    def qat_weights_file(self, name: str) -> Path:
        return self.model_dir(name) / QAT_WEIGHTS_FILE

    def saved_model(self, name: str) -> Path:
        return self.model_dir(name) / "saved_model"

    def metrics_file(self, name: str) -> Path:
        return self.model_dir(name) / METRICS_FILE

    def history(self, name: str) -> Path:
        return self.model_dir(name) / HISTORY_FILE

    def test_predictions(self, name: str) -> Path:
        """evaluate's decisions on the test split, per task ("<task>.true", "<task>.pred"): the report's confusion
        matrices and per-class metrics are computed from it without TensorFlow."""
        return self.model_dir(name) / "test_predictions.npz"

    def backup(self, name: str) -> Path:
        """Keras BackupAndRestore's folder: present while a training can be resumed."""
        return self.model_dir(name) / "backup"

    def tensorboard(self, name: str) -> Path:
        return self.model_dir(name) / "tensorboard"

    # --- exports/ ---
    @property
    def exports(self) -> Path:
        return self.root / "exports"

    def bundle_dir(self, artifact: ArtifactId) -> Path:
        return self.exports / artifact.name

    def bundle_manifest(self, artifact: ArtifactId) -> Path:
        return self.bundle_dir(artifact) / MANIFEST_FILE

    def bundle_parity(self, artifact: ArtifactId) -> Path:
        return self.bundle_dir(artifact) / PARITY_FILE

    def bundles(self) -> list[ArtifactId]:
        """The run's bundles, sorted: folders of exports/ named <model>-<format>-<precision> holding a manifest.
        Names starting with '.' (a bundle being written, or left by a kill) and rejected/ are never bundles."""
        return _bundles_in(self.exports)

    @property
    def rejected(self) -> Path:
        """Bundles that failed the parity gate, kept apart so they never replace or pass for a deployable one."""
        return self.exports / REJECTED_DIR

    def rejected_dir(self, artifact: ArtifactId) -> Path:
        return self.rejected / artifact.name

    def rejected_bundles(self) -> list[ArtifactId]:
        return _bundles_in(self.rejected)

    def export_summary(self, model: str) -> Path:
        """One row per artifact of the model's last export (deployable or not, with the reason)."""
        return self.exports / f"{model}-summary.json"

    # --- cache/ ---
    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def cache_file(self, digest: str, suffix: str = ".tflite") -> Path:
        """A converted model keyed by the digest of everything that made it."""
        return self.cache / f"{digest}{suffix}"

    # --- compress ---
    @property
    def compress_md(self) -> Path:
        return self.root / "compress.md"

    @property
    def compress_json(self) -> Path:
        return self.root / "compress.json"

    # --- bench/ ---
    @property
    def bench_dir(self) -> Path:
        return self.root / "bench"

    @property
    def bench_results(self) -> Path:
        return self.bench_dir / "results.json"

    @property
    def bench_report(self) -> Path:
        return self.bench_dir / "report.md"

    @property
    def bench_html(self) -> Path:
        return self.bench_dir / "report.html"

    @property
    def pareto_png(self) -> Path:
        return self.bench_dir / "pareto.png"

    def models(self) -> list[str]:
        base = self.models_dir
        return sorted({p.parent.name for p in base.glob("*/model.*") if p.suffix in (".keras", ".h5")
                       and not p.parent.name.startswith(".")}) if base.exists() else []

    def require_model(self, name: str) -> Path:
        path = self.model_file(name)
        refuse_legacy_h5(self.model_dir(name))
        if not path.exists():
            have = ", ".join(self.models()) or "none"
            raise EdgemtlError(f"{self.root}: no model '{name}' (models/{name}/{path.name} missing; have: {have})")
        return path

    def recipe_hash(self) -> str:
        """The hash written on the first line of recipe.yaml when the run was made."""
        first = self.recipe.read_text().splitlines()[0] if self.recipe.exists() else ""
        return first.split(":", 1)[1].strip() if first.startswith("# recipe_hash:") else "?"

    def require_recipe(self) -> Path:
        if not self.recipe.exists():
            raise EdgemtlError(f"{self.root}: not a run directory (no recipe.yaml); train one with 'edgemtl train'")
        return self.recipe


METRICS_FILE, HISTORY_FILE = "metrics.json", "history.jsonl"
LABELS_FILE = "labels.json"
SPLIT_FILE = "split.csv"
REJECTED_DIR = "rejected"


def vocab_file_name(input_name: str) -> str:
    return f"vocab_{input_name}.txt"


def _bundles_in(folder: Path) -> list[ArtifactId]:
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        if path.name.startswith(".") or path.name == REJECTED_DIR or not path.is_dir():
            continue
        if not ArtifactId.is_artifact_name(path.name):
            log.warning("%s: not a bundle name <model>-<format>-<precision>; ignored", path)
        elif (path / MANIFEST_FILE).is_file():
            found.append(ArtifactId.parse(path.name))
    return sorted(found)


def atomic_write_text(path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{os.getpid()}-{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files: a report should be as readable as any other file
    os.replace(tmp, path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path, data) -> None:
    """Strict JSON (jsonio.dumps): numpy values become plain numbers, NaN/Infinity become null, so every file edgemtl
    writes is valid JSON for other tools. Files whose values can be missing say why (jsonio.NULL_REASONS)."""
    atomic_write_text(path, jsonio.dumps(data, with_reasons=True))


def atomic_save(path, save_fn) -> None:
    """Call save_fn(tmp_path) then move the result (file or directory) into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    tmp = path.parent / f"{TMP_PREFIX}{os.getpid()}-{path.name}"
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    try:
        save_fn(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise
    if path.is_dir():
        remove_tree(path)
    os.replace(tmp, path)


# --- safety: temporaries, run markers, locks, legacy model files -------------------------------------------------
TMP_PREFIX = ".tmp-"  # .tmp-<pid>-<name>: what a write in progress (or killed) leaves; never an artifact
RUN_MARKER = ".edgemtl-run"  # written into every run directory edgemtl creates: only such folders are ever deleted
LOCK_FILE = ".lock"
MODEL_FILE, QAT_WEIGHTS_FILE, LEGACY_H5_FILE = "model.keras", "model.qat-weights.h5", "model.h5"
_held_locks: dict = {}  # resolved run root -> open lock file (flock is held while it stays open)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder) -> None:
    """Delete .tmp-<pid>-* entries of `folder` whose process is gone (a kill between writing and renaming)."""
    for entry in Path(folder).glob(f"{TMP_PREFIX}*"):
        pid = entry.name[len(TMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() and not entry.is_symlink() \
                else entry.unlink(missing_ok=True)


def remove_tree(path) -> None:
    """Delete a folder so that a kill part-way never leaves it half there: rename it to a temporary name first."""
    path = Path(path)
    doomed = path.parent / f"{TMP_PREFIX}{os.getpid()}-deleted-{path.name}"
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def mark_run(root) -> None:
    """RUN/.edgemtl-run: this folder was made by edgemtl (and may be replaced by --overwrite)."""
    from . import __version__

    marker = Path(root) / RUN_MARKER
    if not marker.exists():
        atomic_write_text(marker, f"edgemtl {__version__}\n")


def is_edgemtl_run(root) -> bool:
    """A run directory edgemtl made: its marker, or (runs made before the marker) a recipe.yaml with the hash line."""
    root = Path(root)
    if (root / RUN_MARKER).is_file():
        return True
    recipe = root / "recipe.yaml"
    try:
        with open(recipe, "rb") as f:
            return f.read(15) == b"# recipe_hash: "
    except OSError:
        return False


def check_replaceable_run(root, protected=()) -> None:
    """Refuse (naming the folder) to delete anything but a run directory edgemtl made, or one holding a
    protected path (the recipe file, its data source)."""
    root = Path(root)
    if root.is_symlink() or not root.is_dir():
        raise EdgemtlError(f"{root}: --overwrite replaces run directories only, and this is not a folder")
    if not is_edgemtl_run(root):
        raise EdgemtlError(f"{root}: not a run directory made by edgemtl (no {RUN_MARKER}); --overwrite never "
                           f"deletes other folders: choose another --out")
    resolved = root.resolve()
    for path in protected:
        if path and _inside(Path(path).resolve(), resolved):
            raise EdgemtlError(f"{root}: holds {path}; --overwrite would delete it: choose another --out")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def clear_run_dir(root, protected=()) -> None:
    """--overwrite: empty a run directory edgemtl made (keeping its lock file, which this process holds)."""
    check_replaceable_run(root, protected)
    lock_run(root)
    for entry in Path(root).iterdir():
        if entry.name == LOCK_FILE:
            continue
        remove_tree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def lock_run(root) -> None:
    """Hold an exclusive lock on RUN/.lock until release_run_locks() (or exit): two edgemtl processes writing one
    run would race on the same files. Taken again by the same process, it is a no-op."""
    root = Path(root)
    key = str(root.resolve())
    if key in _held_locks:
        return
    root.mkdir(parents=True, exist_ok=True)
    try:
        f = open(root / LOCK_FILE, "a+")
    except OSError:  # a read-only copy (e.g. a packed run on a device): nothing can be written there to race on
        return
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        raise EdgemtlError(f"{root} is in use by another edgemtl process (pid {holder}); wait for it to finish") \
            from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    _held_locks[key] = f


def release_run_locks() -> None:
    for f in _held_locks.values():
        f.close()
    _held_locks.clear()


def refuse_legacy_h5(model_dir) -> None:
    """A full Keras model in the legacy .h5 format runs code on load (its Lambda layers' bytecode: tf_keras ignores
    safe_mode there), so edgemtl never loads one; a planted model.h5 is named, not skipped silently."""
    legacy = Path(model_dir) / LEGACY_H5_FILE
    if legacy.exists():
        raise EdgemtlError(f"{legacy}: edgemtl never loads legacy .h5 model files (they can run code on load); "
                           f"models are {MODEL_FILE} (loaded in safe mode) or {QAT_WEIGHTS_FILE} (weights only): "
                           f"remove it, or run compress again if an older edgemtl wrote it")


def environment_info(seed: int) -> dict:
    import numpy as np

    info = {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
            "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "numpy": np.__version__, "seed": seed}
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    except ImportError:
        pass
    from . import __version__

    info["edgemtl"] = __version__
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
