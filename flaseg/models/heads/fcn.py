"""FCN head (mmseg `FCNHead`): the baseline, the skeleton of mmseg's NL, DNL and CC heads, and
the auxiliary head every network here puts on a backbone stage."""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from flaseg.models.heads.head import Head
from flaseg.models.heads.outputs import mmseg_cls_seg
from flaseg.models.layers import ConvBNReLU

Dtype = Any


class FCNHead(Head):
  """mmseg FCNHead: `num_convs` `kernel` x `kernel` ConvBNReLU, optional concat with the input
  followed by a `conv_cat` of the same kernel, then `cls_seg`. Reads `in_key` of the feature
  dict. HRNetV2's mmseg head (fcn_hr*): in_key='concat', kernel=1, num_convs=1, no concat,
  dropout 0.

  Defaults are the FCN baseline (R-50-D8: channels 512, two convs, concat_input=True). With
  `channels=256, num_convs=1, concat_input=False, in_key='c4'` it is the auxiliary head every
  mmseg attention config puts on layer3 (`auxiliary_head`).
  """
  channels: int = 512
  num_convs: int = 2
  concat_input: bool = True
  dropout: float = 0.1  # 0: none (mmseg dropout_ratio=-1)
  in_key: str = "c5"
  kernel: int = 3  # of convs_i and conv_cat (mmseg kernel_size; HRNetV2's fcn_hr*: 1)
  aux_channels: int = 0  # > 0: also the mmseg auxiliary FCNHead on 'c4' as output 'aux'

  def required_features(self) -> tuple:
    return (self.in_key,) + (("c4",) if self.aux_channels else ())

  def block(self, y, train):
    """What mmseg's attention heads (NL, DNL, CC) insert after `convs_0`; none here."""
    return y

  def features(self, x, train):
    y = x
    for i in range(self.num_convs):
      y = ConvBNReLU(self.channels, self.kernel, dtype=self.dtype, lowering=self.lowering,
                     name=f"convs_{i}")(y, train)
      if i == 0:
        y = self.block(y, train)
    if self.concat_input:
      y = ConvBNReLU(self.channels, self.kernel, dtype=self.dtype, lowering=self.lowering,
                     name="conv_cat")(jnp.concatenate([x, y], -1), train)
    return y

  @nn.compact
  def __call__(self, feats, train: bool = False):
    y = self.features(feats[self.in_key], train)
    outs = {"out": mmseg_cls_seg(self)(y, train)}
    if self.aux_channels:
      outs["aux"] = auxiliary_head(self, feats, train)
    return outs


def auxiliary_head(head: nn.Module, feats, train: bool, in_key: str = "c4",
                   name: str = "aux_head", dropout=None):
  """The auxiliary FCN head (mmseg §1.2, PyTorch-Encoding, CCNet): on `in_key` (layer3 by
  default), 3x3 ConvBNReLU -> `head.aux_channels`, no concat, Dropout2d (`dropout`, default
  the head's), 1x1 -> K. Called from a head's compact `__call__`, so the FCNHead `name` is a
  submodule of `head`. Returns its logits."""
  return FCNHead(head.num_classes, channels=head.aux_channels, num_convs=1, concat_input=False,
                 dropout=head.dropout if dropout is None else dropout, in_key=in_key,
                 dtype=head.dtype, lowering=head.lowering, name=name)(feats, train)["out"]
