"""`edgemtl env`: what this machine and install are -- versions, CPU model and the instruction-set flags that change
int8 kernels (AVX2, AVX-512, VNNI, AMX), GPUs, and which extras are installed. TF-free unless asked: versions come
from the installed packages' metadata and extras from importlib.util.find_spec, so it answers in the light install
and in well under a second in the full one."""
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

# flag in /proc/cpuinfo -> what it is called in the output
CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
             "amx_int8", "amx_bf16", "neon", "asimd")
PACKAGES = ("numpy", "onnxruntime", "onnxruntime-gpu", "ai-edge-litert", "tensorflow", "tf-keras",
            "tensorflow-model-optimization", "tf2onnx", "onnx", "pytest", "ruff", "scikit-learn", "tqdm")
# extra -> the modules that show it installed (find_spec only: nothing is imported)
EXTRAS = {"train": ("tensorflow", "tf_keras", "tensorflow_model_optimization", "tf2onnx", "onnx"),
          "test": ("pytest", "ruff"), "bench": ("sklearn",)}
NOT_INSTALLED = "not installed"


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return NOT_INSTALLED


def extras_installed() -> dict[str, bool]:
    """{extra: whether every module it provides can be imported here}, without importing any."""
    return {extra: all(importlib.util.find_spec(m) is not None for m in modules) for extra, modules in EXTRAS.items()}


def cpu_info() -> dict:
    """CPU model, its family/model/stepping, cores, architecture and the flags among CPU_FLAGS it has (Linux:
    /proc/cpuinfo; elsewhere the model only). Virtual machines often name only the line ("AMD EPYC"); the
    family/model/stepping still tell one generation from another, so results say which CPU they were measured on."""
    fields, flags = {}, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in ("flags", "Features"):
                flags |= set(value.split())
            elif key in ("model name", "vendor_id", "cpu family", "model", "stepping"):
                fields.setdefault(key, value)
    except OSError:
        pass
    cpuid = " ".join(f"{k.replace('cpu ', '')} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields)
    return {"model": fields.get("model name") or platform.processor() or platform.machine(), "cpuid": cpuid,
            "cores": os.cpu_count(), "machine": platform.machine(), "flags": [f for f in CPU_FLAGS if f in flags]}


def cpu_name(cpu: dict) -> str:
    """'AMD EPYC (family 25 model 17 stepping 1)': the model name, and the generation where /proc/cpuinfo gives it."""
    return f"{cpu['model']} ({cpu['cpuid']})" if cpu.get("cpuid") else cpu["model"]


def describe_cpu(cpu: dict) -> str:
    """One line for a results file: 'AMD EPYC (family 25 model 17 stepping 1), 2 cores, flags: avx avx2 fma'."""
    return f"{cpu_name(cpu)}, {cpu['cores']} cores, flags: {' '.join(cpu['flags']) or 'none listed'}"


def gpus() -> list[str]:
    """NVIDIA GPUs as nvidia-smi names them (none where it is absent)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        done = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def onnxruntime_providers() -> list[str]:
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def tensorflow_gpus() -> list[str] | str:
    """The GPUs TensorFlow sees (imports TensorFlow: `edgemtl env -v` only)."""
    if importlib.util.find_spec("tensorflow") is None:
        return NOT_INSTALLED
    from .tfk import tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def environment(with_tensorflow: bool = False) -> dict:
    from . import __version__

    info = {"edgemtl": __version__, "python": platform.python_version(), "executable": sys.executable,
            "platform": platform.platform(), "machine": platform.machine(), "cpu": cpu_info(), "gpus": gpus(),
            "packages": {name: package_version(name) for name in PACKAGES}, "extras": extras_installed(),
            "onnxruntime_providers": onnxruntime_providers()}
    if with_tensorflow:
        info["tensorflow_gpus"] = tensorflow_gpus()
    return info


def format_environment(info: dict) -> str:
    cpu = info["cpu"]
    lines = [f"edgemtl    {info['edgemtl']}", f"python     {info['python']} ({info['executable']})",
             f"platform   {info['platform']}", f"cpu        {cpu_name(cpu)}, {cpu['cores']} cores",
             f"cpu flags  {', '.join(cpu['flags']) or 'none of ' + ', '.join(CPU_FLAGS)}",
             f"gpus       {'; '.join(info['gpus']) or 'none (no nvidia-smi)'}",
             "extras     " + ", ".join(f"{k}: {'installed' if v else NOT_INSTALLED}"
                                      for k, v in info["extras"].items())]
    lines += [f"  {name:<30} {version}" for name, version in info["packages"].items()]
    lines.append(f"onnxruntime providers: {', '.join(info['onnxruntime_providers']) or NOT_INSTALLED}")
    if "tensorflow_gpus" in info:
        seen = info["tensorflow_gpus"]
        lines.append(f"tensorflow gpus: {seen if isinstance(seen, str) else ', '.join(seen) or 'none'}")
    return "\n".join(lines)
