#!/usr/bin/env bash
# Create .venv (if needed) and install edgemtl with the given extras, at the versions in constraints.txt.
# Used by demo.sh, test.sh and CI. Extras: train, test, bench, and `gpu`, which is not a pip extra: it swaps the CPU
# onnxruntime for onnxruntime-gpu (both install the same `onnxruntime` module, so never both; docs/install.md).
#   bash scripts/setup.sh train,test        bash scripts/setup.sh train,gpu
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-train}"
gpu=0
pip_extras=()
IFS=',' read -ra requested <<< "$extras"
for extra in "${requested[@]}"; do
    if [ "$extra" = gpu ]; then gpu=1; elif [ -n "$extra" ]; then pip_extras+=("$extra"); fi
done
target="."
[ ${#pip_extras[@]} -eq 0 ] || target=".[$(IFS=,; echo "${pip_extras[*]}")]"
py="$(command -v python3.11 || command -v python3)"
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip
# edgemtl requires onnxruntime, so this (re)installs the CPU build even where onnxruntime-gpu is installed.
"${pip[@]}" install -q -c constraints.txt -e "$target"
# Leave exactly one ONNX Runtime. Uninstalling one deletes the module files the two share, so the one kept is
# reinstalled (--force-reinstall --no-deps: same dependencies as the CPU build, already installed).
if [ "$gpu" = 1 ]; then
    "${pip[@]}" uninstall -q -y onnxruntime
    "${pip[@]}" install -q -c constraints.txt --force-reinstall --no-deps onnxruntime-gpu
elif "${pip[@]}" show -q onnxruntime-gpu 2>/dev/null; then
    "${pip[@]}" uninstall -q -y onnxruntime-gpu
    "${pip[@]}" install -q -c constraints.txt --force-reinstall --no-deps onnxruntime
fi
