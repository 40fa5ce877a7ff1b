"""Parameter counts of every network config (whole model, backbone and head), via eval_shape.

  python scripts/param_counts.py            # markdown table for the README
"""
import glob
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from flaseg import config_lib  # noqa: E402
from flaseg.models import build_model  # noqa: E402


def count(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def main():
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  print("| config | backbone | params (M) | backbone (M) | head (M) |")
  print("|---|---|---|---|---|")
  for path in sorted(glob.glob(os.path.join(repo, "configs", "*_cityscapes.py"))):
    c = config_lib.load(path)
    model = build_model(c.model)
    x = jnp.zeros((1, 64, 64, 3), jnp.uint8)
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]
    b = c.model.backbone
    print(f"| {os.path.basename(path)[:-3]} | R{b.depth} {b.stem} OS{b.output_stride} | "
          f"{count(v) / 1e6:.2f} | {count(v['backbone']) / 1e6:.2f} | "
          f"{count(v['head']) / 1e6:.2f} |")


if __name__ == "__main__":
  main()
