"""Channel NL and CS NL: the NL variants of FLANet's ablation (Song et al., AAAI 2022, Table 3).

Neither variant is in the official FLANet code (attention-heads.md §9). flaseg builds them from
verified DANet (Fu et al., CVPR 2019) math inside FLANet's head, in place of the FLA block:

  * Channel NL: y = x + gamma * CAM(x) (DANet channel attention, softmax of X Xᵀ over channels
    with DANet's max - energy trick; gamma init 0), then a 3x3 conv + BN + ReLU, i.e. the FLA
    block's skeleton with the C x C map computed once per image instead of per row / column.
  * CS NL: Channel NL then Spatial NL in series: y = x + gc * CAM(x); y = y + gs * PAM(y)
    (DANet position attention, q/k 1x1 -> C/8 = 64 with bias, v 1x1 -> C with bias, no
    scaling), then one 3x3 conv + BN + ReLU. One conv after both attentions keeps the block
    the same size as the FLA and Channel NL blocks (our reading; the paper gives no layers).

`channel_attention` / `position_attention` are pure functions kept here so this file does not
depend on `danet.py`, written at the same time; the two can be merged later.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaseg.models.heads.fcn import UpsampleOutput
from flaseg.models.layers import ConvBNReLU, conv

Dtype = Any


def channel_attention(x):
  """DANet CAM core (no residual), NHWC: E = Xᵀ X (B, C, C) summed over positions,
  A = softmax_d(max_d' E[c, d'] - E[c, d]), out[n, c] = sum_d A[c, d] x[n, d]. No scaling."""
  energy = jnp.einsum("bhwc,bhwd->bcd", x, x).astype(jnp.float32)
  energy = jnp.max(energy, axis=-1, keepdims=True) - energy
  attn = jax.nn.softmax(energy, axis=-1).astype(x.dtype)
  return jnp.einsum("bcd,bhwd->bhwc", attn, x)


def position_attention(q, k, v):
  """DANet PAM core (no residual), NHWC: A = softmax_j(q_i . k_j) over the N = H*W keys,
  out_i = sum_j A[i, j] v_j. No scaling."""
  b, h, w, _ = q.shape
  q, k, v = (t.reshape(b, h * w, t.shape[-1]) for t in (q, k, v))
  attn = jax.nn.softmax(jnp.einsum("bic,bjc->bij", q, k).astype(jnp.float32), axis=-1)
  out = jnp.einsum("bij,bjc->bic", attn.astype(v.dtype), v)
  return out.reshape(b, h, w, v.shape[-1])


class ChannelAttention(nn.Module):
  """x + gamma * CAM(x), gamma a scalar initialised to 0 (DANet `CAM_Module`)."""
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    gamma = self.param("gamma", nn.initializers.zeros, (), jnp.float32)
    return x + gamma.astype(x.dtype) * channel_attention(x)


class PositionAttention(nn.Module):
  """x + gamma * PAM(x): q, k 1x1 convs to C / `reduction` and v 1x1 to C, all with bias
  (DANet `PAM_Module`); gamma a scalar initialised to 0."""
  reduction: int = 8
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    q = conv(max(c // self.reduction, 1), 1, bias=True, dtype=self.dtype, name="query")(x)
    k = conv(max(c // self.reduction, 1), 1, bias=True, dtype=self.dtype, name="key")(x)
    v = conv(c, 1, bias=True, dtype=self.dtype, name="value")(x)
    gamma = self.param("gamma", nn.initializers.zeros, (), jnp.float32)
    return x + gamma.astype(x.dtype) * position_attention(q, k, v)


class FLASkeletonHead(nn.Module):
  """FLANet's head (see `FLAHead`) with the attention block left to `block`: 2 x ConvBNReLU
  3x3 on layer4 -> block -> concat with layer4 -> UpsampleOutput; aux UpsampleOutput(64) on
  layer2 ('aux1') and layer3 ('aux2'). Parameter names match `FLAHead`'s."""
  num_classes: int
  channels: int = 512
  aux_channels: int = 64
  dropout: float = 0.1
  dtype: Dtype = jnp.float32

  def block(self, x, train):
    raise NotImplementedError

  @nn.compact
  def __call__(self, feats, train: bool = False):
    x = feats["c5"]
    y = ConvBNReLU(self.channels, 3, dtype=self.dtype, name="conv_0")(x, train)
    y = ConvBNReLU(self.channels, 3, dtype=self.dtype, name="conv_1")(y, train)
    y = self.block(y, train)
    out = UpsampleOutput(self.channels, self.num_classes, self.dropout, dtype=self.dtype,
                         name="conv_out1")(jnp.concatenate([x, y], -1), train)
    aux1 = UpsampleOutput(self.aux_channels, self.num_classes, self.dropout, dtype=self.dtype,
                          name="conv_out2")(feats["c3"], train)
    aux2 = UpsampleOutput(self.aux_channels, self.num_classes, self.dropout, dtype=self.dtype,
                          name="conv_out3")(feats["c4"], train)
    return {"out": out, "aux1": aux1, "aux2": aux2}


class ChannelNLHead(FLASkeletonHead):
  """FLANet head with a Channel NL block (FLANet Table 3 '+Channel NL')."""

  def block(self, x, train):
    y = ChannelAttention(self.dtype, name="channel")(x)
    return ConvBNReLU(x.shape[-1], 3, dtype=self.dtype, name="block_conv")(y, train)


class CSNLHead(FLASkeletonHead):
  """FLANet head with a CS NL block: Channel NL then Spatial NL (FLANet Table 3 '+CS NL')."""
  pam_reduction: int = 8

  def block(self, x, train):
    y = ChannelAttention(self.dtype, name="channel")(x)
    y = PositionAttention(self.pam_reduction, self.dtype, name="spatial")(y)
    return ConvBNReLU(x.shape[-1], 3, dtype=self.dtype, name="block_conv")(y, train)
