"""Strict JSON for every file edgemtl writes: no bare NaN/Infinity (invalid JSON for other tools), and readers that
name the file when it is missing, truncated or not JSON. TF-free, numpy-free: the runtime reads bundles with it."""
import json
import math
from pathlib import Path
from typing import Any

from .errors import EdgemtlError

NULL_REASONS = "null_reasons"  # key of {dotted key: why it is null} in files whose values can be missing


def strict(value: Any, where: str = "") -> tuple[Any, dict[str, str]]:
    """value with every non-finite float replaced by None, and {dotted key: reason} for each one replaced.
    Tuples become lists; numpy scalars and arrays (anything with .tolist()) become plain numbers and lists."""
    reasons: dict[str, str] = {}

    def clean(v, key):
        if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
            v = v.tolist()
        if isinstance(v, float) and not math.isfinite(v):
            reasons[key] = "not a number (NaN)" if math.isnan(v) else f"{'' if v > 0 else '-'}infinite"
            return None
        if isinstance(v, dict):
            return {str(k): clean(x, f"{key}.{k}" if key else str(k)) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x, f"{key}[{i}]") for i, x in enumerate(v)]
        return v

    return clean(value, where), reasons


def dumps(value: Any, with_reasons: bool = False) -> str:
    """Indented strict JSON text with a final newline; non-finite floats become null (see strict). with_reasons: an
    object also records why under NULL_REASONS ({"tasks.age.drop": "not a number (NaN)"}), next to reasons it has."""
    clean, found = strict(value)
    if with_reasons and found and isinstance(clean, dict):
        clean[NULL_REASONS] = {**(clean.get(NULL_REASONS) or {}), **found}
    return json.dumps(clean, indent=2, allow_nan=False) + "\n"


def loads(text: str, where: str) -> Any:
    """Parse JSON text; where names the file in the error. Bare NaN/Infinity (files of older versions) read as
    None, as the writer would have stored them."""
    try:
        return json.loads(text, parse_constant=lambda _: None)
    except RecursionError:
        raise EdgemtlError(f"{where}: not valid JSON: nested too deeply") from None
    except json.JSONDecodeError as e:
        cut = " (the file ends early: truncated by an interrupted write?)" if e.pos >= len(text.rstrip()) else ""
        raise EdgemtlError(f"{where}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}{cut}") from None


def read(path: Path, what: str = "file") -> Any:
    """Read and parse a JSON file; EdgemtlError naming it when it is missing, a folder, not UTF-8 or not JSON."""
    path = Path(path)
    if not path.exists():
        raise EdgemtlError(f"{path}: {what} not found")
    if not path.is_file():
        raise EdgemtlError(f"{path}: {what} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EdgemtlError(f"{path}: {what} is not UTF-8 text (a binary file?)") from None
    except OSError as e:
        raise EdgemtlError(f"{path}: cannot read {what}: {e.strerror}") from None
    return loads(text, str(path))
