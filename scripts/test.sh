#!/usr/bin/env bash
# Quickstart 2: set up, then run the test suite (the slow set is skipped; see docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh train,test
OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q "$@"
