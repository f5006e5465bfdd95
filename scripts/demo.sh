#!/usr/bin/env bash
# Quickstart 1: set up, then run the main job on the embedded av_digits demo (needs nothing outside this repo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh train
.venv/bin/edgemtl run recipes/av_digits.yaml --overwrite "$@"
