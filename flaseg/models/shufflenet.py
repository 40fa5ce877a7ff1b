"""ShuffleNetV2 backbone (Ma et al., ECCV 2018; NHWC), PyTorch-exact with torchvision's.

Reproduces torchvision `torchvision/models/shufflenetv2.py` (`ShuffleNetV2`,
`InvertedResidual`, `shufflenet_v2_x1_0` and the other widths):

  conv1    3x3/2 conv 3->24, BN, ReLU; 3x3/2 max-pool                    -> 'c2' (1/4, 24)
  stage2   4 units -> 116 channels (x1.0)                               -> 'c3' (1/8)
  stage3   8 units -> 232                                                -> 'c4' (1/16)
  stage4   4 units -> 464; conv5 1x1 conv -> 1024, BN, ReLU             -> 'c5' (1/32, 1024)

A unit (`InvertedResidual`) with stride 1 splits the channels in two halves, keeps the first
and sends the second through branch2 = 1x1 conv, BN, ReLU, 3x3 depthwise conv, BN, 1x1 conv,
BN, ReLU; the first unit of a stage (stride 2) sends the whole input through branch1 = 3x3
depthwise conv (stride 2), BN, 1x1 conv, BN, ReLU, and through branch2 (its depthwise conv
with stride 2). The two halves are concatenated and shuffled with 2 groups (channel i of
half g goes to 2 i + g).

flaseg's additions, marked as such (FLANet and AttaNet give no details of their ShuffleNet):
  * `output_stride` 8 / 16 replaces the stride 2 of stage3 and stage4 / of stage4 by 1 and
    dilates every 3x3 depthwise conv of that stage (all its units, the first included, as
    flaseg's dilated ResNet without `contract_dilation`) by 2 (stage3) and 4 (stage4) at
    output stride 8, by 2 (stage4) at 16: DeepLab-style dilation, flaseg's reading of
    "dilated to output stride 8"; 32 is torchvision's network.
  * 'c5' is conv5's output (`conv5=True`, the default) or stage4's (`conv5=False`, 464
    channels). AttaNet / FLANet on ShuffleNetV2 are not released; conv5 is kept because
    AttaNet's Table 4 (3.31M parameters with its head) matches the network with conv5
    (3.34M at 19 classes without the two training-only auxiliary outputs; 3.49M with them)
    and not the one without (2.15M / 2.29M), and because then every tensor of torchvision's
    ImageNet checkpoint but `fc.*` is used. With `conv5=False` drop the `conv5.*` keys from
    that checkpoint before converting it (the converter refuses unused tensors).
  * `width_mult` picks torchvision's x0.5 / x1.0 / x1.5 / x2.0 channel tables (tests and
    smoke runs use 0.5).
Initialisation: flaseg's `conv_init` (kaiming normal, a=1) like its ResNet; torchvision
uses torch's default init (pretrained weights replace it).
"""
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from flaseg.errors import ConfigError
from flaseg.models.layers import batch_norm, conv, max_pool
from flaseg.models.lowering import DEFAULT, Lowering

Dtype = Any

# torchvision `shufflenet_v2_x*`: stage repeats and channels of conv1, stage2-4, conv5.
STAGE_REPEATS = (4, 8, 4)
WIDTHS = {0.5: (24, 48, 96, 192, 1024), 1.0: (24, 116, 232, 464, 1024),
          1.5: (24, 176, 352, 704, 1024), 2.0: (24, 244, 488, 976, 2048)}
# output stride -> (strides, dilations) of stage2..stage4.
OUTPUT_STRIDES = {8: ((2, 1, 1), (1, 2, 4)), 16: ((2, 2, 1), (1, 1, 2)),
                  32: ((2, 2, 2), (1, 1, 1))}

# flaseg module -> index in torchvision's `nn.Sequential` branches of `InvertedResidual`.
_UNIT_NAMES = {"branch1_dw": "branch1.0", "branch1_dw_bn": "branch1.1",
               "branch1_pw": "branch1.2", "branch1_pw_bn": "branch1.3",
               "branch2_pw1": "branch2.0", "branch2_pw1_bn": "branch2.1",
               "branch2_dw": "branch2.3", "branch2_dw_bn": "branch2.4",
               "branch2_pw2": "branch2.5", "branch2_pw2_bn": "branch2.6"}
_TOP_NAMES = {"conv1": "conv1.0", "bn1": "conv1.1", "conv5": "conv5.0", "bn5": "conv5.1"}


def channel_shuffle(x, groups: int = 2):
  """torchvision `channel_shuffle` in NHWC: (.., groups, C/groups) -> (.., C/groups, groups)."""
  *lead, c = x.shape
  x = x.reshape(*lead, groups, c // groups)
  return jnp.swapaxes(x, -1, -2).reshape(*lead, c)


class InvertedResidual(nn.Module):
  """torchvision `InvertedResidual(inp, features, stride)`, its 3x3 depthwise convs dilated
  by `dilation` (flaseg's addition for output stride 8/16). `first`: the first unit of a stage
  (two branches; torchvision's stride > 1), which stays so when dilation removes its stride."""
  features: int
  stride: int = 1
  dilation: int = 1
  first: bool = False
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, x, train: bool = False):
    kw = dict(dtype=self.dtype, lowering=self.lowering)
    half = self.features // 2
    if self.first:  # both branches see the whole input
      x1 = conv(x.shape[-1], 3, self.stride, self.dilation, groups=x.shape[-1], **kw,
                name="branch1_dw")(x)
      x1 = batch_norm(train, self.dtype, name="branch1_dw_bn")(x1)
      x1 = conv(half, 1, **kw, name="branch1_pw")(x1)
      x1 = nn.relu(batch_norm(train, self.dtype, name="branch1_pw_bn")(x1))
      x2 = x
    else:
      x1, x2 = jnp.split(x, 2, axis=-1)
    y = conv(half, 1, **kw, name="branch2_pw1")(x2)
    y = nn.relu(batch_norm(train, self.dtype, name="branch2_pw1_bn")(y))
    y = conv(half, 3, self.stride, self.dilation, groups=half, **kw, name="branch2_dw")(y)
    y = batch_norm(train, self.dtype, name="branch2_dw_bn")(y)
    y = conv(half, 1, **kw, name="branch2_pw2")(y)
    y = nn.relu(batch_norm(train, self.dtype, name="branch2_pw2_bn")(y))
    return channel_shuffle(jnp.concatenate([x1, y], axis=-1), 2)


class ShuffleNetV2(nn.Module):
  """ShuffleNetV2 returning {'c2', 'c3', 'c4', 'c5'}; see the module docstring."""
  width_mult: float = 1.0
  output_stride: int = 32
  conv5: bool = True
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT
  # Fields that make a smoke run small (config_lib.apply_smoke's `depth`/`width` for ResNet).
  SMOKE_FIELDS: ClassVar[dict] = {"width_mult": 0.5}

  def check(self):
    """One-line errors for fields the network cannot have."""
    if self.width_mult not in WIDTHS:
      raise ConfigError(f"model.backbone.width_mult={self.width_mult}: choose one of "
                        f"{sorted(WIDTHS)}")
    if self.output_stride not in OUTPUT_STRIDES:
      raise ConfigError(f"model.backbone.output_stride={self.output_stride}: choose 8, 16 "
                        "or 32")

  def feature_spec(self) -> dict:
    """{name: (stride, channels)} of the features `__call__` returns (no input needed)."""
    self.check()
    channels = WIDTHS[self.width_mult]
    strides, _ = OUTPUT_STRIDES[self.output_stride]
    out, stride = {"c2": (4, channels[0])}, 4
    for s in range(3):
      stride *= strides[s]
      out[f"c{s + 3}"] = (stride, channels[s + 1])
    if self.conv5:
      out["c5"] = (stride, channels[4])
    return out

  @nn.compact
  def __call__(self, x, train: bool = False):
    self.check()
    kw = dict(dtype=self.dtype, lowering=self.lowering)
    channels = WIDTHS[self.width_mult]
    x = x.astype(self.dtype)
    x = conv(channels[0], 3, 2, **kw, name="conv1")(x)
    x = nn.relu(batch_norm(train, self.dtype, name="bn1")(x))
    x = max_pool(x, 3, 2, ((1, 1), (1, 1)))
    feats = {"c2": x}
    strides, dilations = OUTPUT_STRIDES[self.output_stride]
    for s, (repeats, stride, dilation) in enumerate(zip(STAGE_REPEATS, strides, dilations)):
      for u in range(repeats):
        x = InvertedResidual(channels[s + 1], stride if u == 0 else 1, dilation, u == 0, **kw,
                             name=f"stage{s + 2}_{u}")(x, train)
      feats[f"c{s + 3}"] = x
    if self.conv5:
      x = conv(channels[4], 1, **kw, name="conv5")(x)
      feats["c5"] = nn.relu(batch_norm(train, self.dtype, name="bn5")(x))
    return feats

  @staticmethod
  def torch_name(path: tuple, source: str, backbone_cfg) -> str:
    """Torch module prefix of flaseg module `path` (relative to the backbone) in a
    torchvision ShuffleNetV2 state dict: ('bn1',) -> 'conv1.1', ('stage3_0', 'branch2_dw')
    -> 'stage3.0.branch2.3', ('conv5',) -> 'conv5.0'."""
    del backbone_cfg
    if source != "torchvision":
      raise KeyError(path)
    if len(path) == 1 and path[0] in _TOP_NAMES:
      return _TOP_NAMES[path[0]]
    if len(path) == 2 and path[0].startswith("stage") and path[1] in _UNIT_NAMES:
      stage, unit = path[0].split("_")
      return f"{stage}.{unit}.{_UNIT_NAMES[path[1]]}"
    raise KeyError(path)
