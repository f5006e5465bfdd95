#!/usr/bin/env bash
# Quickstart 2: set up, lint with ruff, then run the test suite (the slow set is skipped; see docs/testing.md).
# A lint failure fails the command, but only after the tests ran, so one run reports both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh train,test,micro
lint=0
.venv/bin/ruff check edgemtl tests bench scripts examples || lint=$?
OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q "$@"
[ "$lint" = 0 ] || { echo "ruff check failed (above)" >&2; exit "$lint"; }
