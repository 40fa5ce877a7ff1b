#!/usr/bin/env bash
# Train/inference img/s of every network config: at its `:smoke` setting and at 512x512,
# batch 2, ResNet-50 (the issue's CPU protocol). One JSON line per run in $OUT (default
# benchmarks.jsonl). Usage: bash scripts/benchmark_all.sh [OUT]
set -u
out=${1:-benchmarks.jsonl}
cd "$(dirname "$0")/.."
for name in fcn fla nl channel_nl danet cs_nl dnl denoised_nl reconet emanet isanet ccnet attanet sanet; do
  python scripts/benchmark.py --config="configs/${name}_cityscapes.py:smoke" --steps=5 --json \
    | sed "s/^{/{\"setting\": \"smoke\", \"name\": \"$name\", /" >> "$out"
  python scripts/benchmark.py --config="configs/${name}_cityscapes.py" --size=512x512 --batch=2 \
    --backbone=resnet50 --steps=2 --warmup=1 --json \
    | sed "s/^{/{\"setting\": \"512x512 b2 R50\", \"name\": \"$name\", /" >> "$out"
done
