"""DAHead: Dual Attention Network (Fu et al., CVPR 2019), mmseg `da_head.py`,
attention-heads.md §7.2.

Two branches on 'c5', each 3x3 ConvBNReLU -> attention -> 3x3 ConvBNReLU: the position
attention module (PAM) and the channel attention module (CAM). Outputs 'out' = cls_seg of the
summed branch features (mmseg `pam_cam`, the prediction), 'pam', 'cam' (each weight 1) and
'aux' (0.4).
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaseg.models.heads.fcn import ClsSeg
from flaseg.models.heads.fcn import mmseg_aux
from flaseg.models.heads.nl import nl_attention, plain_conv
from flaseg.models.layers import ConvBNReLU, Dropout2d

Dtype = Any


def pam(q, k, v):
  """Position attention (mmseg `SelfAttentionBlock` with matmul_norm=False): for every position,
  softmax over all key positions of q . k (no scaling), float32, then @ v. (B, H, W, *)."""
  return nl_attention(q, k, v, 1.0)


def cam(x):
  """Channel attention: energy = X^T X (C x C over the N positions), A = softmax_d(max_d energy
  - energy) (DANet's max-minus trick, DANet#11), out[n, c] = sum_d A[c, d] x[n, d].
  x: (B, H, W, C); the energy and softmax are float32."""
  b, c = x.shape[0], x.shape[-1]
  flat = x.reshape(b, -1, c)
  energy = jnp.einsum("bnc,bnd->bcd", flat, flat, preferred_element_type=jnp.float32)
  energy = energy.max(axis=-1, keepdims=True) - energy
  attn = jax.nn.softmax(energy, axis=-1).astype(x.dtype)
  return jnp.einsum("bcd,bnd->bnc", attn, flat).reshape(x.shape)


class PAM(nn.Module):
  """out = x + gamma * pam(q, k, v); q, k: plain 1x1 conv C -> `channels` (64), v: C -> C,
  all with bias; gamma a scalar initialised to 0 (mmcv `Scale(0)`)."""
  channels: int = 64
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    q = plain_conv(self.channels, c, self.dtype, name="query_project")(x)
    k = plain_conv(self.channels, c, self.dtype, name="key_project")(x)
    v = plain_conv(c, c, self.dtype, name="value_project")(x)
    gamma = self.param("gamma", nn.initializers.zeros, (), jnp.float32)
    return x + gamma.astype(x.dtype) * pam(q, k, v)


class CAM(nn.Module):
  """out = x + gamma * cam(x), gamma a scalar initialised to 0; no convs."""

  @nn.compact
  def __call__(self, x):
    gamma = self.param("gamma", nn.initializers.zeros, (), jnp.float32)
    return x + gamma.astype(x.dtype) * cam(x)


class DAHead(nn.Module):
  """mmseg DAHead. `pam_conv_seg`/`cam_conv_seg` are plain `nn.Conv2d` (torch default init),
  only the shared `conv_seg` gets normal(0.01); each branch drops out independently."""
  num_classes: int
  channels: int = 512
  pam_channels: int = 64
  dropout: float = 0.1
  aux_channels: int = 256
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, feats, train: bool = False):
    x = feats["c5"]
    p = ConvBNReLU(self.channels, 3, dtype=self.dtype, name="pam_in_conv")(x, train)
    p = PAM(self.pam_channels, self.dtype, name="pam")(p)
    p = ConvBNReLU(self.channels, 3, dtype=self.dtype, name="pam_out_conv")(p, train)
    c = ConvBNReLU(self.channels, 3, dtype=self.dtype, name="cam_in_conv")(x, train)
    c = CAM(name="cam")(c)
    c = ConvBNReLU(self.channels, 3, dtype=self.dtype, name="cam_out_conv")(c, train)
    pam_out = plain_conv(self.num_classes, self.channels, self.dtype, name="pam_conv_seg")(
        Dropout2d(self.dropout)(p, train))
    cam_out = plain_conv(self.num_classes, self.channels, self.dtype, name="cam_conv_seg")(
        Dropout2d(self.dropout)(c, train))
    out = ClsSeg(self.num_classes, self.dropout, self.dtype, name="cls")(p + c, train)
    return {"out": out, "pam": pam_out, "cam": cam_out, "aux": mmseg_aux(self, feats, train)}
