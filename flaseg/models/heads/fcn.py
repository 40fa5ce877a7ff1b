"""FCN head (mmseg `FCNHead`) and the output blocks several papers share."""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from flaseg.models.layers import ConvBNReLU, Dropout2d, conv, resize_nearest

Dtype = Any


class ClsSeg(nn.Module):
  """mmseg `cls_seg`: Dropout2d then 1x1 conv with bias to the classes (init N(0, 0.01))."""
  num_classes: int
  dropout: float = 0.1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    x = Dropout2d(self.dropout)(x, train)
    return conv(self.num_classes, 1, bias=True, dtype=self.dtype, name="conv_seg",
                kernel_init=nn.initializers.normal(0.01))(x)


class FCNHead(nn.Module):
  """mmseg FCNHead: `num_convs` 3x3 ConvBNReLU, optional concat with the input followed by a
  3x3 `conv_cat`, then `cls_seg`. Reads `in_key` of the feature dict.

  Defaults are the FCN baseline (R-50-D8: channels 512, two convs, concat_input=True). With
  `channels=256, num_convs=1, concat_input=False, in_key='c4'` it is the auxiliary head every
  mmseg attention config puts on layer3.
  """
  num_classes: int
  channels: int = 512
  num_convs: int = 2
  concat_input: bool = True
  dropout: float = 0.1
  in_key: str = "c5"
  aux_channels: int = 0  # > 0: also the mmseg auxiliary FCNHead on 'c4' as output 'aux'
  dtype: Dtype = jnp.float32

  def block(self, y, train):
    """What mmseg's attention heads (NL, DNL, CC) insert after `convs_0`; none here."""
    return y

  def features(self, x, train):
    y = x
    for i in range(self.num_convs):
      y = ConvBNReLU(self.channels, 3, dtype=self.dtype, name=f"convs_{i}")(y, train)
      if i == 0:
        y = self.block(y, train)
    if self.concat_input:
      y = ConvBNReLU(self.channels, 3, dtype=self.dtype, name="conv_cat")(
          jnp.concatenate([x, y], -1), train)
    return y

  @nn.compact
  def __call__(self, feats, train: bool = False):
    y = self.features(feats[self.in_key], train)
    outs = {"out": ClsSeg(self.num_classes, self.dropout, self.dtype, name="cls")(y, train)}
    if self.aux_channels:
      outs["aux"] = mmseg_aux(self, feats, train)
    return outs


def mmseg_aux(head: nn.Module, feats, train: bool):
  """The auxiliary FCNHead of every mmseg attention config (§1.2): on 'c4' (layer3), 3x3
  ConvBNReLU -> `aux_channels`, no concat, Dropout2d, 1x1 -> K; loss weight 0.4. Call from a
  head's compact `__call__`; the submodule is named 'aux_head'."""
  return FCNHead(head.num_classes, head.aux_channels, num_convs=1, concat_input=False,
                 dropout=head.dropout, in_key="c4", dtype=head.dtype,
                 name="aux_head")(feats, train)["out"]


class UpsampleOutput(nn.Module):
  """FLANet's `FLANetOutput`: nearest x2 -> 3x3 conv (no bias) -> BN -> ReLU -> Dropout2d ->
  1x1 conv with bias. `upsample=False` gives DenoisedNL's output block."""
  mid_channels: int
  num_classes: int
  dropout: float = 0.1
  upsample: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    if self.upsample:
      x = resize_nearest(x, (2 * x.shape[1], 2 * x.shape[2]))
    x = ConvBNReLU(self.mid_channels, 3, dtype=self.dtype, name="conv")(x, train)
    x = Dropout2d(self.dropout)(x, train)
    return conv(self.num_classes, 1, bias=True, dtype=self.dtype, name="cls")(x)
