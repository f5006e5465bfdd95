"""Run-directory layout (RunDir: every path of a run). The writes themselves, temporaries, markers and the run lock
are in runsafety.py, re-exported here for the modules that import them from rundir."""
import errno
import logging
import os
import platform
import tempfile
from pathlib import Path

from .artifacts import MANIFEST_FILE, PARITY_FILE, ArtifactId
from .errors import EdgemtlError
from .runsafety import (  # noqa: F401 - re-exported
    LEGACY_H5_FILE,
    LOCK_FILE,
    MODEL_FILE,
    QAT_WEIGHTS_FILE,
    RUN_MARKER,
    TMP_PREFIX,
    atomic_save,
    atomic_write_json,
    atomic_write_text,
    check_replaceable_run,
    clean_run_temporaries,
    clear_run_dir,
    is_edgemtl_run,
    kill_point,
    lock_run,
    mark_run,
    refuse_legacy_h5,
    release_run_locks,
    remove_stale_temporaries,
    remove_tree,
    system_temp_prefix,
    write_error,
)

log = logging.getLogger("edgemtl")


class RunDir:
    """Paths of one run directory (see README 'Run directory'): every file and folder of a run is named here, so
    no other module spells a path literal.

    RUN/recipe.yaml, env.json, report.md, report.html, compress.md, compress.json, student_search.json
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

    @property
    def student_search(self) -> Path:
        """compress.student.target_ms / target_speedup: the candidate students measured, the teacher's time beside
        them and the one chosen (reused by a later compress with the same key)."""
        return self.root / "student_search.json"

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

    def scratch(self, what: str) -> Path:
        """A new scratch folder RUN/.tmp-<pid>-<what>-*: inside the run (not the system temp folder), so what a kill
        leaves is removed when the next writing command takes the run lock. A read-only run: the system temp."""
        prefix = f"{TMP_PREFIX}{os.getpid()}-{what}-"
        try:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=self.root.resolve()))  # absolute: converters chdir
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise write_error(self.root / prefix, e) or e from None
            return Path(tempfile.mkdtemp(prefix=system_temp_prefix(what)))

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
