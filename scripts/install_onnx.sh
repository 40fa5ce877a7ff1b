#!/usr/bin/env bash
# ONNX export (python -m flaseg.export_model --format=onnx) and its check (onnxruntime).
# jax2onnx 0.17.1 declares orbax-checkpoint < 0.11.37 (flaseg pins 0.12.8), orbax-export and
# netron, none of which its conversion imports: it is installed without its dependencies,
# after the ones it does import.
set -euo pipefail
python -m pip install -q onnx==1.23.2 onnx-ir==1.1.0 onnxruntime==1.32.0
python -m pip install -q --no-deps jax2onnx==0.17.1
