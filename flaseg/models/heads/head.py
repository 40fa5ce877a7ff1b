"""The fields every segmentation head has."""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from flaseg.models.lowering import DEFAULT, Lowering


class Head(nn.Module):
  """A head maps the backbone's features {'c2'..'c5'} to a dict of logits (B, h, w, K), 'out'
  being the prediction. `build_model` sets `num_classes`, `dtype` (compute) and `lowering`
  (how convolutions and attention are computed); pass the last two on to every layer
  (`self.layer_kw`)."""
  num_classes: int
  dtype: Any = jnp.float32
  lowering: Lowering = DEFAULT

  @property
  def layer_kw(self) -> dict:
    """{'dtype', 'lowering'} for the layers the head creates."""
    return {"dtype": self.dtype, "lowering": self.lowering}
