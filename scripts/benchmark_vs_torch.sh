#!/usr/bin/env bash
# flaseg against its PyTorch peer, same process, same inputs: every network mmsegmentation
# also has, plus FLANet against the official definition; 512x512, batch 2, ResNet-50, one JSON
# line per network appended to OUT (scripts/benchmark.py --reference=torch). Two warm-up
# steps: with tcmalloc the second step still faults its memory in.
#   bash scripts/benchmark_vs_torch.sh OUT [STEPS]
# Run it on an otherwise idle machine. On CPU both frameworks allocate large buffers every
# step: preload tcmalloc for both (README, "Speed on CPU").
set -u
malloc=$(basename "${LD_PRELOAD:-glibc}")
out=${1:-benchmarks_vs_torch.jsonl}
steps=${2:-1}
cd "$(dirname "$0")/.."
for name in fcn nl danet dnl emanet isanet ccnet fla; do
  python scripts/benchmark.py --config="configs/${name}_cityscapes.py" --size=512x512 --batch=2 \
    --backbone=resnet50 --steps="$steps" --warmup=2 --reference=torch --json 2>/dev/null \
    | sed "s/^{/{\"name\": \"$name\", \"malloc\": \"$malloc\", /" >> "$out"
done
