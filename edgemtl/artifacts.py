"""Artifact identity: ArtifactId(model, format, precision) <-> the bundle folder name `<model>-<format>-<precision>`,
and the names of the files inside a bundle. TF-free: the runtime, bench and pack use it.

Model names may hold hyphens (student-qat, single-<task>), so a name is parsed from the right: the last part is a
precision, the one before it a format (names.PRECISIONS / names.FORMATS), the rest is the model.
"""
from dataclasses import dataclass
from functools import total_ordering

from .errors import EdgemtlError
from .names import FORMAT_PRECISIONS, FORMATS, INT8_PRECISIONS, PRECISIONS, SINGLE_TASK_PREFIX

# files of a bundle folder
MANIFEST_FILE = "manifest.json"
PARITY_FILE = "parity.json"
C_ARRAY_NAME = "model_data"  # a C bundle's model_data.h / model_data.cc
KERAS_SUFFIX = "-keras"  # bench's name for the Keras model behind artifacts: "<model>-keras"


@total_ordering
@dataclass(frozen=True)
class ArtifactId:
    """One exported artifact of a run. Sorted by model, then format and precision in names' order."""
    model: str
    format: str
    precision: str

    @property
    def name(self) -> str:
        """The bundle folder name under RUN/exports/."""
        return f"{self.model}-{self.format}-{self.precision}"

    @property
    def is_int8(self) -> bool:
        """Full-integer (int8, int8io): calibrated, converted in a child process, all a QAT model exports to."""
        return self.precision in INT8_PRECISIONS

    @property
    def task(self) -> str | None:
        """The task of a single-task model's artifact (single-<task>), else None."""
        return single_task_of(self.model)

    def with_model(self, model: str) -> "ArtifactId":
        return ArtifactId(model, self.format, self.precision)

    @classmethod
    def parse(cls, name: str, where: str = "artifact") -> "ArtifactId":
        """`student-qat-tflite-int8` -> ArtifactId("student-qat", "tflite", "int8"); EdgemtlError naming `where`."""
        if not isinstance(name, str):
            raise EdgemtlError(f"{where}: expected an artifact name <model>-<format>-<precision>, got "
                               f"{type(name).__name__}")
        precision = _suffix(name, PRECISIONS)
        rest = name[:-len(precision) - 1] if precision else ""
        fmt = _suffix(rest, FORMATS) if precision else None
        model = rest[:-len(fmt) - 1] if fmt else ""
        if not precision or not fmt or not model:
            raise EdgemtlError(f"{where}: '{name}' is not an artifact name <model>-<format>-<precision> (formats: "
                               f"{', '.join(FORMATS)}; precisions: {', '.join(PRECISIONS)})")
        check_model_name(model, f"{where}: '{name}'")
        if precision not in FORMAT_PRECISIONS[fmt]:
            raise EdgemtlError(f"{where}: '{name}': {fmt} has no precision {precision} (one of "
                               f"{', '.join(FORMAT_PRECISIONS[fmt])})")
        return cls(model, fmt, precision)

    @classmethod
    def is_artifact_name(cls, name: str) -> bool:
        try:
            cls.parse(name)
        except EdgemtlError:
            return False
        return True

    def _key(self) -> tuple:
        return self.model, FORMATS.index(self.format), PRECISIONS.index(self.precision)

    def __lt__(self, other: "ArtifactId") -> bool:
        if not isinstance(other, ArtifactId):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        return self.name


def _suffix(name: str, choices) -> str | None:
    """The longest choice that `name` ends with after a hyphen (int8io before int8)."""
    found = [c for c in choices if name.endswith(f"-{c}")]
    return max(found, key=len) if found else None


def check_model_name(model: str, where: str) -> str:
    """A model name is one folder name under RUN/models/: not empty, no path separator, not hidden."""
    if not model or model.startswith(".") or "/" in model or "\\" in model or model != model.strip():
        raise EdgemtlError(f"{where}: model name '{model}' must be one plain folder name (no '/', not starting "
                           f"with '.')")
    return model


def single_task_name(task: str) -> str:
    """The model trained on one task alone: single-<task>."""
    return f"{SINGLE_TASK_PREFIX}{task}"


def single_task_of(model: str) -> str | None:
    """single-<task> -> task; any other model name -> None."""
    return model[len(SINGLE_TASK_PREFIX):] or None if model.startswith(SINGLE_TASK_PREFIX) else None


def keras_target_name(model: str) -> str:
    """bench's row name for a Keras model: <model>-keras."""
    return f"{model}{KERAS_SUFFIX}"


def model_of_target(name: str) -> str:
    """The model behind a bench target name: an artifact name or <model>-keras."""
    if name.endswith(KERAS_SUFFIX) and not ArtifactId.is_artifact_name(name):
        return name[:-len(KERAS_SUFFIX)]
    return ArtifactId.parse(name, "bench target").model
