#!/usr/bin/env bash
# Train/inference img/s of every network config, one JSON line per run appended to OUT.
#   bash scripts/benchmark_all.sh OUT smoke      # each config's `:smoke` setting
#   bash scripts/benchmark_all.sh OUT 512        # 512x512, batch 2, ResNet-50 (the CPU protocol)
set -u
out=${1:-benchmarks.jsonl}
setting=${2:-smoke}
cd "$(dirname "$0")/.."
for name in fcn fla nl channel_nl danet cs_nl dnl denoised_nl reconet emanet isanet ccnet attanet sanet; do
  if [[ $setting == smoke ]]; then
    args=(--config="configs/${name}_cityscapes.py:smoke" --steps=5)
  else
    args=(--config="configs/${name}_cityscapes.py" --size=512x512 --batch=2 --backbone=resnet50
          --steps=1 --warmup=1)
  fi
  python scripts/benchmark.py "${args[@]}" --json \
    | sed "s/^{/{\"setting\": \"$setting\", \"name\": \"$name\", /" >> "$out"
done
