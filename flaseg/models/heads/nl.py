"""NLHead: mmseg `nl_head.py` with mmcv `NonLocal2d` (embedded Gaussian), attention-heads.md §7.1.

Also holds what the other mmseg heads (DNL, DANet, ISA, CC) share: the attention core
`nl_attention` and `plain_conv` (a torch `nn.Conv2d` with its default init).

Init follows mmcv where it is visible at init: theta/phi/g are normal(0.01) with zero bias and
the BN after `conv_out` starts at weight 0, bias 0 (`zeros_init=True`), so the block is the
identity at init. ConvModules (conv + BN + ReLU) use flaseg's `ConvBNReLU` init, not mmcv's
kaiming fan_out; a BN follows each of them, so only the pre-BN scale differs.
"""
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaseg.models.heads.fcn import ClsSeg, mmseg_aux
from flaseg.models.layers import ConvBNReLU, batch_norm, conv

Dtype = Any


def torch_bias_init(fan_in: int):
  """torch `nn.Conv2d` default bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def plain_conv(features: int, fan_in: int, dtype: Dtype = jnp.float32, name=None,
               kernel_init=None, bias_init=None) -> nn.Conv:
  """A 1x1 torch `nn.Conv2d(bias=True)`. Default init as torch: kernel and bias
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5))."""
  return nn.Conv(features, (1, 1), use_bias=True, dtype=dtype, param_dtype=jnp.float32,
                 kernel_init=kernel_init or nn.initializers.variance_scaling(
                     1.0 / 3.0, "fan_in", "uniform"),
                 bias_init=bias_init or torch_bias_init(fan_in), name=name)


def nl_attention(theta, phi, g, scale=1.0):
  """Embedded-Gaussian attention over all positions: softmax_m(theta_n . phi_m * scale) @ g.

  theta, phi: (B, *S, D) queries and keys; g: (B, *S, E) values, with the same positions S
  (any spatial rank, flattened row-major as torch `.view(n, c, -1)`). The softmax runs over the
  keys (last axis, mmcv `softmax(dim=-1)`) in float32. Returns (B, *S, E).
  """
  b = theta.shape[0]
  q = theta.reshape(b, -1, theta.shape[-1])
  k = phi.reshape(b, -1, phi.shape[-1])
  v = g.reshape(b, -1, g.shape[-1])
  logits = jnp.einsum("bnd,bmd->bnm", q, k, preferred_element_type=jnp.float32)
  attn = jax.nn.softmax(logits * scale, axis=-1).astype(v.dtype)
  out = jnp.einsum("bnm,bme->bne", attn, v)
  return out.reshape(*theta.shape[:-1], v.shape[-1])


def nl_projections(x, inter: int, dtype: Dtype):
  """mmcv `_NonLocalNd` g, theta, phi: 1x1 ConvModules with bias and no norm/act, weights
  normal(0.01) and bias 0 (`init_weights(std=0.01)`). Called inside a compact module."""
  init = nn.initializers.normal(0.01)
  return [conv(inter, 1, bias=True, dtype=dtype, kernel_init=init, name=n)(x)
          for n in ("g", "theta", "phi")]


class ZeroInitConvBN(nn.Module):
  """mmcv NonLocal `conv_out`: 1x1 conv (no bias) + BN, no activation; with `zeros_init=True`
  the BN weight and bias start at 0 so that `x + conv_out(y)` starts as the identity."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = conv(self.features, 1, dtype=self.dtype, name="conv")(x)
    return batch_norm(train, self.dtype, name="bn", scale_init=nn.initializers.zeros)(x)


class NonLocal2d(nn.Module):
  """mmcv `NonLocal2d(C, reduction, use_scale, mode='embedded_gaussian')`:
  out = x + conv_out(softmax(theta phi^T / sqrt(C/r)) g)."""
  reduction: int = 2
  use_scale: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    inter = c // self.reduction
    g, theta, phi = nl_projections(x, inter, self.dtype)
    scale = inter ** -0.5 if self.use_scale else 1.0
    y = nl_attention(theta, phi, g, scale)
    return x + ZeroInitConvBN(c, self.dtype, name="conv_out")(y, train)


class NLHead(nn.Module):
  """mmseg NLHead on 'c5': convs_0 (3x3 -> channels) -> NonLocal2d -> convs_1 (3x3) ->
  conv_cat (3x3 on cat[x, out]) -> Dropout2d -> 1x1. Returns {'out', 'aux'}."""
  num_classes: int
  channels: int = 512
  reduction: int = 2
  use_scale: bool = True
  concat_input: bool = True
  dropout: float = 0.1
  aux_channels: int = 256
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, feats, train: bool = False):
    x = feats["c5"]
    y = ConvBNReLU(self.channels, 3, dtype=self.dtype, name="convs_0")(x, train)
    y = NonLocal2d(self.reduction, self.use_scale, self.dtype, name="nl_block")(y, train)
    y = ConvBNReLU(self.channels, 3, dtype=self.dtype, name="convs_1")(y, train)
    if self.concat_input:
      y = ConvBNReLU(self.channels, 3, dtype=self.dtype, name="conv_cat")(
          jnp.concatenate([x, y], -1), train)
    out = ClsSeg(self.num_classes, self.dropout, self.dtype, name="cls")(y, train)
    return {"out": out, "aux": mmseg_aux(self, feats, train)}
