#!/usr/bin/env bash
# Run on a machine with the package registries, before scripts/accelerator_check.sh: downloads
# as Python 3.12 manylinux wheels what a CUDA 13 JAX image (jax + jax-cuda13-plugin, flax,
# optax, orbax-checkpoint, torch, timm) lacks for flaseg and its PyTorch peer (mmseg), into
# .accelerator_wheels/ (git-ignored; it travels with the working tree). No dependencies are
# resolved (--no-deps): the list is what such an image is missing. 56 MiB in all (measured
# 2026-12-02), 48 of them OpenCV (mmcv imports cv2; 4.10, the last release under 50 MB).
#
#   bash scripts/download_accelerator_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.accelerator_wheels
mkdir -p "$DEST"
pip download --only-binary=:all: --python-version 3.12 --no-deps -d "$DEST" \
  grain array-record portpicker ml_collections \
  mmsegmentation mmengine mmcv-lite addict yapf prettytable termcolor rich markdown-it-py mdurl \
  "opencv-python-headless<4.11"
du -sh "$DEST"
