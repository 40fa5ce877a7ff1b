"""DANet: Dual Attention Network (Fu et al., CVPR 2019), mmseg `da_head.py`,
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

from flaseg.models.attention import spatial_attention
from flaseg.models.heads.fcn import auxiliary_head
from flaseg.models.heads.head import Head
from flaseg.models.heads.outputs import mmseg_cls_seg
from flaseg.models.layers import ConvBNReLU, Dropout2d, plain_conv
from flaseg.models.lowering import DEFAULT, Lowering

Dtype = Any


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
  """Position attention (mmseg `SelfAttentionBlock` with matmul_norm=False):
  out = x + gamma * softmax_m(q_n . k_m) @ v, no scaling; q, k: plain 1x1 conv C ->
  `channels` (64), v: C -> C, all with bias; gamma a scalar initialised to 0 (mmcv
  `Scale(0)`)."""
  channels: int = 64
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    proj = lambda n, name: plain_conv(n, c, self.dtype, name, self.lowering)(x)  # noqa: E731
    q, k, v = proj(self.channels, "query_project"), proj(self.channels, "key_project"), proj(
        c, "value_project")
    gamma = self.param("gamma", nn.initializers.zeros, (), jnp.float32)
    return x + gamma.astype(x.dtype) * spatial_attention(q, k, v, 1.0, self.lowering)


class CAM(nn.Module):
  """out = x + gamma * cam(x), gamma a scalar initialised to 0; no convs."""

  @nn.compact
  def __call__(self, x):
    gamma = self.param("gamma", nn.initializers.zeros, (), jnp.float32)
    return x + gamma.astype(x.dtype) * cam(x)


class DANetHead(Head):
  """mmseg DAHead. `pam_conv_seg`/`cam_conv_seg` are plain `nn.Conv2d` (torch default init),
  only the shared `conv_seg` gets normal(0.01); each branch drops out independently."""
  FEATURES = ("c4", "c5")
  channels: int = 512
  pam_channels: int = 64
  dropout: float = 0.1
  aux_channels: int = 256

  def branch(self, x, attention, name, train):
    """3x3 ConvBNReLU `{name}_in_conv` -> attention -> 3x3 ConvBNReLU `{name}_out_conv`."""
    kw = self.layer_kw
    x = ConvBNReLU(self.channels, 3, **kw, name=f"{name}_in_conv")(x, train)
    return ConvBNReLU(self.channels, 3, **kw, name=f"{name}_out_conv")(attention(x), train)

  def branch_logits(self, x, name, train):
    """mmseg's `pam_cls_seg` / `cam_cls_seg`: Dropout2d, then a plain 1x1 `nn.Conv2d`."""
    return plain_conv(self.num_classes, self.channels, self.dtype, name, self.lowering)(
        Dropout2d(self.dropout)(x, train))

  @nn.compact
  def __call__(self, feats, train: bool = False):
    x = feats["c5"]
    p = self.branch(x, PAM(self.pam_channels, self.dtype, self.lowering, name="pam"), "pam",
                    train)
    c = self.branch(x, CAM(name="cam"), "cam", train)
    return {"out": mmseg_cls_seg(self)(p + c, train),
            "pam": self.branch_logits(p, "pam_conv_seg", train),
            "cam": self.branch_logits(c, "cam_conv_seg", train),
            "aux": auxiliary_head(self, feats, train)}
