#!/usr/bin/env bash
# The prepared check for a machine with one NVIDIA GPU and no network, whose Python 3.12 has
# jax with its CUDA plugin, flax, optax, orbax-checkpoint (and torch for the PyTorch peer).
# Beforehand, on a machine with the registries: bash scripts/download_accelerator_wheels.sh
# (the wheels travel in .accelerator_wheels/). Then, on the GPU machine:
#
#   bash scripts/accelerator_check.sh [OUT.json]      # default: accelerator_check.json
#
# 1. installs the wheels with pip --no-index --target .accelerator_site (on PYTHONPATH);
# 2. runs the equivalence tests on the GPU at the highest matmul precision (GPUs default to
#    TF32 for float32 matmuls and convs, which would fail 1e-5 tolerances);
# 3. writes one JSON: FLANet-R101 769x769 batch 8 train/inference img/s, peak memory and MFU
#    in float32 and bfloat16 (scripts/benchmark.py), the dilated conv lax against sub-grids at
#    dilation 2, 4, 16 (scripts/conv_benchmark.py --dilated), NL-R101 with each attention
#    implementation, whole-image 1024x2048 NL-R101 inference memory, and the FCN / DANet step
#    in PyTorch (mmseg) where torch has CUDA. Each part that fails records its error instead.
# Every part has its own timeout (470 s in all, so the whole check stays under 8 minutes);
# a part that runs past it is recorded with rc 124. Not yet run on a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-accelerator_check.json}
PARTS=$(mktemp -d)
if [ -d .accelerator_wheels ]; then
  python -m pip install --quiet --no-index --no-deps --target .accelerator_site \
    .accelerator_wheels/*.whl || exit 1
fi
export PYTHONPATH="$PWD/.accelerator_site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
python -c "import jax; assert jax.default_backend() == 'gpu', jax.devices(); print(jax.devices())" \
  || exit 1

# The equivalence tests, on the GPU (tests/conftest.py only defaults JAX_PLATFORMS to cpu).
JAX_PLATFORMS=cuda JAX_DEFAULT_MATMUL_PRECISION=highest timeout 75 python -m pytest -q -x \
  tests/test_accelerator_kernels.py tests/test_conv.py tests/test_chunked_attention.py \
  > "$PARTS/tests.txt" 2>&1
echo $? > "$PARTS/tests.rc"

run() {  # run NAME TIMEOUT_S COMMAND...: the command's last stdout line (a JSON object)
  local name=$1 limit=$2; shift 2
  echo "== $name: $*" >&2
  timeout "$limit" "$@" > "$PARTS/$name.out" 2> "$PARTS/$name.err"
  echo $? > "$PARTS/$name.rc"
}
B="python scripts/benchmark.py --json --steps=5 --warmup=1"
run flanet_r101_float32 60 $B --config=configs/fla_cityscapes.py --size=769x769 --batch=8 \
  --backbone=resnet101 --dtype=float32
run flanet_r101_bfloat16 60 $B --config=configs/fla_cityscapes.py --size=769x769 --batch=8 \
  --backbone=resnet101 --dtype=bfloat16
run dilated_conv 40 python scripts/conv_benchmark.py --dilated --json
for impl in chunked xla cudnn; do
  run nl_r101_attention_$impl 35 $B --config=configs/nl_cityscapes.py --size=769x769 \
    --batch=8 --backbone=resnet101 --dtype=bfloat16 --attention=$impl
done
run nl_r101_whole_1024x2048 50 $B --config=configs/nl_cityscapes.py --size=1024x2048 \
  --batch=1 --backbone=resnet101 --steps=2
if python -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  for net in fcn danet; do
    run torch_${net}_r101 40 $B --config=configs/${net}_cityscapes.py --size=512x1024 \
      --batch=8 --backbone=resnet101 --reference=torch
  done
fi

python - "$PARTS" "$OUT" <<'PY'
import json, os, sys
parts, out = sys.argv[1:]
import jax
result = {"device": jax.devices()[0].device_kind, "jax": jax.__version__}
tests = open(os.path.join(parts, "tests.txt")).read().strip().splitlines()
result["equivalence_tests"] = {"rc": int(open(os.path.join(parts, "tests.rc")).read()),
                               "summary": tests[-1] if tests else ""}
for name in sorted(f[:-3] for f in os.listdir(parts) if f.endswith(".out")):
  rc = int(open(os.path.join(parts, name + ".rc")).read())
  lines = open(os.path.join(parts, name + ".out")).read().strip().splitlines()
  try:
    result[name] = json.loads(lines[-1])
  except (IndexError, ValueError):
    err = open(os.path.join(parts, name + ".err")).read().strip().splitlines()
    result[name] = {"rc": rc, "error": err[-1] if err else ""}
json.dump(result, open(out, "w"), indent=1)
print(f"wrote {out}: tests {result['equivalence_tests']['summary']}")
PY
