"""The fields every segmentation head has."""
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from flaseg.models.lowering import DEFAULT, Lowering


class Head(nn.Module):
  """A head maps the backbone's features {'c2'..'c5'} to a dict of logits (B, h, w, K), 'out'
  being the prediction. `build_model` sets `num_classes`, `dtype` (compute) and `lowering`
  (how convolutions and attention are computed); pass the last two on to every layer
  (`self.layer_kw`). `FEATURES` names the backbone features the head reads, so that
  `build_model` can refuse a backbone that does not give them."""
  FEATURES: ClassVar[Sequence[str]] = ("c3", "c4", "c5")
  num_classes: int
  dtype: Any = jnp.float32
  lowering: Lowering = DEFAULT

  def required_features(self) -> tuple:
    """The feature names this head (with its fields) reads."""
    return tuple(self.FEATURES)

  @property
  def layer_kw(self) -> dict:
    """{'dtype', 'lowering'} for the layers the head creates."""
    return {"dtype": self.dtype, "lowering": self.lowering}
