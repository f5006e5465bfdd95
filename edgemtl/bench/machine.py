"""What the numbers were measured on: CPU model and flags, cores, GPU, library versions."""
import os
import platform
import shutil
import subprocess
from importlib import metadata

from ..env_info import cpu_info

LIBRARIES = ("edgemtl", "numpy", "ai-edge-litert", "onnxruntime-gpu", "onnxruntime", "tensorflow", "tf-keras")


def gpu_info() -> dict:
    """The GPU as nvidia-smi sees it, or why there is none."""
    if not shutil.which("nvidia-smi"):
        return {"present": False, "reason": "no NVIDIA driver (nvidia-smi not found)"}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"present": False, "reason": f"nvidia-smi failed ({e})"}
    lines = [x.strip() for x in out.stdout.splitlines() if x.strip()]
    if out.returncode != 0 or not lines:
        return {"present": False, "reason": "nvidia-smi lists no GPU"}
    name, memory, driver = (lines[0].split(", ") + ["", "", ""])[:3]
    return {"present": True, "name": name, "memory": memory, "driver": driver, "count": len(lines)}


def gpu_memory_mb(pid: int | None = None):
    """GPU memory this process holds, as nvidia-smi reports it; None where it cannot tell (no driver, or a container
    whose process ids nvidia-smi does not see)."""
    pid = pid or os.getpid()
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    used = [float(mb) for p, mb in (line.split(", ") for line in out.splitlines() if ", " in line) if int(p) == pid]
    return sum(used) if used else None


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def machine_info() -> dict:
    return {"cpu": cpu_info(), "gpu": gpu_info(), "versions": versions(), "platform": platform.platform()}
