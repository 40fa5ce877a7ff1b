"""GFLOP/s of every conv shape of a ResNet-50-D8 at 512x512, batch 2: XLA's convolution
(forward, weight gradient, input gradient) against flaseg's lowering (flaseg.models.conv:
matmuls, Winograd F(2x2, 3x3) where it applies) for the forward and a whole forward +
backward, and the n^3 matmul rate for scale. Rates count the direct conv's FLOPs, so a
Winograd conv's "effective" rate can exceed the matmul rate.

  python scripts/conv_benchmark.py [--json]
  python scripts/conv_benchmark.py --dilated --json   # lax against the sub-grid dilated conv
  python scripts/conv_benchmark.py --weight-grad      # the 3x3 weight gradients, three ways

This is the measurement behind flaseg.models.conv's CPU path; on GPU/TPU both columns run
the same lax convolution.
"""
import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from flaseg import timing  # noqa: E402
from flaseg.models import conv as conv_lib  # noqa: E402
from flaseg.models.lowering import Lowering  # noqa: E402

# (input H = W, Cin, Cout, kernel, stride, dilation): the stem, layer1-4 of ResNetV1c-50-D8
# and the 3x3 head conv over layer4, at a 512x512 input.
SHAPES = [(512, 3, 32, 3, 2, 1), (256, 32, 64, 3, 1, 1), (128, 64, 64, 1, 1, 1),
          (128, 64, 64, 3, 1, 1), (128, 64, 256, 1, 1, 1), (128, 256, 64, 1, 1, 1),
          (128, 128, 128, 3, 2, 1), (128, 256, 512, 1, 2, 1), (64, 512, 128, 1, 1, 1),
          (64, 128, 128, 3, 1, 1), (64, 256, 256, 3, 1, 2), (64, 1024, 256, 1, 1, 1),
          (64, 256, 1024, 1, 1, 1), (64, 512, 512, 3, 1, 4), (64, 2048, 512, 1, 1, 1),
          (64, 2048, 512, 3, 1, 1)]
DN = ("NHWC", "HWIO", "NHWC")


def _time(fn, *args):
  return timing.median_seconds(lambda: fn(*args), steps=3)


def measure(h, cin, cout, k, stride, dilation, batch=2):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, h, h, cin)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((k, k, cin, cout)) * 0.02, jnp.float32)
  p = dilation * (k - 1) // 2
  args = ((stride, stride), ((p, p), (p, p)))
  kw = dict(rhs_dilation=(dilation, dilation), dimension_numbers=DN)
  xla = lambda a, b: lax.conv_general_dilated(a, b, *args, **kw)
  ours = lambda a, b: conv_lib.conv_general_dilated(a, b, *args, **kw)
  y = xla(x, w)
  dy = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  gflop = 2 * y.size * cin * k * k / 1e9

  def fwd_bwd(f):
    return jax.jit(lambda a, b: jax.vjp(f, a, b)[1](dy) + (f(a, b),))

  rate = lambda s, n=1: n * gflop / s
  return {"shape": f"{h}x{h} {cin}->{cout} k{k} s{stride} d{dilation}", "gflop": gflop,
          "xla_fwd": rate(_time(jax.jit(xla), x, w)),
          "xla_weight_grad": rate(_time(jax.jit(lambda a, b: jax.vjp(lambda v: xla(a, v), b)[1](
              dy)[0]), x, w)),
          "xla_input_grad": rate(_time(jax.jit(lambda a, b: jax.vjp(lambda v: xla(v, b), a)[1](
              dy)[0]), x, w)),
          "xla_fwd_bwd": rate(_time(fwd_bwd(xla), x, w), 3),
          "flaseg_fwd": rate(_time(jax.jit(ours), x, w)),
          "flaseg_fwd_bwd": rate(_time(fwd_bwd(ours), x, w), 3)}


# The dilated 3x3 convs of a ResNet-101-D8 at 769x769, batch 8 (layer4 at 97x97, 512
# channels) at dilation 2, 4 and 16 (multi-grid).
DILATED_SHAPES = [(97, 512, 512, 3, 1, d) for d in (2, 4, 16)]


def measure_dilated(h, cin, cout, k, stride, dilation, batch=8):
  """Milliseconds of lax's dilated conv against the sub-grid one (`conv.subgrid_conv`),
  forward and forward + backward, and their largest difference."""
  del stride
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, h, h, cin)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((k, k, cin, cout)) * 0.02, jnp.float32)
  p = dilation * (k - 1) // 2
  args = ((1, 1), ((p, p), (p, p)))
  kw = dict(rhs_dilation=(dilation, dilation), dimension_numbers=DN)
  ways = {"lax": lambda a, b: lax.conv_general_dilated(a, b, *args, **kw),
          "subgrid": lambda a, b: conv_lib.conv_general_dilated(
              a, b, *args, **kw, lowering=Lowering(conv="direct", dilated="subgrid"))}
  dy = jnp.asarray(rng.standard_normal(ways["lax"](x, w).shape), jnp.float32)
  row = {"shape": f"{batch}x{h}x{h} {cin}->{cout} k{k} d{dilation}",
         "max_abs_diff": float(jnp.abs(ways["lax"](x, w) - ways["subgrid"](x, w)).max())}
  for name, f in ways.items():
    row[f"{name}_fwd_ms"] = 1e3 * _time(jax.jit(f), x, w)
    row[f"{name}_fwd_bwd_ms"] = 1e3 * _time(
        jax.jit(lambda a, b, f=f: jax.vjp(f, a, b)[1](dy) + (f(a, b),)), x, w)
  return row


# (H, W, channels): HRNetV2-W48's "same" 3x3 convs at a 512x1024 input, batch 2: the stage-1
# bottleneck (64) and the four branches (48, 96, 192, 384).
WEIGHT_GRAD_SHAPES = [(128, 256, 64), (128, 256, 48), (64, 128, 96), (32, 64, 192),
                      (16, 32, 384)]


def measure_weight_grad(h, w, c, batch=2):
  """Milliseconds of a 3x3 "same" conv's weight gradient: XLA's own, one matmul per tap
  (`conv.weight_grad_by_taps`) and F(2x2, 3x3)'s adjoint (`conv.winograd_weight_grad`), and
  which of the last two flaseg's CPU lowering picks."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, h, w, c)), jnp.float32)
  dy = jnp.asarray(rng.standard_normal((batch, h, w, c)), jnp.float32)
  kernel = jnp.zeros((3, 3, c, c), jnp.float32)
  pad = ((1, 1), (1, 1))
  xla = lambda a, g: jax.vjp(lambda k: lax.conv_general_dilated(  # noqa: E731
      a, k, (1, 1), pad, dimension_numbers=DN), kernel)[1](g)[0]
  ways = {"xla": xla,
          "taps": lambda a, g: conv_lib.weight_grad_by_taps(a, g, kernel.shape, (1, 1), pad,
                                                            (1, 1)),
          "winograd": conv_lib.winograd_weight_grad}
  row = {"shape": f"{batch}x{h}x{w} {c}->{c} k3"}
  for name, f in ways.items():
    row[f"{name}_ms"] = 1e3 * _time(jax.jit(f), x, dy)
  if conv_lib.winograd_applies(x, kernel, (1, 1), pad, (1, 1)):
    row["flaseg"] = "winograd (the whole conv)"
  elif conv_lib.winograd_weight_grad_applies(x, kernel, (1, 1), pad, (1, 1)):
    row["flaseg"] = "winograd"
  else:
    row["flaseg"] = "taps"
  return row


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--json", action="store_true")
  p.add_argument("--dilated", action="store_true",
                 help="only the dilated convs, lax against the sub-grid formulation")
  p.add_argument("--weight-grad", action="store_true",
                 help="only HRNet's 3x3 weight gradients: XLA, per tap, Winograd's adjoint")
  a = p.parse_args()
  if a.weight_grad:
    rows = [measure_weight_grad(*s) for s in WEIGHT_GRAD_SHAPES]
    print(json.dumps({"device": jax.devices()[0].device_kind, "weight_grad": rows},
                     indent=None if a.json else 1))
    return
  if a.dilated:
    rows = [measure_dilated(*s) for s in DILATED_SHAPES]
    print(json.dumps({"device": jax.devices()[0].device_kind, "dilated": rows},
                     indent=None if a.json else 1))
    return
  n = 4096
  m = jnp.ones((n, n), jnp.float32)
  peak = 2 * n ** 3 / 1e9 / _time(jax.jit(lambda v: v @ v), m)
  rows = [measure(*s) for s in SHAPES]
  if a.json:
    print(json.dumps({"device": jax.devices()[0].device_kind, "matmul_gflop_per_s": peak,
                      "convs": rows}))
    return
  print(f"{n}^3 matmul: {peak:.0f} GFLOP/s on {jax.devices()[0].device_kind}")
  print(f"{'conv (batch 2)':>32} {'GFLOP':>6} | XLA fwd  dW   dx  fwd+bwd | flaseg fwd fwd+bwd")
  for r in rows:
    print(f"{r['shape']:>32} {r['gflop']:6.2f} | {r['xla_fwd']:5.0f} {r['xla_weight_grad']:4.0f} "
          f"{r['xla_input_grad']:4.0f} {r['xla_fwd_bwd']:7.0f} | {r['flaseg_fwd']:10.0f} "
          f"{r['flaseg_fwd_bwd']:7.0f}")


if __name__ == "__main__":
  main()
