"""EMANet: Expectation-Maximization Attention (Li et al., ICCV 2019), mmseg `ema_head.py`,
attention-heads.md §7.4.

State that is not trained lives in the 'ema' collection (updated only with train=True; the
trainer keeps every non-'params' collection): the 64 `bases` (C, K), and the frozen random
projection `ema_mid_conv` (mmseg sets requires_grad=False, so torch SGD neither updates nor
weight-decays it; kept out of 'params' so that optax weight decay cannot shrink it either).
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaseg.models.heads.fcn import auxiliary_head
from flaseg.models.heads.head import Head
from flaseg.models.heads.outputs import mmseg_cls_seg
from flaseg.models.layers import ConvBNReLU

Dtype = Any


def l2_normalize(x, axis):
  """torch `F.normalize(x, p=2, dim=axis)`: x / max(||x||_2, 1e-12)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def em_iterations(feats, bases, num_stages: int):
  """mmseg `EMAModule` E/M steps. feats (B, N, C), bases (B, C, K) ->
  (bases (B, C, K) L2-normalised over C, responsibilities z (B, N, K)).

  E: z = softmax_k(feats . bases); M: bases = l2norm_C(feats^T (z / sum_N z)) (L1 over N).
  Run under stop_gradient by the caller (torch.no_grad in mmseg).
  """
  z = None
  for _ in range(num_stages):
    z = jax.nn.softmax(jnp.einsum("bnc,bck->bnk", feats, bases), axis=-1)
    z_normed = z / jnp.maximum(z.sum(axis=1, keepdims=True), 1e-12)
    bases = l2_normalize(jnp.einsum("bnc,bnk->bck", feats, z_normed), axis=1)
  return bases, z


def ema_update(bases, batch_bases, momentum: float):
  """Moving average of the bases (C, K): (1 - m) * bases + m * l2norm_C(mean_B batch_bases).
  The blend is not re-normalised (mmseg). The batch mean is over the global batch under jit,
  which is mmseg's `reduce_mean` over GPUs."""
  mean = l2_normalize(batch_bases.mean(axis=0), axis=0)
  return (1.0 - momentum) * bases + momentum * mean


def init_bases(key, channels: int, num_bases: int):
  """N(0, sqrt(2 / K)) then L2-normalised over C, as mmseg's `bases` buffer (without its
  leading 1: (C, K))."""
  bases = jax.random.normal(key, (channels, num_bases), jnp.float32) * jnp.sqrt(2.0 / num_bases)
  return l2_normalize(bases, axis=0)


class FrozenConv1x1(nn.Module):
  """mmseg `ema_mid_conv`: 1x1 ConvModule with bias, no norm/act, frozen at its init (mmcv
  kaiming_normal fan_out, bias 0). Kernel (1, 1, C_in, C_out) and bias in the 'ema' collection."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
    shape = (1, 1, x.shape[-1], self.features)
    kernel = self.variable("ema", "kernel", lambda: init(self.make_rng("params"), shape))
    bias = self.variable("ema", "bias", lambda: jnp.zeros((self.features,), jnp.float32))
    y = jnp.einsum("bhwc,cd->bhwd", x, kernel.value[0, 0].astype(self.dtype))
    return jax.lax.stop_gradient(y + bias.value.astype(self.dtype))


class EMAModule(nn.Module):
  """EM attention: reconstruct x (B, H, W, C) from K bases refined by `num_stages` EM steps
  (no gradient flows through it). With train=True the bases are updated by `ema_update`."""
  num_bases: int = 64
  num_stages: int = 3
  momentum: float = 0.1

  @nn.compact
  def __call__(self, x, train: bool = False):
    b, c = x.shape[0], x.shape[-1]
    bases = self.variable("ema", "bases",
                          lambda: init_bases(self.make_rng("params"), c, self.num_bases))
    feats = jax.lax.stop_gradient(x.reshape(b, -1, c).astype(jnp.float32))
    mu = jnp.broadcast_to(bases.value, (b, c, self.num_bases))
    mu, z = jax.lax.stop_gradient(em_iterations(feats, mu, self.num_stages))
    recon = jnp.einsum("bck,bnk->bnc", mu, z).reshape(x.shape).astype(x.dtype)
    if train and not self.is_initializing():
      bases.value = ema_update(bases.value, mu, self.momentum)
    return recon


def ema_block(module: nn.Module, identity, num_bases: int, num_stages: int, momentum: float,
              train: bool):
  """mmseg EMAHead between `ema_in_conv` and the bottleneck: frozen 1x1 `ema_mid_conv` ->
  EM reconstruction (`ema_module`) -> ReLU -> `ema_out_conv` (1x1 + BN) -> ReLU(identity + .).
  Creates its layers in `module` (call it from a compact method; scripts/cost.py counts it)."""
  c = identity.shape[-1]
  kw = dict(dtype=module.dtype, lowering=module.lowering)
  y = FrozenConv1x1(c, module.dtype, name="ema_mid_conv")(identity)
  y = EMAModule(num_bases, num_stages, momentum, name="ema_module")(y, train)
  y = ConvBNReLU(c, 1, relu=False, **kw, name="ema_out_conv")(nn.relu(y), train)
  return nn.relu(identity + y)


class EMANetHead(Head):
  """mmseg EMAHead on 'c5': ema_in_conv (3x3 -> ema_channels) = identity -> `ema_block` ->
  bottleneck (3x3 -> channels) -> conv_cat (3x3 on cat[x, out]) -> Dropout2d -> 1x1.
  Returns {'out', 'aux'}."""
  FEATURES = ("c4", "c5")
  channels: int = 256
  ema_channels: int = 512
  num_bases: int = 64
  num_stages: int = 3
  momentum: float = 0.1
  concat_input: bool = True
  dropout: float = 0.1
  aux_channels: int = 256

  @nn.compact
  def __call__(self, feats, train: bool = False):
    x = feats["c5"]
    kw = self.layer_kw
    identity = ConvBNReLU(self.ema_channels, 3, **kw, name="ema_in_conv")(x, train)
    y = ema_block(self, identity, self.num_bases, self.num_stages, self.momentum, train)
    y = ConvBNReLU(self.channels, 3, **kw, name="bottleneck")(y, train)
    if self.concat_input:
      y = ConvBNReLU(self.channels, 3, **kw, name="conv_cat")(jnp.concatenate([x, y], -1),
                                                               train)
    return {"out": mmseg_cls_seg(self)(y, train), "aux": auxiliary_head(self, feats, train)}
