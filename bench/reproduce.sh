#!/usr/bin/env bash
# Reproduce the headline tables of docs/results.md end to end and copy them into bench/results/<dataset>/.
#   bash bench/reproduce.sh av_digits     # embedded demo: about 15 min on 2 CPU cores
#   bash bench/reproduce.sh fashion       # ../shared/data/fashion: 20 min on a 2-core AVX-512 EPYC, about 3 h on an older one
# Each run: train -> [single-task models] -> compress -> export -> bench; results carry the machine they ran on.
set -euo pipefail
cd "$(dirname "$0")/.."
EDGEMTL=${EDGEMTL:-.venv/bin/edgemtl}
dataset=${1:?usage: bench/reproduce.sh av_digits|fashion}
run=runs/$dataset
out=bench/results/$dataset
$EDGEMTL run "recipes/$dataset.yaml" --out "$run" --resume
if [ "$dataset" = fashion ]; then
  # the single-task models as fp32 TFLite, for the one-model-vs-seven comparison of the bench
  singles=$(ls -d "$run"/models/single-* | xargs -n1 basename | paste -sd, -)
  $EDGEMTL export "$run" --model "$singles" --format tflite --precision fp32
  $EDGEMTL bench "$run"   # again, now with the single-task bundles
fi
mkdir -p "$out"
cp "$run/report.md" "$out/run_report.md"
cp "$run/bench/report.md" "$out/bench.md"
cp "$run/compress.md" "$run/bench/pareto.png" "$run/bench/results.json" "$out/"
echo "results in $out"
