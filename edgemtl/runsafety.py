"""Writes that never leave a half file looking done, and the run directory's safety: temporaries, run markers, the
run lock, refused legacy model files, disk-full errors and the test-only kill points. TF-free.

Every file edgemtl writes goes through atomic_write_text / atomic_save: a temporary `.tmp-<pid>-<name>` beside the
target, then a rename. A kill in between leaves only the temporary, which the next writer removes once its process
is gone; a full disk (or any OS error) removes it at once and keeps the previous file.
"""
import errno
import fcntl
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections import Counter
from pathlib import Path

from . import jsonio
from .errors import EdgemtlError

log = logging.getLogger("edgemtl")

TMP_PREFIX = ".tmp-"  # .tmp-<pid>-<name>: what a write in progress (or killed) leaves; never an artifact
RUN_MARKER = ".edgemtl-run"  # written into every run directory edgemtl creates: only such folders are ever deleted
LOCK_FILE = ".lock"
MODEL_FILE, QAT_WEIGHTS_FILE, LEGACY_H5_FILE = "model.keras", "model.qat-weights.h5", "model.h5"
# folders of a run where writes happen (and a kill can leave a temporary); models/<model>/ are added per model
RUN_WRITE_FOLDERS = (".", "preprocess", "models", "exports", "exports/rejected", "cache", "bench")
_held_locks: dict = {}  # resolved run root -> open lock file (flock is held while it stays open)

# Set by the command line's SIGTERM handler. A stop that lands inside a converter's C++ code comes back as the
# converter's own error ("... REPLACED BY KeyboardInterrupt"): with this flag it is still a stop, not a failed
# artifact.
STOP_REQUESTED = threading.Event()


def interrupted(error: BaseException) -> bool:
    """Whether this error is a SIGTERM or Ctrl-C that a library turned into an exception of its own."""
    return STOP_REQUESTED.is_set() or "KeyboardInterrupt" in str(error)


# --- test-only kill points -----------------------------------------------------------------------------------------
KILL_ENV = "EDGEMTL_TEST_KILL_AT"  # "<point>" or "<point>#<n>": SIGKILL this process at the n-th hit (docs/testing.md)
_kill_hits: Counter = Counter()


def kill_point(point: str) -> None:
    """Tests only: when EDGEMTL_TEST_KILL_AT names this point, the process kills itself (SIGKILL, as `kill -9`
    would), so a kill test needs no timing luck. Points: `before-rename:<file or folder name>` (the temporary is
    complete, the rename not done), `after-rename:<name>`, `epoch-end:<model>` (a finished epoch's history row was
    appended), `pack-before-rename`; `<point>#<n>` kills at the n-th hit of the point."""
    wanted = os.environ.get(KILL_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition("#")
    if name != point:
        return
    _kill_hits[point] += 1
    if _kill_hits[point] >= (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)


# --- permissions and OS errors ----------------------------------------------------------------------------------------
_umask_lock = threading.Lock()


def file_mode() -> int:
    """The mode a plain open() would give a new file under this process's umask (mkstemp's is always 0600)."""
    with _umask_lock:
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(error: BaseException) -> bool:
    """An OSError of a full disk or quota, or a library's error wrapping one (h5py, TensorFlow: by its message)."""
    text = str(error)
    return getattr(error, "errno", None) in DISK_FULL or "No space left on device" in text \
        or "Disk quota exceeded" in text


def write_error(path, error: BaseException) -> EdgemtlError | None:
    """The one-line error for an OS error while writing `path` (a full disk, a read-only folder, no permission);
    None for anything else. Some libraries (h5py, TensorFlow) wrap the OSError: their message is matched too."""
    code = getattr(error, "errno", None)
    if is_disk_full(error):
        why = "the disk is full (no space left on device)"
    elif isinstance(error, OSError) and code is not None:
        why = os.strerror(code).lower()
    else:
        return None
    return EdgemtlError(f"{path}: cannot write: {why}; the previous file is kept and the partial one removed")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --- atomic writes ---------------------------------------------------------------------------------------------------
def atomic_write_text(path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename, with the umask's file mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{os.getpid()}-{path.name}.")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "w") as f:
            f.write(text)
        kill_point(f"before-rename:{path.name}")
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        mapped = write_error(path, e) if isinstance(e, Exception) else None
        if mapped:
            raise mapped from None
        raise
    kill_point(f"after-rename:{path.name}")


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
        _remove(tmp)
    try:
        save_fn(tmp)
        kill_point(f"before-rename:{path.name}")
    except BaseException as e:
        _remove(tmp)
        mapped = write_error(path, e) if isinstance(e, Exception) else None
        if mapped:
            raise mapped from None
        raise
    if path.is_dir():
        remove_tree(path)
    os.replace(tmp, path)
    kill_point(f"after-rename:{path.name}")


# --- temporaries ---------------------------------------------------------------------------------------------------
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
            _remove(entry)


SYSTEM_TMP_PREFIX = "edgemtl-"  # edgemtl-<what>-<pid>-*: scratch folders in the system temp folder


def system_temp_prefix(what: str) -> str:
    """The prefix of a scratch folder in the system temp folder (tempfile.TemporaryDirectory(prefix=...)): it
    carries the pid, so what a kill leaves there is removed at the next start (clean_run_temporaries)."""
    return f"{SYSTEM_TMP_PREFIX}{what}-{os.getpid()}-"


def remove_stale_system_temporaries() -> None:
    """Delete edgemtl-<what>-<pid>-* folders of the system temp folder whose process is gone."""
    for entry in Path(tempfile.gettempdir()).glob(f"{SYSTEM_TMP_PREFIX}*-*"):
        pid = next((part for part in entry.name.split("-")[2:] if part.isdigit()), None)
        if pid and int(pid) != os.getpid() and not _pid_alive(int(pid)) and entry.is_dir() \
                and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


def clean_run_temporaries(root) -> None:
    """Remove what killed edgemtl processes left in a run (temporaries of dead pids in every folder a stage writes,
    models/<model>/ included): done when a writing command takes the run lock, i.e. at the next start."""
    root = Path(root)
    folders = [root / f for f in RUN_WRITE_FOLDERS]
    models = root / "models"
    if models.is_dir():
        folders += [p for p in models.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for folder in folders:
        if folder.is_dir():
            remove_stale_temporaries(folder)
    remove_stale_system_temporaries()


def remove_tree(path) -> None:
    """Delete a folder so that a kill part-way never leaves it half there: rename it to a temporary name first."""
    path = Path(path)
    doomed = path.parent / f"{TMP_PREFIX}{os.getpid()}-deleted-{path.name}"
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


# --- run markers -----------------------------------------------------------------------------------------------------
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


# --- the run lock ----------------------------------------------------------------------------------------------------
def lock_run(root) -> None:
    """Hold an exclusive lock on RUN/.lock until release_run_locks() (or exit): two edgemtl processes writing one
    run would race on the same files. Taken again by the same process, it is a no-op. Taking it removes what killed
    processes left in the run (clean_run_temporaries)."""
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
    try:  # unbuffered: nothing is left to flush (and fail) when the file is closed
        os.ftruncate(f.fileno(), 0)
        os.pwrite(f.fileno(), f"{os.getpid()}\n".encode(), 0)
    except OSError:  # a full disk: the lock is held all the same, only its holder's pid is not shown to others
        pass
    _held_locks[key] = f
    clean_run_temporaries(root)


def release_run_locks() -> None:
    for f in _held_locks.values():
        try:
            f.close()
        except OSError:
            pass
    _held_locks.clear()


def refuse_legacy_h5(model_dir) -> None:
    """A full Keras model in the legacy .h5 format runs code on load (its Lambda layers' bytecode: tf_keras ignores
    safe_mode there), so edgemtl never loads one; a planted model.h5 is named, not skipped silently."""
    legacy = Path(model_dir) / LEGACY_H5_FILE
    if legacy.exists():
        raise EdgemtlError(f"{legacy}: edgemtl never loads legacy .h5 model files (they can run code on load); "
                           f"models are {MODEL_FILE} (loaded in safe mode) or {QAT_WEIGHTS_FILE} (weights only): "
                           f"remove it, or run compress again if an older edgemtl wrote it")
