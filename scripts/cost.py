"""FLOPs and peak memory of every attention block and whole network, next to the papers' tables.

  python scripts/cost.py                      # FLANet Table 3: 768x768, blocks at 1/8, C = 512
  python scripts/cost.py --table=attanet      # AttaNet Table 3: 1024x1024, blocks at 1/16, C = 128
  python scripts/cost.py --size=1024x2048 --table=none --blocks=nl,danet --nets=nl \
      --attention=direct                      # before / after the chunked attention
  python scripts/cost.py --json               # a JSON list, one object per row

A block is its attention core as FLANet's Table 3 counts it: the attention module with its own
1x1 projections (and EMA's 1x1 convs, NL's `conv_out`), without the 3x3 ConvBNReLUs around it,
on one (batch, h, w, C) feature map (h, w = input / stride): each is the heads' own module or
block function (`Block` runs a block function in a module of its own), nothing re-implemented. `net:<head>` is the whole network of `configs/<head>_cityscapes.py` (with
`--backbone`). Batch 1, inference (train=False), float32.

GFLOPs: XLA's cost analysis of the lowered program (a multiply-add is 2 FLOPs; softmax and other
element-wise work is counted too, about 1 FLOP per element). It counts the body of a loop once,
so FLOPs always come from the direct (unchunked) attention; the math is the same.
Memory (MiB): XLA's buffer assignment of the compiled program, arguments + outputs + temporaries
(`compiled.memory_analysis()`), with the attention as `--attention` selects. On CPU the
YNNPACK library fusions, which hide their internal buffers from that analysis, are turned off.
Both count convolutions as GPU and TPU run them, directly (`Lowering(conv='direct')`): not the
CPU's Winograd 3x3 convs, which execute fewer FLOPs.
Nothing is run: every program is only lowered and compiled, at any size.
"""
import argparse
import dataclasses
import json
import math
import os
import sys
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from flaseg import config_lib  # noqa: E402
from flaseg.models import HEADS, build_model  # noqa: E402
from flaseg.models.heads import attanet, ccnet, danet, denoised_nl, dnl, emanet  # noqa: E402
from flaseg.models.heads import fla, fla_ablation, isanet, nl, reconet, sanet  # noqa: E402
from flaseg.models.lowering import Lowering  # noqa: E402

# The papers' tables (paper-tables.md, read from the papers): {block: (GFLOPs, memory MB)}.
# FLANet Table 3 (768x768, ResNet-50, cores at 1/8 with C = 512; 1 multiply-add = 2 FLOPs):
# its rows are the cores of configs/fla_ablation.py's blocks (`fla_ablation.attention_core`:
# channel_nl, spatial_nl, dual_nl, cs_nl, ema, rcca) and the FLA block. `nl` (mmcv NonLocal2d)
# and `danet` (DANet's PAM + CAM) are shown against the Spatial / Dual NL figures.
FLANET = {"fla": (19.37, 436), "channel_nl": (9.66, 40), "spatial_nl": (103.90, 1320),
          "dual_nl": (113.56, 1378), "cs_nl": (113.56, 1378), "ema": (13.91, 98),
          "rcca": (16.18, 174), "nl": (103.90, 1320), "danet": (113.56, 1378)}
# AttaNet Table 3 (1x3x1024x1024, ResNet-18, modules at 1/16 with C = 128). Its "GFLOPs" are
# multiply-adds (1 multiply-add = 1 FLOP): the ratio uses flaseg's FLOPs / 2.
ATTANET = {"sam": (0.185, 8), "nl": (3.357, 334), "spatial_nl": (3.357, 334),
           "ccnet": (0.472, 26), "emanet": (0.335, 12), "afm": (0.336, 12)}
TABLES = {
    # name: (input size, stride of the blocks' map, C, backbone, figures, FLOPs per multiply-add)
    "flanet": ((768, 768), 8, 512, "resnet50", FLANET, 2),
    "attanet": ((1024, 1024), 16, 128, "resnet18", ATTANET, 1),
    "none": ((768, 768), 8, 512, "", {}, 2),
}
NUM_CLASSES = 19
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The heads with a configs/<head>_cityscapes.py (the `net:` rows).
NETS = [h for h in HEADS if os.path.exists(os.path.join(REPO, "configs", f"{h}_cityscapes.py"))]
# On CPU: no YNNPACK fusions (their buffers are invisible to memory_analysis); LLVM -O0 compiles
# faster and does not change the buffer assignment.
CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "",
               "xla_backend_optimization_level": 0}


# ----------------------------------------------------------------------------------------------
# The blocks, each from the heads' own modules and block functions.

class Block(nn.Module):
  """Runs `fn(module, *inputs)`, a head's block function that creates its layers in the
  module it is given (e.g. `fla.fully_attentional`), in a module of its own."""
  fn: Callable
  dtype: Any = jnp.float32
  lowering: Lowering = Lowering()

  @nn.compact
  def __call__(self, *inputs):
    return self.fn(self, *inputs)


class Eval(nn.Module):
  """`inner(x, False)`: a module whose __call__ takes (x, train), for inference."""
  inner: nn.Module

  def __call__(self, x):
    return self.inner(x, False)


class Sum(nn.Module):
  """DANet's attentions: `a(x) + b(x)`, PAM and CAM in parallel (the two DAHead branches)."""
  a: nn.Module
  b: nn.Module

  def __call__(self, x):
    return self.a(x) + self.b(x)


def ablation(block):
  """The core of configs/fla_ablation.py's `block` (FLANet Table 3), as its head runs it."""
  return lambda c, lo: Block(lambda m, x: fla_ablation.attention_core(m, block, x, False),
                             lowering=lo)


def afm(module, feat16, feat32, feat32c):
  """AttaNet's AFM: the channel gate a = AttentionFusion(feat16, feat32) and the fusion
  feat16 * (1 - a) + up(feat32c * a). feat32 is the raw 1/32 map (4C channels, 640 = 128 +
  512 into the 1x1 conv as in AttaNet), feat32c its baseline conv_head32 output (C)."""
  a = attanet.AttentionFusion(feat16.shape[-1], lowering=module.lowering, name="afm")(
      feat16, feat32, False)
  return attanet.fuse(feat16, feat32c, a)[0]


# block: (module factory of (C, lowering), what is counted)
BLOCKS = {
    "fla": (lambda c, lo: Block(fla.fully_attentional, lowering=lo),
            "2 Linear encoders + fla_attention (4 N C^2)"),
    "channel_nl": (ablation("channel_nl"), "FLANet's Channel NL, softmax(X^T X) X (2 N C^2)"),
    "spatial_nl": (ablation("spatial_nl"), "Spatial NL: DANet PAM, q/k 64, v C"),
    "dual_nl": (ablation("dual_nl"), "Channel NL + Spatial NL in parallel"),
    "cs_nl": (ablation("cs_nl"), "Channel NL then Spatial NL"),
    "ema": (ablation("ema"), "EMA unit in FLANet's head (as emanet)"),
    "rcca": (ablation("rcca"), "RCCA in FLANet's head (as ccnet)"),
    "nl": (lambda c, lo: Eval(nl.NonLocal2d(lowering=lo)), "mmcv NonLocal2d, C/2, conv_out"),
    "danet": (lambda c, lo: Sum(danet.PAM(64, lowering=lo), danet.CAM()),
              "DANet PAM + CAM in parallel"),
    "dnl": (lambda c, lo: Eval(dnl.DisentangledNonLocal2d(lowering=lo)),
            "DisentangledNonLocal2d"),
    "denoised_nl": (lambda c, lo: Block(denoised_nl.rectified_attention, lowering=lo),
                    "q/k C/8, v C + rectified attention + LR"),
    "reconet": (lambda c, lo: reconet.TGMTRM(64, 64), "TGM + TRM, rank 64"),
    "emanet": (lambda c, lo: Block(lambda m, x: emanet.ema_block(m, x, 64, 3, 0.1, False),
                                   lowering=lo),
               "mid conv + 3 EM steps (K 64) + recon + out conv"),
    "isanet": (lambda c, lo: Block(lambda m, x: isanet.interlaced_relations(m, x, 256, (8, 8),
                                                                            False),
                                   lowering=lo), "global + local relation, 8x8"),
    "ccnet": (lambda c, lo: ccnet.CrissCrossAttention(2, lowering=lo),
              "criss-cross x2, q/k C/8, v C"),
    "sam": (lambda c, lo: Eval(attanet.StripAttention(64, lowering=lo)),
            "strip attention, q/k 64, v C"),
    "afm": (lambda c, lo: Block(afm, lowering=lo),
            "1x1 ConvBNReLU on cat[f16, f32], gate, fuse"),
    "sa": (lambda c, lo: Eval(sanet.SAModule(c // 4, lowering=lo)), "SANet SA module, C/4"),
}


def block_inputs(name, batch, h, w, c):
  """ShapeDtypeStructs of one block's inputs at the (batch, h, w, c) map."""
  f32 = jnp.float32
  x = jax.ShapeDtypeStruct((batch, h, w, c), f32)
  if name == "denoised_nl":
    return (x, jax.ShapeDtypeStruct((batch, h, w, NUM_CLASSES), f32))
  if name == "afm":
    h2, w2 = math.ceil(h / 2), math.ceil(w / 2)
    return (x, jax.ShapeDtypeStruct((batch, h2, w2, 4 * c), f32),
            jax.ShapeDtypeStruct((batch, h2, w2, c), f32))
  return (x,)


# ----------------------------------------------------------------------------------------------

def lowering(attention="auto") -> Lowering:
  """Direct convolutions (as GPU and TPU run them), and the attention path of NL, DNL, PAM, ISA
  and Denoised NL: 'auto' (the default limits), 'direct' (always the whole N x N map) or
  'chunked' (always query blocks)."""
  if attention == "auto":
    return Lowering(conv="direct")
  limit = float("inf") if attention == "direct" else 0
  return Lowering(conv="direct", attention_max_bytes=limit, relation_max_bytes=limit)


def block_program(name, batch, h, w, c, attention="auto"):
  """(fn, args): block `name` at the (batch, h, w, c) map; args are ShapeDtypeStructs."""
  module = BLOCKS[name][0](c, lowering(attention))
  inputs = block_inputs(name, batch, h, w, c)
  variables = jax.eval_shape(lambda *a: module.init(jax.random.key(0), *a), *inputs)
  return (lambda v, *a: module.apply(v, *a)), (variables, *inputs)


def net_program(head, size, batch, backbone="", attention="auto"):
  """(fn, args): the whole network of `configs/<head>_cityscapes.py` ('out' logits) on
  (batch, *size, 3) images, with ResNet depth `backbone` ('resnet50'; '' keeps the config's)."""
  config = config_lib.load(os.path.join(REPO, "configs", f"{head}_cityscapes.py"))
  if backbone:
    config.model.backbone.depth = int(backbone.replace("resnet", ""))
  config.model.lowering = dataclasses.asdict(lowering(attention))
  model = build_model(config.model)
  images = jax.ShapeDtypeStruct((batch, *size, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)
  return (lambda v, x: model.apply(v, x)["out"]), (variables, images)


def gflops(fn, args):
  """XLA's FLOPs of the lowered program `fn` (built with the direct attention: the cost
  analysis counts a loop body once, so a chunked program would be undercounted), in G."""
  return jax.jit(fn).lower(*args).cost_analysis()["flops"] / 1e9


def memory_mib(fn, args, backward=False):
  """Arguments + outputs + temporaries of the compiled program, in MiB. With `backward`, of
  the vjp of fn (a cotangent input, gradients w.r.t. all args): forward and backward pass as
  a training step holds them."""
  if backward:
    cotangent = jax.eval_shape(fn, *args)
    args = (cotangent, *args)
    program = lambda ct, *a: jax.vjp(fn, *a)[1](ct)  # noqa: E731
  else:
    program = lambda *a: fn(*a)  # noqa: E731
  options = CPU_OPTIONS if jax.default_backend() == "cpu" else None
  m = jax.jit(program).lower(*args).compile(options).memory_analysis()
  return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes) / 2**20


def rows(table="flanet", size=None, stride=None, channels=None, backbone=None, batch=1,
         blocks=None, nets=None, attention="auto"):
  """The cost records, one dict per block (`blocks`: names, None for all) and per network
  (`nets`: heads, None for all). Unset settings come from `table`."""
  t_size, t_stride, t_c, t_backbone, figures, per_mac = TABLES[table]
  size, stride, c = size or t_size, stride or t_stride, channels or t_c
  backbone = t_backbone if backbone is None else backbone
  h, w = math.ceil(size[0] / stride), math.ceil(size[1] / stride)
  out = []
  for name in (list(BLOCKS) if blocks is None else blocks):
    g = gflops(*block_program(name, batch, h, w, c, "direct"))
    fn, args = block_program(name, batch, h, w, c, attention)
    paper_gflops, paper_mb = figures.get(name, (None, None))
    out.append({"block": name, "counts": BLOCKS[name][1], "table": table, "size": list(size),
                "feature": [batch, h, w, c], "attention": attention, "gflops": g,
                "gmacs": g / 2, "memory_mb": memory_mib(fn, args),
                "train_memory_mb": memory_mib(fn, args, backward=True),
                "paper_gflops": paper_gflops, "paper_memory_mb": paper_mb,
                "ratio": g * per_mac / 2 / paper_gflops if paper_gflops else None})
  for head in (NETS if nets is None else nets):
    g = gflops(*net_program(head, size, batch, backbone, "direct"))
    fn, args = net_program(head, size, batch, backbone, attention)
    out.append({"block": f"net:{head}", "counts": "whole network", "table": table,
                "size": list(size), "backbone": backbone or "config's", "attention": attention,
                "gflops": g, "gmacs": g / 2, "memory_mb": memory_mib(fn, args),
                "train_memory_mb": None, "paper_gflops": None, "paper_memory_mb": None,
                "ratio": None})
  return out


def _fmt(v, spec):
  return "-" if v is None else format(v, spec)


def print_table(records):
  print("| block | counted | feature | GFLOPs | paper | ratio | memory MiB | train MiB "
        "| paper MB |")
  print("|---|---|---|---|---|---|---|---|---|")
  for r in records:
    feature = "x".join(str(v) for v in r["feature"][1:]) if "feature" in r else r["backbone"]
    print(f"| {r['block']} | {r['counts']} | {feature} | {r['gflops']:.3f} | "
          f"{_fmt(r['paper_gflops'], '.3f')} | {_fmt(r['ratio'], '.3f')} | "
          f"{r['memory_mb']:.0f} | {_fmt(r['train_memory_mb'], '.0f')} | "
          f"{_fmt(r['paper_memory_mb'], '.0f')} |")
  tables = {r["table"] for r in records}
  if "flanet" in tables:
    print("\npaper: FLANet Table 3 (1 multiply-add = 2 FLOPs); ratio = GFLOPs / paper.")
  if "attanet" in tables:
    print("\npaper: AttaNet Table 3, in multiply-adds; ratio = (GFLOPs / 2) / paper.")


def _names(arg, known, what):
  if arg == "all":
    return None
  if arg == "none":
    return []
  names = [n for n in arg.split(",") if n]
  for n in names:
    if n not in known:
      raise SystemExit(f"cost.py: error: unknown {what} {n!r}; known: {', '.join(known)}")
  return names


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--table", default="flanet", choices=sorted(TABLES),
                 help="paper setting and figures: flanet (768, 1/8, C 512, R50), attanet "
                      "(1024, 1/16, C 128, R18), none")
  p.add_argument("--size", default="", help="input HxW (default: the table's)")
  p.add_argument("--stride", type=int, default=0, help="blocks' map = input / stride")
  p.add_argument("--channels", type=int, default=0, help="C of the blocks' map")
  p.add_argument("--backbone", default=None, help="resnet18|34|50|101 for net: rows "
                 "(default: the table's; '' keeps each config's)")
  p.add_argument("--batch", type=int, default=1)
  p.add_argument("--blocks", default="all", help="comma list, 'all' or 'none'")
  p.add_argument("--nets", default="all", help="comma list of heads, 'all' or 'none'")
  p.add_argument("--attention", default="auto", choices=["auto", "direct", "chunked"],
                 help="spatial / denoised attention path for the memory column")
  p.add_argument("--json", action="store_true", help="print only a JSON list")
  a = p.parse_args()
  size = tuple(int(v) for v in a.size.lower().split("x")) if a.size else None
  records = rows(a.table, size, a.stride or None, a.channels or None, a.backbone, a.batch,
                 _names(a.blocks, list(BLOCKS), "block"), _names(a.nets, NETS, "net"),
                 a.attention)
  if a.json:
    print(json.dumps(records))
  else:
    print_table(records)


if __name__ == "__main__":
  main()
