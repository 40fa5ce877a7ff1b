"""Backbone + head -> logits at the input resolution."""
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from flaseg.models.layers import resize_bilinear

# ImageNet statistics on 0..255 RGB (torchvision, mmseg).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class Segmenter(nn.Module):
  """images (B, H, W, 3) RGB in 0..255 (uint8 or float) -> dict of logits.

  Normalises with `mean`/`std`, runs `backbone` (-> a dict of features, e.g. ResNet's
  {'c2'..'c5'}), the optional `neck` (adds features) and `head` (-> dict of
  feature-resolution outputs), then resizes every dense output (B, h, w, K) bilinearly to
  (H, W) with the given `align_corners` convention; per-image outputs (B, K), such as SANet's
  class-presence logits, pass through. Logits come back in float32.
  """
  backbone: nn.Module
  head: nn.Module
  neck: Optional[nn.Module] = None
  align_corners: bool = False
  mean: Sequence[float] = IMAGENET_MEAN
  std: Sequence[float] = IMAGENET_STD
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, train: bool = False):
    x = (images.astype(jnp.float32) - jnp.asarray(self.mean)) / jnp.asarray(self.std)
    feats = self.backbone(x.astype(self.dtype), train)
    if self.neck is not None:
      feats = self.neck(feats)
    outs = self.head(feats, train)
    size = images.shape[1:3]
    return {k: (resize_bilinear(v.astype(jnp.float32), size, self.align_corners)
                if v.ndim == 4 else v.astype(jnp.float32)) for k, v in outs.items()}
