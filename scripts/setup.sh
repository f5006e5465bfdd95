#!/usr/bin/env bash
# Create .venv (if needed) and install edgemtl with the given extras. Used by demo.sh, test.sh and CI.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-train}"
py="$(command -v python3.11 || command -v python3)"
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
