"""AttaNet: Strip Attention (SAM) and Attention Fusion (AFM) (Song, Mei, Huang, AAAI 2021).

Reproduces songqi-github/AttaNet `AttaNet.py` (`AttaNetHead` + the three `AttaNetOutput`s;
attention-heads.md §3) on {'c3', 'c4', 'c5'} of a ResNet-18 at output stride 32
(feat8 128 ch, feat16 256 ch, feat32 512 ch):

  feat16 = conv_head16(feat16)                                 # 3x3 -> 128
  a      = AFM(feat16, feat32)                                 # (B, 1, 1, 128) channel gate
  feat32_up = up_nearest(conv_head32(feat32) * a)              # 3x3 -> 128, to 1/16
  fused  = conv_head1(feat16 * (1 - a) + feat32_up)            # `fuse`; 3x3 "smoothness"
  out8   = conv_head2(up_nearest(SAM(fused)))                  # SAM at 1/16, 3x3 at 1/8
  'out' = conv_out(out8), 'aux1' = conv_out1(feat32_up), 'aux2' = conv_out2(feat8)

The output modules are named `conv_out*` (regex 'head/conv_out' for the 10x LR of train.py).
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaseg.models.heads.head import Head
from flaseg.models.heads.outputs import OutputBlock
from flaseg.models.layers import ConvBNReLU, batch_norm, conv, resize_nearest
from flaseg.models.lowering import DEFAULT, Lowering

Dtype = Any


def strip_attention(q, k, v, horizontal: bool = False):
  """SAM core (no residual), NHWC. Vertical (the paper's default): q and v are mean-pooled
  over H into W column strips; each pixel attends over the strips,
  A[b, s, h, w] = softmax_s(sum_c q̄[b, s, c] k[b, h, w, c]) (sums to 1 over s), and
  out[b, h, w, c] = sum_s v̄[b, s, c] A[b, s, h, w]. `horizontal` pools over W (H row strips).
  No scaling."""
  vs = v.mean(axis=2 if horizontal else 1)
  attn = strip_attention_weights(q, k, horizontal)
  return jnp.einsum("bsc,bshw->bhwc", vs, attn.astype(v.dtype))


def strip_attention_weights(q, k, horizontal: bool = False):
  """A of `strip_attention`: (B, S, H, W) float32, softmax over the S strips (S = W, or H if
  `horizontal`) for every pixel."""
  qs = q.mean(axis=2 if horizontal else 1)
  return jax.nn.softmax(jnp.einsum("bsc,bhwc->bshw", qs, k).astype(jnp.float32), axis=1)


def fuse(feat16, feat32, atten):
  """AFM fusion: feat16 * (1 - a) + up(feat32 * a), a the (B, 1, 1, C) channel gate of
  `AttentionFusion` and feat32 the 1/32 map after `conv_head32`, nearest-upsampled to 1/16.
  Returns (fused, up(feat32 * a)); the second feeds the 'aux1' output."""
  feat32_up = resize_nearest(feat32 * atten, feat16.shape[1:3])
  return feat16 * (1 - atten) + feat32_up, feat32_up


class StripAttention(nn.Module):
  """`StripAttentionModule`: q, k = ConvBNReLU 1x1 -> `qk_channels`, v = ConvBNReLU 1x1 -> C;
  out = x + SAM(q, k, v) (plain residual, no gamma). With the 'intermediates' collection
  mutable (scripts/visualize.py), sows the strip weights 'attention' (B, S, H, W)."""
  qk_channels: int = 64
  horizontal: bool = False
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, x, train):
    kw = dict(dtype=self.dtype, lowering=self.lowering)
    q = ConvBNReLU(self.qk_channels, 1, **kw, name="conv1")(x, train)
    k = ConvBNReLU(self.qk_channels, 1, **kw, name="conv2")(x, train)
    v = ConvBNReLU(x.shape[-1], 1, **kw, name="conv3")(x, train)
    if self.is_mutable_collection("intermediates"):
      self.sow("intermediates", "attention", strip_attention_weights(q, k, self.horizontal))
    return x + strip_attention(q, k, v, self.horizontal)


class AttentionFusion(nn.Module):
  """`AttentionFusionModule`: a = sigmoid(BN(conv1x1(GAP(ConvBNReLU1x1(cat[feat16,
  up_nearest(feat32)]))))), one weight per channel and image, (B, 1, 1, C). AttaNet_light.py's
  module is the same with a 3x3 first conv (`kernel=3`)."""
  features: int = 128
  kernel: int = 1
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, feat16, feat32, train):
    feat32_up = resize_nearest(feat32, feat16.shape[1:3])
    f = ConvBNReLU(self.features, self.kernel, dtype=self.dtype, lowering=self.lowering,
                   name="conv")(jnp.concatenate([feat16, feat32_up], -1), train)
    a = f.mean(axis=(1, 2), keepdims=True)
    a = conv(self.features, 1, dtype=self.dtype, lowering=self.lowering, name="conv_atten")(a)
    a = batch_norm(train, self.dtype, name="bn_atten")(a)
    return jax.nn.sigmoid(a)


class AttaNetHead(Head):
  """AttaNet head; see the module docstring. Outputs 'out' (1/8), 'aux1' (1/16), 'aux2' (1/8)."""
  channels: int = 128
  qk_channels: int = 64
  out_channels: int = 128
  aux_channels: int = 64
  dropout: float = 0.1
  horizontal: bool = False

  def output(self, mid_channels, name):
    """`AttaNetOutput`: ConvBNReLU 3x3 -> Dropout2d(0.1) -> 1x1 conv without bias."""
    return OutputBlock(self.num_classes, mid_channels, dropout=self.dropout, bias=False,
                       classifier="conv_out", dtype=self.dtype, lowering=self.lowering,
                       name=name)

  @nn.compact
  def __call__(self, feats, train: bool = False):
    feat8, feat16, feat32 = feats["c3"], feats["c4"], feats["c5"]
    ch = self.channels
    kw = self.layer_kw
    feat16 = ConvBNReLU(ch, 3, **kw, name="conv_head16")(feat16, train)
    atten = AttentionFusion(ch, **kw, name="afm")(feat16, feat32, train)
    feat32 = ConvBNReLU(ch, 3, **kw, name="conv_head32")(feat32, train)
    fused, feat32_up = fuse(feat16, feat32, atten)
    fused = ConvBNReLU(ch, 3, **kw, name="conv_head1")(fused, train)
    fused = StripAttention(self.qk_channels, self.horizontal, **kw, name="sam")(fused, train)
    out8 = ConvBNReLU(ch, 3, **kw, name="conv_head2")(
        resize_nearest(fused, feat8.shape[1:3]), train)
    return {"out": self.output(self.out_channels, "conv_out")(out8, train),
            "aux1": self.output(self.aux_channels, "conv_out1")(feat32_up, train),
            "aux2": self.output(self.aux_channels, "conv_out2")(feat8, train)}
