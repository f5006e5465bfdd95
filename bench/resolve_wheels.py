"""Resolve the light install's wheels for platforms this machine is not, and write bench/results/install_platforms.md.

    python bench/resolve_wheels.py [--out bench/results/install_platforms.md] [--python-version 3.11]

For each target platform it evaluates pyproject.toml's light `dependencies` (their environment markers) for that
platform, then runs `pip download --only-binary=:all: --platform ... -c constraints.txt` into a temporary folder: a
platform passes when pip finds a wheel for every package. pip evaluates markers against this machine, not the
target, so the direct requirements' and constraints.txt's markers are evaluated here; transitive dependencies'
markers are still pip's: tqdm's `colorama; platform_system == "Windows"` is missed, so the Windows list lacks
colorama (a 25 kB pure-Python wheel).

Needs network access to PyPI and the `packaging` module (pip's own vendored copy is used when it is not installed).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # a venv with only pip
    from pip._vendor.packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _manylinux_tags(arch: str, newest_glibc: int = 35) -> list[str]:
    # pip does not widen an explicit manylinux_2_X tag to older glibc versions, so list them all
    # (glibc 2.35: Ubuntu 22.04 / Debian 12 era).
    return [f"manylinux_2_{minor}_{arch}" for minor in range(newest_glibc, 16, -1)] + [
        f"manylinux2014_{arch}",
        f"linux_{arch}",
    ]


@dataclasses.dataclass(frozen=True)
class Target:
    """One platform: pip's --platform tags and the marker environment its direct requirements are evaluated in."""

    name: str
    platform_tags: tuple[str, ...]
    sys_platform: str
    platform_system: str
    platform_machine: str


TARGETS = (
    Target("macOS arm64 (12+)", ("macosx_15_0_arm64",), "darwin", "Darwin", "arm64"),
    Target("macOS x86_64", ("macosx_15_0_x86_64",), "darwin", "Darwin", "x86_64"),
    Target("Linux aarch64 (glibc)", tuple(_manylinux_tags("aarch64")), "linux", "Linux", "aarch64"),
    Target("Linux x86_64 (glibc)", tuple(_manylinux_tags("x86_64")), "linux", "Linux", "x86_64"),
    Target("Windows x86_64", ("win_amd64",), "win32", "Windows", "AMD64"),
    Target("Windows arm64", ("win_arm64",), "win32", "Windows", "ARM64"),
)


@dataclasses.dataclass(frozen=True)
class Resolution:
    target: Target
    requirements: tuple[str, ...]
    skipped: tuple[str, ...]
    wheels: tuple[tuple[str, str, int], ...]  # (package, version, bytes)
    error: str

    @property
    def ok(self) -> bool:
        return not self.error


def light_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


def marker_env(target: Target, python_version: str) -> dict[str, str]:
    return {
        "sys_platform": target.sys_platform,
        "platform_system": target.platform_system,
        "platform_machine": target.platform_machine,
        "os_name": "nt" if target.sys_platform == "win32" else "posix",
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def for_target(requirements: list[Requirement], target: Target, python_version: str) -> tuple[list[str], list[str]]:
    """The requirements (without markers) that apply on `target`, and the names of those its markers skip."""
    env = marker_env(target, python_version)
    kept, skipped = [], []
    for req in requirements:
        if req.marker is None or req.marker.evaluate(env):
            kept.append(f"{req.name}{req.specifier}")
        else:
            skipped.append(req.name)
    return kept, skipped


def constraints_for(target: Target, python_version: str) -> str:
    """constraints.txt with its markers evaluated for `target` (pip would evaluate them for this machine)."""
    env = marker_env(target, python_version)
    lines = []
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(env):
                lines.append(f"{req.name}{req.specifier}")
    return "\n".join(lines) + "\n"


def _wheel_name_version(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return name.replace("_", "-").lower(), version


def _pip_reason(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip().startswith("ERROR")]
    return " ".join(lines) or stderr.strip().splitlines()[-1]


def resolve(target: Target, requirements: list[Requirement], python_version: str) -> Resolution:
    kept, skipped = for_target(requirements, target, python_version)
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(constraints_for(target, python_version))
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
               "-c", str(constraints), "-d", tmp]
        for tag in target.platform_tags:
            cmd += ["--platform", tag]
        proc = subprocess.run(cmd + kept, capture_output=True, text=True)
        wheels = sorted(
            (*_wheel_name_version(path.name), path.stat().st_size) for path in Path(tmp).glob("*.whl")
        )
    error = "" if proc.returncode == 0 else _pip_reason(proc.stderr)
    return Resolution(target, tuple(kept), tuple(skipped), tuple(wheels), error)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} kB"


def render(results: list[Resolution], python_version: str) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        "# The light install, resolved per platform",
        "",
        f"Written by `bench/resolve_wheels.py` on {today}: `pip download --only-binary=:all: --platform ...`",
        f"`--python-version {python_version} -c constraints.txt` of `pyproject.toml`'s light `dependencies`, with",
        "their markers (and constraints.txt's) evaluated for each platform. Sizes are the downloaded (compressed)",
        "wheels; installed sizes are larger (the Linux x86_64 venv is measured in docs/install.md). pip evaluates",
        "transitive dependencies' markers for this (Linux) machine, so the Windows list lacks tqdm's `colorama`",
        "(25 kB).",
        "",
        "| platform | result | wheels | total wheel size | skipped by markers |",
        "|---|---|---|---|---|",
    ]
    for res in results:
        verdict = "ok" if res.ok else f"failed: {res.error}"
        total = _mb(sum(size for *_, size in res.wheels)) if res.ok else "-"
        skipped = ", ".join(res.skipped) or "-"
        lines.append(f"| {res.target.name} | {verdict} | {len(res.wheels)} | {total} | {skipped} |")
    for res in results:
        lines += ["", f"## {res.target.name}", "", f"`--platform {' '.join(res.target.platform_tags[:2])}"
                  + (" ...`" if len(res.target.platform_tags) > 2 else "`"), ""]
        if not res.ok:
            lines += [f"Failed: {res.error}", ""]
        if res.wheels:
            lines += ["| package | version | wheel size |", "|---|---|---|"]
            lines += [f"| {name} | {version} | {_mb(size)} |" for name, version, size in res.wheels]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "install_platforms.md")
    parser.add_argument("--python-version", default="3.11")
    args = parser.parse_args(argv)
    requirements = light_requirements()
    results = []
    for target in TARGETS:
        res = resolve(target, requirements, args.python_version)
        print(f"{target.name}: {'ok' if res.ok else 'failed: ' + res.error}", flush=True)
        results.append(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results, args.python_version))
    print(f"wrote {args.out}")
    return 0 if all(res.ok for res in results) else 1


if __name__ == "__main__":
    sys.exit(main())
