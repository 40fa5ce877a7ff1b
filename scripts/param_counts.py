"""Parameter counts of every network config (whole model, backbone and head; the classifier
for the config's classes; aux outputs included), via eval_shape; and the convolution
multiply-adds of a config at a size, counted as the HRNet README counts "GFLOPs".

  python scripts/param_counts.py            # markdown table for the README
  python scripts/param_counts.py --macs=configs/fcn_hrnet48_cityscapes.py --size=1024x2048

HRNet-Semantic-Segmentation's `lib/utils/modelsummary.py` counts, per Conv2d, the product of
its weight shape and its output's H x W (batch 1, bias and BN not counted, nor the resizes)
and prints the sum divided by 1024**3 as "GFLOPs": the 696.2 of HRNetV2-W48 at 1024x2048 is
747.5e9 multiply-adds / 2**30. `--macs` counts the same on the eval-mode forward of the model
with direct convolutions (every `conv_general_dilated` of its jaxpr, nested ones included).
"""
import argparse
import glob
import os
import sys

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from flaseg import config_lib  # noqa: E402
from flaseg.models import build_model  # noqa: E402


def count(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def model_params(config):
  """The abstract parameter tree (shapes only, via eval_shape) of `config`'s model."""
  model = build_model(config.model)
  x = jnp.zeros((1, 64, 64, 3), jnp.uint8)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]


def describe(b) -> str:
  """A short name of a backbone config: 'R101 deep OS8', 'hrnet W48', 'dfnet df2', ..."""
  name = b.get("name", "resnet")
  if name == "resnet":
    return f"R{b.depth} {b.stem} OS{b.output_stride}"
  fields = ", ".join(f"{k}={v}" for k, v in sorted(b.items()) if k != "name")
  return f"{name} ({fields})"


def conv_layers(jaxpr) -> list:
  """(kernel shape HWIO, output positions = batch x output H x W) of every convolution of the
  jaxpr, nested ones included (kernel I is Cin / groups)."""
  layers = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      kernel = eqn.invars[1].aval.shape
      out = eqn.outvars[0].aval.shape
      spec = eqn.params["dimension_numbers"].out_spec  # (batch, feature, spatial...)
      positions = int(np.prod([out[d] for d in spec[2:]])) * out[spec[0]]
      layers.append((tuple(kernel), positions))
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      layers += conv_layers(sub)
  return layers


def model_conv_layers(config, size) -> list:
  """`conv_layers` of one eval-mode forward (batch 1, every output) of `config`'s model at
  `size`, with direct convolutions (`Lowering(conv='direct', dilated='lax')`: every conv one
  conv op, no `platform_dependent` branches, each of which would hold a copy of the conv)."""
  c = config.copy_and_resolve_references()
  c.model.lowering.conv = "direct"
  c.model.lowering.dilated = "lax"
  if c.model.num_classes == 0:
    c.model.num_classes = 19
  model = build_model(c.model)
  x = jax.ShapeDtypeStruct((1, *size, 3), jnp.uint8)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.uint8)))
  return conv_layers(jax.make_jaxpr(lambda v, x: model.apply(v, x, False))(v, x).jaxpr)


def conv_macs(config, size) -> int:
  """Convolution multiply-adds as modelsummary.py counts them: sum of prod(kernel shape) x
  output positions."""
  return sum(int(np.prod(k)) * n for k, n in model_conv_layers(config, size))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--macs", default="", help="configs/X.py[:arg]: count its conv MACs instead")
  p.add_argument("--size", default="1024x2048", help="HxW for --macs")
  a = p.parse_args()
  if a.macs:
    macs = conv_macs(config_lib.load(a.macs), tuple(int(v) for v in a.size.lower().split("x")))
    print(f"{a.macs} at {a.size}: {macs / 1e9:.1f} G conv multiply-adds = "
          f"{macs / 2 ** 30:.1f} 'GFLOPs' as HRNet's modelsummary.py prints them (/ 1024**3)")
    return
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  print("| config | backbone | params (M) | backbone (M) | head (M) |")
  print("|---|---|---|---|---|")
  paths = sorted(glob.glob(os.path.join(repo, "configs", "*.py")))
  for path in paths:
    if os.path.basename(path) in ("study.py", "quickstart.py"):
      continue
    c = config_lib.load(path)
    if c.model.num_classes == 0:  # 'the dataset's' (PASCAL Context): 59, or 60 with context_60
      c.model.num_classes = 60 if c.data.context_60 else 59
    v = model_params(c)
    print(f"| {os.path.basename(path)[:-3]} | {describe(c.model.backbone)} | "
          f"{count(v) / 1e6:.2f} | {count(v['backbone']) / 1e6:.2f} | "
          f"{count(v['head']) / 1e6:.2f} |")


if __name__ == "__main__":
  main()
