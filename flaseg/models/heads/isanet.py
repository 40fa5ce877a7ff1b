"""ISANet: Interlaced Sparse Self-Attention (Huang et al., 2019), mmseg `isa_head.py`,
attention-heads.md §7.5.

The map is zero-padded symmetrically to multiples of `down_factor` = (lh, lw); the global
relation attends within each of the lh * lw interlaced groups of (gh, gw) pixels that share an
offset inside their lh x lw block, then the local relation within each lh x lw block. The
padding pixels take part in the attention (and in the BN statistics) as in mmseg.
"""
import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from flaseg.models.attention import spatial_attention
from flaseg.models.heads.fcn import auxiliary_head
from flaseg.models.heads.head import Head
from flaseg.models.heads.outputs import mmseg_cls_seg
from flaseg.models.layers import ConvBNReLU, plain_conv
from flaseg.models.lowering import DEFAULT, Lowering

Dtype = Any


def isa_padding(h: int, w: int, down_factor: Sequence[int]):
  """((top, bottom), (left, right)) zero padding up to multiples of down_factor, as mmseg
  (`pad // 2` before, the rest after)."""
  lh, lw = down_factor
  pad_h, pad_w = math.ceil(h / lh) * lh - h, math.ceil(w / lw) * lw - w
  return (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)


def isa_partition(x, down_factor):
  """(B, H, W, C) -> global groups (B * lh * lw, gh, gw, C), padding first.
  Group (b, i, j) holds padded[b, p * lh + i, q * lw + j] at (p, q)."""
  lh, lw = down_factor
  b, h, w, c = x.shape
  ph, pw = isa_padding(h, w, down_factor)
  x = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
  gh, gw = x.shape[1] // lh, x.shape[2] // lw
  x = x.reshape(b, gh, lh, gw, lw, c).transpose(0, 2, 4, 1, 3, 5)
  return x.reshape(b * lh * lw, gh, gw, c)


def isa_regroup(x, batch: int, down_factor):
  """Global groups (B * lh * lw, gh, gw, C) -> local groups (B * gh * gw, lh, lw, C).
  Local group (b, p, q) holds padded[b, p * lh + i, q * lw + j] at (i, j)."""
  lh, lw = down_factor
  _, gh, gw, c = x.shape
  x = x.reshape(batch, lh, lw, gh, gw, c).transpose(0, 3, 4, 1, 2, 5)
  return x.reshape(batch * gh * gw, lh, lw, c)


def isa_unpartition(x, batch: int, size: Sequence[int], down_factor):
  """Local groups (B * gh * gw, lh, lw, C) -> (B, H, W, C), removing the padding."""
  lh, lw = down_factor
  h, w = size
  c = x.shape[-1]
  (top, _), (left, _) = isa_padding(h, w, down_factor)
  gh, gw = math.ceil(h / lh), math.ceil(w / lw)
  x = x.reshape(batch, gh, gw, lh, lw, c).transpose(0, 1, 3, 2, 4, 5)
  x = x.reshape(batch, gh * lh, gw * lw, c)
  return x[:, top:top + h, left:left + w]


class ISASelfAttention(nn.Module):
  """mmseg ISA `SelfAttentionBlock`: query and key (not shared) are two 1x1 ConvBNReLU ->
  `channels`; value a plain 1x1 conv (bias) C -> C; attention scaled by channels^-0.5, softmax
  over keys; then `output_project` 1x1 ConvBNReLU C -> C."""
  channels: int = 256
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1]
    kw = dict(dtype=self.dtype, lowering=self.lowering)
    q, k = x, x
    for i in range(2):
      q = ConvBNReLU(self.channels, 1, **kw, name=f"query_project_{i}")(q, train)
      k = ConvBNReLU(self.channels, 1, **kw, name=f"key_project_{i}")(k, train)
    v = plain_conv(c, c, self.dtype, "value_project", self.lowering)(x)
    y = spatial_attention(q, k, v, self.channels ** -0.5, self.lowering)
    return ConvBNReLU(c, 1, **kw, name="output_project")(y, train)


def interlaced_relations(module: nn.Module, x, channels: int, down_factor, train: bool):
  """ISAHead between `in_conv` and `out_conv`: the global relation over the interlaced groups,
  then the local relation in each block. Creates its layers in `module` (call it from a
  compact method; scripts/cost.py counts it)."""
  factor = tuple(down_factor)
  b, h, w, _ = x.shape
  kw = dict(dtype=module.dtype, lowering=module.lowering)
  y = isa_partition(x, factor)
  y = ISASelfAttention(channels, **kw, name="global_relation")(y, train)
  y = isa_regroup(y, b, factor)
  y = ISASelfAttention(channels, **kw, name="local_relation")(y, train)
  return isa_unpartition(y, b, (h, w), factor)


class ISANetHead(Head):
  """mmseg ISAHead on 'c5': in_conv (3x3 -> channels) -> `interlaced_relations` -> out_conv
  (1x1 ConvBNReLU on cat[relations, in_conv output]) -> Dropout2d -> 1x1 (no concat with the
  backbone input). Returns {'out', 'aux'}."""
  FEATURES = ("c4", "c5")
  channels: int = 512
  isa_channels: int = 256
  down_factor: Sequence[int] = (8, 8)
  dropout: float = 0.1
  aux_channels: int = 256

  @nn.compact
  def __call__(self, feats, train: bool = False):
    kw = self.layer_kw
    x = ConvBNReLU(self.channels, 3, **kw, name="in_conv")(feats["c5"], train)
    y = interlaced_relations(self, x, self.isa_channels, self.down_factor, train)
    y = ConvBNReLU(self.channels, 1, **kw, name="out_conv")(jnp.concatenate([y, x], -1), train)
    return {"out": mmseg_cls_seg(self)(y, train), "aux": auxiliary_head(self, feats, train)}
