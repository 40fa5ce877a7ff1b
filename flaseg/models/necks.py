"""Necks: what runs between a backbone and a head (`config.model.neck`), adding features.

  resize_concat  HRNetV2's representation (Wang et al., TPAMI 2020; mmseg `FCNHead(
                 input_transform='resize_concat')`): the features `inputs` resized bilinearly
                 to the first one's size and concatenated, as feature 'concat'.
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from flaseg.models.layers import resize_bilinear


class ResizeConcat(nn.Module):
  """Adds 'concat': cat[inputs[0], resize(inputs[1]), ...] at inputs[0]'s size. No weights."""
  inputs: Sequence[str] = ("c2", "c3", "c4", "c5")
  align_corners: bool = False  # mmseg's resize_concat

  def feature_spec(self, backbone_spec: dict) -> dict:
    """The feature spec after the neck: the backbone's plus 'concat' (stride, channels)."""
    first = backbone_spec[self.inputs[0]][0]
    return {**backbone_spec,
            "concat": (first, sum(backbone_spec[k][1] for k in self.inputs))}

  def __call__(self, feats: dict) -> dict:
    size = feats[self.inputs[0]].shape[1:3]
    parts = [resize_bilinear(feats[k], size, self.align_corners) for k in self.inputs]
    return {**feats, "concat": jnp.concatenate(parts, axis=-1)}


NECKS = {"resize_concat": ResizeConcat}
