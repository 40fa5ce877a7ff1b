"""AttaNet's light backbone (Song, Mei, Huang, AAAI 2021), NHWC, PyTorch-exact.

Reproduces songqi-github/AttaNet `light.py` (`Branch`, inside `Backbone`): eight ConvBNReLU
layers, no residuals, no ImageNet pretraining (AttaNet issue #13):

  S1_1 7x7/2 3->32, S1_2 3x3/2 32->64                         (1/4)
  S2_1 3x3/2 64->64, S2_2, S2_3 3x3 64->64                    (1/8)
  S3_1 3x3/2 64->128, S3_2, S3_3 3x3 128->128                 (1/16)

Returns 'c3' = S2_3 (1/8, 64; light.py's `feat8`), 'c4' = S3_3 (1/16, 128; `feat16`) and
's3_2' = S3_2 (1/16, 128; light.py's third output `feat`, which AttaNet_light.py's second
auxiliary output reads). `width` scales every channel (32 = the real network) for tiny test
models. Init: flaseg's `conv_init` (kaiming_normal a=1, what light.py's `init_weight` means;
deviation: that loop only visits `Backbone`'s direct children, none a Conv2d, so the
original actually keeps torch's default conv init). Heads: `heads/attanet_light.py`.
"""
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from flaseg.errors import ConfigError
from flaseg.models.layers import ConvBNReLU
from flaseg.models.lowering import DEFAULT, Lowering

Dtype = Any

# (name, width multiple of `width`, kernel, stride), in order.
LAYERS = (("S1_1", 1, 7, 2), ("S1_2", 2, 3, 2),
          ("S2_1", 2, 3, 2), ("S2_2", 2, 3, 1), ("S2_3", 2, 3, 1),
          ("S3_1", 4, 3, 2), ("S3_2", 4, 3, 1), ("S3_3", 4, 3, 1))
# feature name -> (layer whose output it is, stride)
FEATURES = {"c3": ("S2_3", 8), "c4": ("S3_3", 16), "s3_2": ("S3_2", 16)}


class AttaNetLightBackbone(nn.Module):
  """light.py `Branch` returning {'c3', 'c4', 's3_2'}; see the module docstring."""
  SMOKE_FIELDS: ClassVar[dict] = {"width": 8}  # config_lib.apply_smoke
  width: int = 32
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  def check(self):
    if self.width < 1:
      raise ConfigError(f"model.backbone.width={self.width}: choose a width >= 1 "
                        "(32 = the real network)")

  def feature_spec(self) -> dict:
    """{name: (stride, channels)} of the features `__call__` returns (no input needed)."""
    self.check()
    mult = {name: m for name, m, _, _ in LAYERS}
    return {k: (stride, self.width * mult[layer]) for k, (layer, stride) in FEATURES.items()}

  @nn.compact
  def __call__(self, x, train: bool = False):
    self.check()
    x = x.astype(self.dtype)
    outputs = {}
    for name, mult, kernel, stride in LAYERS:
      x = ConvBNReLU(self.width * mult, kernel, stride, dtype=self.dtype,
                     lowering=self.lowering, name=name)(x, train)
      outputs[name] = x
    return {k: outputs[layer] for k, (layer, _) in FEATURES.items()}

  @staticmethod
  def torch_name(path: tuple, source: str, backbone_cfg) -> str:
    """light.py `Branch` prefix of flaseg module `path`: ('S2_1', 'conv') -> 'S2_1.conv'.
    In the whole AttaNet_light model the branch is 'head.backbone.branch.' (convert.py's
    source 'attanet_light' adds it)."""
    del source, backbone_cfg
    if len(path) == 2 and path[0] in {n for n, *_ in LAYERS} and path[1] in ("conv", "bn"):
      return ".".join(path)
    raise KeyError(path)
