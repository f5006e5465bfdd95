"""Paths read from a manifest, bundle or run directory resolve inside it: no absolute paths, no `..`, no symlink
that leads out. TF-free."""
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import EdgemtlError


def check_relative(name: str, where: str) -> str:
    """A relative file name without `..` (the check that needs no folder); EdgemtlError naming `where`."""
    if not isinstance(name, str) or not name.strip():
        raise EdgemtlError(f"{where}: expected a file name, got {name!r}")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise EdgemtlError(f"{where}: '{name}' is an absolute path; only names inside the folder are allowed")
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise EdgemtlError(f"{where}: '{name}' leads out of the folder ('..'); only names inside it are allowed")
    return name


def resolve_inside(folder: Path, name: str, where: str) -> Path:
    """folder / name, refused (EdgemtlError naming `where`) unless it stays inside folder once symlinks resolve."""
    check_relative(name, where)
    path = Path(folder) / name
    if not path.resolve().is_relative_to(Path(folder).resolve()):
        raise EdgemtlError(f"{where}: '{name}' resolves outside {folder} (a symlink to {path.resolve()})")
    return path
