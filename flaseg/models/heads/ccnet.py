"""CCNet: criss-cross attention (Huang et al., ICCV 2019), mmseg `cc_head.py` with mmcv
`ops/cc_attention.py` (the pure-PyTorch version, mmcv PR #1201), attention-heads.md §7.6.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaseg.models.heads.fcn import FCNHead
from flaseg.models.layers import plain_conv
from flaseg.models.lowering import DEFAULT, Lowering

Dtype = Any


def criss_cross_attention(q, k, v):
  """Criss-cross attention, NHWC: every pixel (h, w) attends to its column (i, w) and its row
  (h, j) with one softmax over the H + W energies (float32, no scaling). The column energy at
  i == h is -inf, so the pixel itself is counted once (in the row): H + W - 1 positions, as
  the original CUDA op. q, k: (B, H, W, D); v: (B, H, W, C). Returns (B, H, W, C).
  """
  h = q.shape[1]
  e_h = jnp.einsum("bhwc,biwc->bhwi", q, k, preferred_element_type=jnp.float32)
  # The diagonal as a numpy constant (not jnp.eye, which jax2onnx turns into an ONNX EyeLike
  # that onnxruntime cannot run for booleans).
  e_h = jnp.where(np.eye(h, dtype=bool)[None, :, None, :], -jnp.inf, e_h)
  e_w = jnp.einsum("bhwc,bhjc->bhwj", q, k, preferred_element_type=jnp.float32)
  attn = jax.nn.softmax(jnp.concatenate([e_h, e_w], axis=-1), axis=-1).astype(v.dtype)
  return (jnp.einsum("bhwi,biwc->bhwc", attn[..., :h], v)
          + jnp.einsum("bhwj,bhjc->bhwc", attn[..., h:], v))


class CrissCrossAttention(nn.Module):
  """mmcv `CrissCrossAttention(C)` applied `recurrence` times with the same weights (CCNet's
  RCCA; mmseg's CCHead loops over one module): q, k plain 1x1 conv C -> C // 8, v C -> C
  (bias); x = x + gamma * cca(q(x), k(x), v(x)), gamma a scalar initialised to 0."""
  recurrence: int = 1
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    q_conv = plain_conv(c // 8, c, self.dtype, "query_conv", self.lowering)
    k_conv = plain_conv(c // 8, c, self.dtype, "key_conv", self.lowering)
    v_conv = plain_conv(c, c, self.dtype, "value_conv", self.lowering)
    gamma = self.param("gamma", nn.initializers.zeros, (), jnp.float32)
    for _ in range(self.recurrence):
      x = x + gamma.astype(x.dtype) * criss_cross_attention(q_conv(x), k_conv(x), v_conv(x))
    return x


class CCNetHead(FCNHead):
  """mmseg CCHead on 'c5': FCNHead with CrissCrossAttention applied `recurrence` times
  (shared weights) after convs_0, plus the aux head. Returns {'out', 'aux'}."""
  recurrence: int = 2
  aux_channels: int = 256

  def block(self, y, train):
    return CrissCrossAttention(self.recurrence, self.dtype, self.lowering, name="cca")(y)
