"""FLANet: Fully Attentional Network (Song et al., AAAI 2022).

Reproduces maggiesong7/FullyAttentional `model.py` layer by layer (attention-heads.md §2),
except for one documented deviation: the official block pairs column (b, w) with the pooled
encoding of sample `(b*W + w) % B` (`.repeat` over the batch), mixing samples when B > 1.
flaseg computes the intended per-sample attention; for B = 1 both agree.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaseg.models.heads.head import Head
from flaseg.models.heads.outputs import OutputBlock
from flaseg.models.layers import ConvBNReLU
from flaseg.models.lowering import DEFAULT, Lowering

Dtype = Any


def fla_attention_maps(x, enc_h, enc_w):
  """The C x C maps of `fla_attention`: a_h (B, W, C, C), one per column, and a_w
  (B, H, C, C), one per row; each row (over d) sums to 1."""
  # Softmax in float32 also under bf16 compute.
  a_h = jax.nn.softmax(jnp.einsum("bhwc,bhd->bwcd", x, enc_h).astype(jnp.float32), -1)
  a_w = jax.nn.softmax(jnp.einsum("bhwc,bwd->bhcd", x, enc_w).astype(jnp.float32), -1)
  return a_h.astype(x.dtype), a_w.astype(x.dtype)


def fla_attention(x, enc_h, enc_w):
  """The Fully Attentional core (FLANet Eq. 2-4, per sample), NHWC.

  x: (B, H, W, C) features, queries and values. enc_h: (B, H, C) keys from the W-pooled map;
  enc_w: (B, W, C) keys from the H-pooled map. For every column w (resp. row h) a C x C map
  A = softmax_d(sum_h x[h, c] enc_h[h, d]) re-mixes channels: out[h, w, c] = sum_d A[c, d] x[h, w, d].
  No scaling. Returns out_h + out_w, (B, H, W, C).
  """
  a_h, a_w = fla_attention_maps(x, enc_h, enc_w)
  out_h = jnp.einsum("bwcd,bhwd->bhwc", a_h, x)
  out_w = jnp.einsum("bhcd,bhwd->bhwc", a_w, x)
  return out_h + out_w


def fully_attentional(module: nn.Module, x):
  """y = x + gamma * FLA(x), gamma a scalar initialised to 0; the keys are `nn.Linear(C, C)`
  (with bias) 'conv1' / 'conv2' of the W-pooled and H-pooled features. Creates its layers in
  `module` (call it from a compact method): the FLA block without its 3x3 conv, as FLANet's
  Table 3 counts it (scripts/cost.py).

  With the 'intermediates' collection mutable (scripts/visualize.py), sows the maps
  'attention_h' (B, W, C, C), 'attention_w' (B, H, C, C) and the FLA output 'response'
  (B, H, W, C); otherwise `sow` does nothing."""
  c = x.shape[-1]
  enc_h = nn.Dense(c, dtype=module.dtype, param_dtype=jnp.float32, name="conv1")(x.mean(axis=2))
  enc_w = nn.Dense(c, dtype=module.dtype, param_dtype=jnp.float32, name="conv2")(x.mean(axis=1))
  gamma = module.param("gamma", nn.initializers.zeros, (), jnp.float32)
  response = fla_attention(x, enc_h, enc_w)
  if module.is_mutable_collection("intermediates"):
    a_h, a_w = fla_attention_maps(x, enc_h, enc_w)
    module.sow("intermediates", "attention_h", a_h)
    module.sow("intermediates", "attention_w", a_w)
    module.sow("intermediates", "response", response)
  return x + gamma.astype(x.dtype) * response


class FullyAttentionalBlock(nn.Module):
  """`FullyAttentionalBlock(plane)`: `fully_attentional`, then 3x3 conv (no bias) + BN + ReLU."""
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, x, train: bool = False):
    y = fully_attentional(self, x)
    return ConvBNReLU(x.shape[-1], 3, dtype=self.dtype, lowering=self.lowering,
                      name="conv")(y, train)


class FLANetHead(Head):
  """FLANet's head around a swappable attention block, `block` (FLANet's ablations swap it):
  2 x ConvBNReLU 3x3 (-> `channels`) on `in_key` (layer4) -> block -> concat with the input ->
  FLANetOutput (nearest x2, 3x3 conv, BN, ReLU, Dropout2d 0.1, 1x1) as 'out'; aux
  FLANetOutput(`aux_channels`) on each of `aux_keys`, 'aux1', 'aux2', ... (layer2, layer3).
  Outputs are at 2x the feature resolution.

  On HRNetV2 (reconstruction: FLANet's code is ResNet only): `in_key='concat'` (the
  `resize_concat` neck, 1/4), `upsample=False` (already at 1/4), one aux head on the concat
  as HRNet-OCR's (`aux_keys=('concat',)`, `aux_channels=720`, `aux_kernel=1`)."""
  channels: int = 512
  aux_channels: int = 64
  dropout: float = 0.1
  in_key: str = "c5"
  aux_keys: Sequence[str] = ("c3", "c4")
  aux_kernel: int = 3
  upsample: bool = True

  def required_features(self) -> tuple:
    return (self.in_key, *self.aux_keys)

  def block(self, x, train):
    raise NotImplementedError(f"{type(self).__name__} must define its attention block")

  def output(self, mid_channels, name, kernel=3):
    return OutputBlock(self.num_classes, mid_channels, kernel, dropout=self.dropout,
                       upsample=self.upsample, dtype=self.dtype, lowering=self.lowering,
                       name=name)

  @nn.compact
  def __call__(self, feats, train: bool = False):
    x = feats[self.in_key]
    y = ConvBNReLU(self.channels, 3, **self.layer_kw, name="conv_0")(x, train)
    y = ConvBNReLU(self.channels, 3, **self.layer_kw, name="conv_1")(y, train)
    y = self.block(y, train)
    outs = {"out": self.output(self.channels, "conv_out1")(jnp.concatenate([x, y], -1), train)}
    for i, key in enumerate(self.aux_keys):
      outs[f"aux{i + 1}"] = self.output(self.aux_channels, f"conv_out{i + 2}", self.aux_kernel)(
          feats[key], train)
    return outs


class FLAHead(FLANetHead):
  """FLANet head on {'c3', 'c4', 'c5'} (layer2, layer3, layer4) with the FLA block."""

  def block(self, x, train):
    return FullyAttentionalBlock(self.dtype, self.lowering, name="fully")(x, train)
