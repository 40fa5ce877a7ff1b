"""Milliseconds of flaseg's bilinear upsampling (`layers.resize_bilinear`: an integer scale as
interleaved two-row phases) against the way it replaced (`layers._interpolate_axis`, still
used for other sizes: the interpolation-matrix product, the two-tap gather for long axes)
and, with --reference=torch, `F.interpolate(mode='bilinear', align_corners=False)` in the
same run: HRNetV2-W48's upsamplings at a 512x1024 input, batch 2 (the fuse layers' and the
neck's to 1/4, 1/8 and 1/16; the FCN logits x4 to full size), forward and forward +
backward, with the largest difference between the ways.

  python scripts/resize_benchmark.py [--reference=torch] [--json]

Per-op figures: inside a whole step XLA fuses the phases into their consumers, and the step
gains less than the sum of these (README, "Speed on CPU").
"""
import argparse
import functools
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from flaseg import timing  # noqa: E402
from flaseg.models import layers  # noqa: E402

# (H, W, C, scale) of the input: HRNetV2-W48 at 512x1024 (branches at 1/4..1/32).
SHAPES = [(64, 128, 96, 2), (32, 64, 192, 4), (16, 32, 384, 8),   # neck: concat at 1/4
          (64, 128, 48, 2), (32, 64, 48, 4), (16, 32, 48, 8),     # fuse layers into 1/4
          (32, 64, 96, 2), (16, 32, 96, 4), (16, 32, 192, 2),     # into 1/8 and 1/16
          (128, 256, 19, 4)]                                      # logits to 512x1024


def _before(x, size):
  """Both axes as before the phases: the interpolation-matrix product, or the two-tap
  gather where out x in > RESIZE_MATMUL_MAX_ENTRIES (the logits)."""
  return layers._interpolate_axis(layers._interpolate_axis(x, 1, size[0], False), 2,
                                  size[1], False)


def _forward_backward(f, x, dy):
  y, vjp = jax.vjp(f, x)
  return y, vjp(dy)[0]


def _ms(fn, *args):
  return 1e3 * timing.median_seconds(lambda: fn(*args), steps=7, warmup=2)


def measure(h, w, c, scale, batch=2, reference=""):
  rng = np.random.default_rng(0)
  size = (h * scale, w * scale)
  x = rng.standard_normal((batch, h, w, c)).astype(np.float32)
  dy = rng.standard_normal((batch, *size, c)).astype(np.float32)
  row = {"shape": f"{batch}x{h}x{w}x{c} x{scale}"}
  ways = {"flaseg": lambda v: layers.resize_bilinear(v, size),
          "before": lambda v: _before(v, size)}
  xj, dyj = jnp.asarray(x), jnp.asarray(dy)
  outs = {}
  for name, f in ways.items():
    fwd = jax.jit(f)
    fwd_bwd = jax.jit(functools.partial(_forward_backward, f))
    outs[name] = np.asarray(fwd(xj))
    row[f"{name}_fwd_ms"] = _ms(fwd, xj)
    row[f"{name}_fwd_bwd_ms"] = _ms(fwd_bwd, xj, dyj)
  row["max_abs_diff_before"] = float(np.abs(outs["flaseg"] - outs["before"]).max())
  if reference == "torch":
    import torch  # only here: the PyTorch peer
    import torch.nn.functional as F
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    dyt = torch.from_numpy(dy.transpose(0, 3, 1, 2).copy())
    up = lambda v: F.interpolate(v, size=size, mode="bilinear", align_corners=False)

    def torch_fwd_bwd():
      v = xt.clone().requires_grad_()
      up(v).backward(dyt)
      return v.grad

    with torch.no_grad():
      yt = up(xt)
    row["torch_fwd_ms"] = 1e3 * timing.median_seconds(lambda: up(xt), 7, 2, block=False)
    row["torch_fwd_bwd_ms"] = 1e3 * timing.median_seconds(torch_fwd_bwd, 7, 2, block=False)
    row["max_abs_diff_torch"] = float(
        np.abs(outs["flaseg"] - yt.numpy().transpose(0, 2, 3, 1)).max())
  return row


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--reference", default="", choices=("", "torch"))
  p.add_argument("--json", action="store_true")
  a = p.parse_args()
  rows = [measure(*s, reference=a.reference) for s in SHAPES]
  if a.json:
    print(json.dumps({"device": jax.devices()[0].device_kind, "resizes": rows}))
    return
  ways = ["flaseg", "before"] + (["torch"] if a.reference else [])
  print(f"{'upsampling (NHWC)':>22} | " + " | ".join(f"{w:>6} fwd  fwd+bwd" for w in ways)
        + "   (ms)")
  for r in rows:
    print(f"{r['shape']:>22} | " + " | ".join(
        f"{r[w + '_fwd_ms']:10.2f} {r[w + '_fwd_bwd_ms']:8.2f}" for w in ways))


if __name__ == "__main__":
  main()
