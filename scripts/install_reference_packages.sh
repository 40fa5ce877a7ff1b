#!/usr/bin/env bash
# Reference packages for tests/test_convert.py (PyTorch equivalence of flaseg.convert).
# torch 2.13.0 is the CPU wheel on the machine; the constraints file keeps pip from
# replacing it (a plain `pip install torch` would pull the CUDA build). mmsegmentation 1.2.2
# needs mmcv < 2.2; mmcv-lite has no compiled ops (the tests stub `mmcv.ops`).
set -euo pipefail
python -m pip install -q torch==2.13.0
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0" > "$constraints"
python -m pip install -q -c "$constraints" timm safetensors mmsegmentation==1.2.2 mmengine==0.10.7 \
    mmcv-lite==2.1.0 ftfy regex
