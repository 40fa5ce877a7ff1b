"""DF1 / DF2 backbones ("Partial Order Pruning", Li et al., CVPR 2019), NHWC, PyTorch-exact.

Reproduces `dfnetv1` / `dfnetv2` of lxtGH/SFSegNets `network/dfnet.py` (the PyTorch definition
later work uses; the official release is Caffe only), at its default output stride 32:

  stage1    3x3/2 conv 3->32 + BN + ReLU, 3x3/2 conv 32->64 + BN + ReLU          (1/4)
  DF1       stage2 3x64 /2, stage3 3x128 /2, stage4 3x256 /2, stage5 1x512
  DF2       stage2_1 2x64 /2, stage2_2 1x128, stage3_1 10x128 /2, stage3_2 1x256,
            stage4_1 4x256 /2, stage4_2 2x512

"NxC /2" is N BasicBlocks (ResNet's, `resnet.BasicBlock`) of width C, the stride on the first
block; a stage's first block has a 1x1 conv + BN shortcut when it strides or changes width.

Returns {'c3', 'c4', 'c5'} at 1/8, 1/16, 1/32 so that AttaNet's head (and any head reading
c3..c5) attaches:
  DF2  c3 = stage2_2 (1/8, 128), c4 = stage3_2 (1/16, 256), c5 = stage4_2 (1/32, 512):
       dfnet.py's three outputs, in the places of ResNet-18's layer2..layer4.
  DF1  c3 = stage2 (1/8, 64), c4 = stage3 (1/16, 128), c5 = stage5 (1/32, 512). dfnet.py
       itself returns stage3, stage4 (1/32, 256), stage5 (its stride comments are wrong),
       i.e. no 1/8 map; c3 is the stage2 output here.
  The attachment to AttaNet is inferred (AttaNet's paper does not state it); see
  /work/shared/reference/backbones.md "DF1 / DF2".
Not reproduced: dfnet.py's `stride=64` option (stage5 / stage4_2 strided) and its unused
`avgpool`. `width` scales every channel (64 = the real network) for tiny test models.
"""
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from flaseg.errors import ConfigError
from flaseg.models.layers import ConvBNReLU
from flaseg.models.lowering import DEFAULT, Lowering
from flaseg.models.resnet import BasicBlock

Dtype = Any

# variant -> ((stage name, width multiple of `width`, blocks, stride of the first block), ...)
STAGES = {
    "df1": (("stage2", 1, 3, 2), ("stage3", 2, 3, 2), ("stage4", 4, 3, 2), ("stage5", 8, 1, 1)),
    "df2": (("stage2_1", 1, 2, 2), ("stage2_2", 2, 1, 1), ("stage3_1", 2, 10, 2),
            ("stage3_2", 4, 1, 1), ("stage4_1", 4, 4, 2), ("stage4_2", 8, 2, 1)),
}
# variant -> {feature name: the stage whose output it is}
FEATURES = {
    "df1": {"c3": "stage2", "c4": "stage3", "c5": "stage5"},
    "df2": {"c3": "stage2_2", "c4": "stage3_2", "c5": "stage4_2"},
}
# flaseg stem module -> dfnet.py `stage1` Sequential index (2 and 5 are the ReLUs).
_STAGE1 = {("stage1_0", "conv"): "stage1.0", ("stage1_0", "bn"): "stage1.1",
           ("stage1_1", "conv"): "stage1.3", ("stage1_1", "bn"): "stage1.4"}


class DFNet(nn.Module):
  """DF1 (`variant='df1'`) or DF2 (`'df2'`) returning {'c3', 'c4', 'c5'}; see the module
  docstring."""
  SMOKE_FIELDS: ClassVar[dict] = {"width": 8}  # config_lib.apply_smoke
  variant: str = "df2"
  width: int = 64
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  def check(self):
    """One-line errors for fields the network cannot have."""
    if self.variant not in STAGES:
      raise ConfigError(f"model.backbone.variant={self.variant!r}: choose one of "
                        f"{sorted(STAGES)}")
    if self.width < 2 or self.width % 2:
      raise ConfigError(f"model.backbone.width={self.width}: choose an even width >= 2 "
                        "(64 = the real network)")

  def feature_spec(self) -> dict:
    """{name: (stride, channels)} of the features `__call__` returns (no input needed)."""
    self.check()
    out, stride = {}, 4
    taps = {stage: name for name, stage in FEATURES[self.variant].items()}
    for stage, mult, _, s in STAGES[self.variant]:
      stride *= s
      if stage in taps:
        out[taps[stage]] = (stride, self.width * mult)
    return out

  @nn.compact
  def __call__(self, x, train: bool = False):
    self.check()
    kw = dict(dtype=self.dtype, lowering=self.lowering)
    x = x.astype(self.dtype)
    x = ConvBNReLU(self.width // 2, 3, 2, **kw, name="stage1_0")(x, train)
    x = ConvBNReLU(self.width, 3, 2, **kw, name="stage1_1")(x, train)
    taps = {stage: name for name, stage in FEATURES[self.variant].items()}
    feats = {}
    for stage, mult, blocks, stride in STAGES[self.variant]:
      features = self.width * mult
      for b in range(blocks):
        project = b == 0 and (stride != 1 or x.shape[-1] != features)
        x = BasicBlock(features, stride if b == 0 else 1, 1, project, False, **kw,
                       name=f"{stage}_{b}")(x, train)
      if stage in taps:
        feats[taps[stage]] = x
    return feats

  @staticmethod
  def torch_name(path: tuple, source: str, backbone_cfg) -> str:
    """dfnet.py prefix of flaseg module `path` (relative to the backbone), e.g.
    ('stage3_1_0', 'downsample', 'conv') -> 'stage3_1.0.downsample.0'. One table for every
    source: dfnet.py's names (SFSegNets' whole models prefix them with 'backbone.', which
    `convert` strips)."""
    del source, backbone_cfg
    if path[:2] in _STAGE1 and len(path) == 2:
      return _STAGE1[path[:2]]
    stage, _, block = path[0].rpartition("_")
    known = {s for v in STAGES.values() for s, *_ in v}
    if stage not in known or not block.isdigit() or len(path) < 2:
      raise KeyError(path)
    if path[1] == "downsample" and len(path) == 3 and path[2] in ("conv", "bn"):
      return f"{stage}.{block}.downsample.{0 if path[2] == 'conv' else 1}"
    if len(path) == 2 and path[1] in ("conv1", "bn1", "conv2", "bn2"):
      return f"{stage}.{block}.{path[1]}"
    raise KeyError(path)
