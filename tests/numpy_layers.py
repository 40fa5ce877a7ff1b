"""numpy float64 layers for the heads' independent references: random variables for a flax
module, a k x k convolution by explicit shifts, eval-mode BN and ConvBNReLU, reading flax's
parameter trees (kernel (kh, kw, in, out), 'bn' {'scale', 'bias'}, stats {'mean', 'var'})."""
import jax
import jax.numpy as jnp
import numpy as np


def random_variables(variables, seed):
  """Every parameter and BN statistic of `variables` random, so that a wrong weight, scale,
  offset or statistic shows (BN scales and variances in [0.5, 1.5], BN offsets around +0.3 so
  that most ReLUs pass). Returns (float32 jax tree for the module, float64 numpy tree)."""
  rng = np.random.default_rng(seed)
  leaves = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
    name = jax.tree_util.keystr(path)
    if "'var'" in name or "'scale'" in name:
      leaves.append(rng.uniform(0.5, 1.5, leaf.shape))
    elif "'bn'" in name:   # BN bias and mean
      leaves.append(0.2 * rng.normal(size=leaf.shape) + (0.3 if "bias" in name else 0.0))
    else:
      leaves.append(rng.normal(size=leaf.shape) * (0.5 if leaf.ndim < 2 else 1.0))
  tree = jax.tree.unflatten(jax.tree.structure(variables), leaves)
  return jax.tree.map(lambda t: jnp.asarray(t, jnp.float32), tree), tree


def conv(x, p):
  """k x k convolution, stride 1, zero padding k // 2 (torch `padding=k // 2`), (B, H, W, C),
  as a sum of shifted 1x1 products; `p` {'kernel'[, 'bias']}."""
  kernel = np.asarray(p["kernel"], np.float64)
  k = kernel.shape[0]
  b, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
  y = np.zeros((b, h, w, kernel.shape[-1]))
  for dy in range(k):
    for dx in range(k):
      y += xp[:, dy:dy + h, dx:dx + w] @ kernel[dy, dx]
  return y + np.asarray(p["bias"], np.float64) if "bias" in p else y


def bn(x, p, s):
  """Eval-mode BatchNorm (eps 1e-5)."""
  return (x - s["mean"]) / np.sqrt(s["var"] + 1e-5) * p["scale"] + p["bias"]


def conv_bn_relu(x, p, s):
  """flaseg `ConvBNReLU` (any kernel) in eval mode."""
  return np.maximum(bn(conv(x, p["conv"]), p["bn"], s["bn"]), 0)
