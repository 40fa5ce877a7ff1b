"""SANet: Squeeze-and-Attention Networks (Zhong et al., CVPR 2020).

No official code is public (attention-heads.md §4); this follows the paper text (seeds/003):

  * SA module (Eq. 3-4, Fig. 2c): a main branch and an attention branch, each
    [3x3 conv + BN + ReLU] x 2 to in/4 channels; the attention branch runs on the input
    max-pooled by 8 ("not fully squeezed"), X_attn = Up(sigmoid(A(MaxPool(X_in)))), and
    X_out = X_attn * X_res + X_attn.
  * SANet (Sec. 3.3, Table 1): four SA heads on the four backbone stages ('c2'..'c5'), each
    followed by "a convolutional layer to adapt outputs of SA heads to the class number" (1x1
    conv with bias), so every head outputs K-channel logits; "to merge the outputs of four SA
    heads, we upsample the outputs of SA head2-4 to [...] match that of SA head1". We read the
    merge as the sum of the four per-head logits at head 1's resolution ('out'); the paper's
    equation for it is not in the text.
  * SE head: "a structure of a SE module" trained with BCE on class presence: GAP(stage 4)
    -> FC -> ReLU -> FC -> K logits ('se', shape (B, K)). "[We] set the channel number of the
    intermediate fully connected layer of SE modules to 4": flaseg reads it as SE's reduction
    ratio (`se_reduction=4`: C / 4 = 512 units on ResNet's 2048-channel stage 4, the default),
    since a 4-unit bottleneck would squeeze 2048 channels to 4 before predicting up to 60
    classes; `se_channels=4` is the literal reading (4 units).
  * Auxiliary FCN head on stage 4 ('c5', "instead of the commonly used third stage"):
    PyTorch-Encoding FCNHead, 3x3 conv -> C/4 + BN + ReLU + Dropout 0.1 + 1x1 ('aux').
  Loss L = L_out + alpha L_se + beta L_aux; alpha, beta are `config.loss.weights`.

Choices where the text is silent: convs without bias before BN; no dropout outside the aux
head; ceil-mode max pooling (padding with -inf) so maps smaller than 8 pool to
one cell; nearest up-sampling of the attention to the main branch's exact shape (any size);
bilinear (align_corners=True, PyTorch-Encoding's convention) for merging the head logits.
Note that with the ReLU ending the attention branch, sigmoid_attention gives X_attn in [0.5, 1).
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaseg.models.heads.fcn import auxiliary_head
from flaseg.models.heads.head import Head
from flaseg.models.layers import (ConvBNReLU, conv, max_pool, resize_bilinear,
                                  resize_nearest)
from flaseg.models.lowering import DEFAULT, Lowering

Dtype = Any


def max_pool_ceil(x, window: int):
  """`MaxPool2d(window, window, ceil_mode=True)`: the last partial window is kept."""
  ph = -x.shape[1] % window
  pw = -x.shape[2] % window
  return max_pool(x, window, window, ((0, ph), (0, pw)))


def squeeze_attention(main, attn):
  """SA module output (SANet Eq. 3): X_out = X_attn * X_res + X_attn."""
  return attn * main + attn


class SAModule(nn.Module):
  """Squeeze-and-attention module; see the module docstring."""
  features: int
  pool: int = 8
  sigmoid_attention: bool = True
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, x, train):
    kw = dict(dtype=self.dtype, lowering=self.lowering)
    main = ConvBNReLU(self.features, 3, **kw, name="main_0")(x, train)
    main = ConvBNReLU(self.features, 3, **kw, name="main_1")(main, train)
    attn = max_pool_ceil(x, self.pool)
    attn = ConvBNReLU(self.features, 3, **kw, name="attn_0")(attn, train)
    attn = ConvBNReLU(self.features, 3, **kw, name="attn_1")(attn, train)
    if self.sigmoid_attention:
      attn = jax.nn.sigmoid(attn)
    attn = resize_nearest(attn, main.shape[1:3])
    return squeeze_attention(main, attn)


class SANetHead(Head):
  """SANet head on {'c2'..'c5'}. Outputs 'out' (at c2's resolution), 'se' (B, K) class
  presence logits and 'aux' (FCN on c5)."""
  FEATURES = ("c2", "c3", "c4", "c5")
  reduction: int = 4
  pool: int = 8
  sigmoid_attention: bool = True
  se_reduction: int = 4
  se_channels: int = 0  # > 0: this many intermediate SE units instead of C / se_reduction
  aux_channels: int = 512

  @nn.compact
  def __call__(self, feats, train: bool = False):
    kw = self.layer_kw
    size = feats["c2"].shape[1:3]
    out = 0.0
    for i, key in enumerate(("c2", "c3", "c4", "c5")):
      x = feats[key]
      y = SAModule(max(x.shape[-1] // self.reduction, 1), self.pool, self.sigmoid_attention,
                   **kw, name=f"sa_{i + 1}")(x, train)
      y = conv(self.num_classes, 1, bias=True, **kw, name=f"cls_{i + 1}")(y)
      out = out + resize_bilinear(y, size, align_corners=True)
    c5 = feats["c5"]
    g = c5.mean(axis=(1, 2))
    se_units = self.se_channels or max(c5.shape[-1] // self.se_reduction, 1)
    g = nn.Dense(se_units, dtype=self.dtype,
                 param_dtype=jnp.float32, name="se_fc1")(g)
    se = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                  name="se_fc2")(nn.relu(g))
    aux = auxiliary_head(self, feats, train, in_key="c5", name="aux", dropout=0.1)
    return {"out": out, "se": se, "aux": aux}
