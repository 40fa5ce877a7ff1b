"""The classifier block at the end of every head.

One block, configured per reference (the module names are the reference's, so converted
checkpoints map by name):

  mmseg `cls_seg`             OutputBlock(K, dropout=0.1, classifier="conv_seg",
                              classifier_init=normal(0.01)): Dropout2d -> 1x1 (bias)
  FLANet `FLANetOutput`       OutputBlock(K, mid, upsample=True): nearest x2 -> 3x3 ConvBNReLU
                              -> Dropout2d -> 1x1 (bias)
  DenoisedNL's output module  OutputBlock(K, mid, dropout=0.05): as FLANet's, no upsampling
  AttaNet `AttaNetOutput`     OutputBlock(K, mid, bias=False, classifier="conv_out")
"""
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from flaseg.models.layers import ConvBNReLU, Dropout2d, conv, conv_init, resize_nearest
from flaseg.models.lowering import DEFAULT, Lowering

Dtype = Any


class OutputBlock(nn.Module):
  """[nearest x2] -> [ConvBNReLU `kernel` x `kernel` -> `mid_channels` (0: none)] ->
  Dropout2d(`dropout`) -> 1x1 conv to `num_classes` named `classifier`."""
  num_classes: int
  mid_channels: int = 0
  kernel: int = 3
  dropout: float = 0.1
  upsample: bool = False
  bias: bool = True
  classifier: str = "cls"
  classifier_init: Callable = conv_init
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, x, train: bool):
    if self.upsample:
      x = resize_nearest(x, (2 * x.shape[1], 2 * x.shape[2]))
    if self.mid_channels:
      x = ConvBNReLU(self.mid_channels, self.kernel, dtype=self.dtype, lowering=self.lowering,
                     name="conv")(x, train)
    x = Dropout2d(self.dropout)(x, train)
    return conv(self.num_classes, 1, bias=self.bias, dtype=self.dtype, name=self.classifier,
                kernel_init=self.classifier_init, lowering=self.lowering)(x)


def mmseg_cls_seg(head: nn.Module, name: str = "cls") -> OutputBlock:
  """mmseg's `cls_seg` for `head` (its num_classes, dropout, dtype, lowering): Dropout2d then
  a 1x1 conv 'conv_seg' with bias, init N(0, 0.01)."""
  return OutputBlock(head.num_classes, dropout=head.dropout, classifier="conv_seg",
                     classifier_init=nn.initializers.normal(0.01), dtype=head.dtype,
                     lowering=head.lowering, name=name)
