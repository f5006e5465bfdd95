"""Run-directory layout and atomic writes: an interrupted stage never leaves a half file that looks done."""
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

from .errors import EdgemtlError


class RunDir:
    """Paths of one run directory (see README 'Run directory')."""

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
        """model.keras, or model.h5 for quantization-aware models (tfmot's wrappers do not round-trip .keras)."""
        h5 = self.model_dir(name) / "model.h5"
        return h5 if h5.exists() else self.model_dir(name) / "model.keras"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    def models(self) -> list[str]:
        base = self.root / "models"
        return sorted({p.parent.name for p in base.glob("*/model.*") if p.suffix in (".keras", ".h5")}) \
            if base.exists() else []

    def require_model(self, name: str) -> Path:
        path = self.model_file(name)
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


def atomic_write_text(path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def atomic_write_json(path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_save(path, save_fn) -> None:
    """Call save_fn(tmp_path) then move the result (file or directory) into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{os.getpid()}-{path.name}"
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    try:
        save_fn(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise
    if path.is_dir():
        shutil.rmtree(path)
    os.replace(tmp, path)


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
