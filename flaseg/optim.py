"""SGD with momentum, coupled weight decay (torch `SGD(weight_decay=...)`), a poly learning
rate with optional linear or exponential warm-up, and per-parameter LR multipliers."""
import re

import flax
import jax
import jax.numpy as jnp
import optax

from flaseg.errors import ConfigError


def lr_schedule(cfg, total_steps: int):
  """step -> learning rate.

  poly: lr = (base - end) * (1 - t / T) ** power + end, stepped every iteration (FLANet,
  mmseg `PolyLR` with eta_min=end). Warm-up over `warmup_steps`:
    'linear': from base * warmup_ratio to base (mmseg);
    'exp':    warmup_start * (base / warmup_start) ** (t / W) (AttaNet, from 1e-5);
  after a warm-up the poly decay runs over the remaining T - W steps (AttaNet).
  """
  base, end, power, warm = cfg.lr, cfg.end_lr, cfg.poly_power, int(cfg.warmup_steps)
  decay_steps = max(total_steps - (warm if cfg.warmup != "none" else 0), 1)

  def poly(t):
    frac = jnp.clip(t / decay_steps, 0.0, 1.0)
    return (base - end) * (1.0 - frac) ** power + end

  def schedule(step):
    t = jnp.asarray(step, jnp.float32)
    if cfg.warmup == "none" or warm == 0:
      return poly(t)
    if cfg.warmup == "linear":
      warm_lr = base * (cfg.warmup_ratio + (1.0 - cfg.warmup_ratio) * t / warm)
    else:  # 'exp'
      warm_lr = cfg.warmup_start * (base / cfg.warmup_start) ** (t / warm)
    return jnp.where(t < warm, warm_lr, poly(t - warm))

  return schedule


def _path_names(params):
  flat = flax.traverse_util.flatten_dict(params, sep="/")
  return flax.traverse_util.unflatten_dict({k: k for k in flat}, sep="/")


def decay_mask(params, exclude_bn_and_bias: bool):
  """True where weight decay applies: everything, or only conv/dense kernels."""
  return jax.tree.map(lambda path: not exclude_bn_and_bias or path.endswith("kernel"),
                      _path_names(params))


def lr_multipliers(params, rules):
  """A pytree of LR multipliers: the first regex in `rules` ({pattern: mult}) that searches a
  parameter's path ('head/conv_out1/cls/kernel') sets its multiplier; default 1."""
  def mult(path):
    for pattern, m in rules.items():
      if re.search(pattern, path):
        return float(m)
    return 1.0
  return jax.tree.map(mult, _path_names(params))


def make_optimizer(cfg, params, total_steps: int):
  """optax chain equal to torch SGD(momentum, weight_decay, dampening=0) with param-group LRs."""
  if cfg.name != "sgd":
    raise ConfigError(f"config.optim.name={cfg.name!r}: only 'sgd' is implemented")
  schedule = lr_schedule(cfg, total_steps)
  mults = lr_multipliers(params, dict(cfg.lr_mult))
  return optax.chain(
      optax.add_decayed_weights(cfg.weight_decay, decay_mask(params, cfg.no_decay_bn_bias)),
      optax.trace(decay=cfg.momentum, nesterov=False),
      optax.scale_by_schedule(lambda step: -schedule(step)),
      optax.GradientTransformation(
          lambda p: optax.EmptyState(),
          lambda u, s, p=None: (jax.tree.map(lambda x, m: x * m, u, mults), s)),
  ), schedule
