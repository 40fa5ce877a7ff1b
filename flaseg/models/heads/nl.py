"""NLHead: mmseg `nl_head.py` with mmcv `NonLocal2d` (embedded Gaussian), attention-heads.md §7.1.

`NonLocal2d` is also the body of DNL's block (heads/dnl.py): the projections, the scale and
the zero-initialised `conv_out` are shared; a subclass changes only `aggregate`.

Init follows mmcv where it is visible at init: theta/phi/g are normal(0.01) with zero bias and
the BN after `conv_out` starts at weight 0, bias 0 (`zeros_init=True`), so the block is the
identity at init. ConvModules (conv + BN + ReLU) use flaseg's `ConvBNReLU` init, not mmcv's
kaiming fan_out; a BN follows each of them, so only the pre-BN scale differs.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from flaseg.models.attention import spatial_attention
from flaseg.models.heads.fcn import FCNHead
from flaseg.models.layers import batch_norm, conv
from flaseg.models.lowering import DEFAULT, Lowering

Dtype = Any


class ZeroInitConvBN(nn.Module):
  """mmcv NonLocal `conv_out`: 1x1 conv (no bias) + BN, no activation; with `zeros_init=True`
  the BN weight and bias start at 0 so that `x + conv_out(y)` starts as the identity."""
  features: int
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, x, train: bool):
    x = conv(self.features, 1, dtype=self.dtype, name="conv", lowering=self.lowering)(x)
    return batch_norm(train, self.dtype, name="bn", scale_init=nn.initializers.zeros)(x)


class NonLocal2d(nn.Module):
  """mmcv `NonLocal2d(C, reduction, use_scale, mode='embedded_gaussian')`:
  out = x + conv_out(softmax(theta phi^T / sqrt(C/r)) g). g, theta, phi are 1x1
  ConvModules with bias and no norm/act, weights normal(0.01) and bias 0
  (`init_weights(std=0.01)`)."""
  reduction: int = 2
  use_scale: bool = True
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  def aggregate(self, x, g, theta, phi, scale):
    """The attended values (B, H, W, C/r) that `conv_out` maps back to C."""
    del x
    return spatial_attention(theta, phi, g, scale, self.lowering)

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    inter = c // self.reduction
    init = nn.initializers.normal(0.01)
    g, theta, phi = (conv(inter, 1, bias=True, dtype=self.dtype, kernel_init=init, name=n,
                          lowering=self.lowering)(x) for n in ("g", "theta", "phi"))
    scale = inter ** -0.5 if self.use_scale else 1.0
    y = self.aggregate(x, g, theta, phi, scale)
    return x + ZeroInitConvBN(c, self.dtype, self.lowering, name="conv_out")(y, train)


class NLHead(FCNHead):
  """mmseg NLHead on 'c5': FCNHead (convs_0 -> convs_1 -> conv_cat on cat[x, out] -> Dropout2d ->
  1x1) with NonLocal2d after convs_0, plus the aux head. Returns {'out', 'aux'}."""
  reduction: int = 2
  use_scale: bool = True
  aux_channels: int = 256

  def block(self, y, train):
    return NonLocal2d(self.reduction, self.use_scale, self.dtype, self.lowering,
                      name="nl_block")(y, train)
