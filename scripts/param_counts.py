"""Parameter counts of every network config (whole model, backbone and head; the classifier
for the config's classes; aux outputs included), via eval_shape.

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


def describe(b) -> str:
  """A short name of a backbone config: 'R101 deep OS8', 'hrnet W48', 'dfnet df2', ..."""
  name = b.get("name", "resnet")
  if name == "resnet":
    return f"R{b.depth} {b.stem} OS{b.output_stride}"
  fields = ", ".join(f"{k}={v}" for k, v in sorted(b.items()) if k != "name")
  return f"{name} ({fields})"


def main():
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
    model = build_model(c.model)
    x = jnp.zeros((1, 64, 64, 3), jnp.uint8)
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]
    print(f"| {os.path.basename(path)[:-3]} | {describe(c.model.backbone)} | "
          f"{count(v) / 1e6:.2f} | {count(v['backbone']) / 1e6:.2f} | "
          f"{count(v['head']) / 1e6:.2f} |")


if __name__ == "__main__":
  main()
