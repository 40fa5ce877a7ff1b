"""Dilated ResNet-18/34/50/101/152 backbones (NHWC), PyTorch-exact.

Three stems (attention-heads.md §1.1):
  * 'torchvision': 7x7/2 conv 3->64, BN, ReLU, 3x3/2 max-pool (AttaNet, torchvision, timm).
  * 'v1c':  mmseg ResNetV1c deep stem, 3x3 convs 3->32->32->64 (each + BN + ReLU), max-pool.
  * 'deep': CCNet/FLANet/DenoisedNL deep stem, 3x3 convs 3->64->64->128, max-pool; layer1
            then starts from 128 channels.
Bottlenecks put the stride on the 3x3 conv ("pytorch" style). Output stride 8/16/32 replaces
the stride of layer3/layer4 by dilation (2, 4). `contract_dilation` gives the first block of a
dilated stage half the dilation (mmseg); `multi_grid` lists the absolute dilations of layer4's
blocks, cycled (DenoisedNL: (4, 8, 16)). BasicBlocks dilate both 3x3 convs (FLANet's code).
`avg_down` (timm resnet50d) uses AvgPool + 1x1 conv on the shortcut.

Returns a dict of stage features: 'c2' (layer1, 1/4), 'c3' (layer2, 1/8), 'c4' (layer3) and
'c5' (layer4). `width` scales every channel count (64 = the standard network) so that tests
can use tiny models.
"""
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from flaseg.models.layers import add_relu, batch_norm, conv, max_pool
from flaseg.models.lowering import DEFAULT, Lowering
from flaseg.errors import ConfigError

Dtype = Any

DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
          50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
          152: ("bottleneck", (3, 8, 36, 3))}
STEMS = ("torchvision", "v1c", "deep")
# output stride -> (strides, dilations) of layer1..layer4.
OUTPUT_STRIDES = {8: ((1, 2, 1, 1), (1, 1, 2, 4)), 16: ((1, 2, 2, 1), (1, 1, 1, 2)),
                  32: ((1, 2, 2, 2), (1, 1, 1, 1))}


class Shortcut(nn.Module):
  """Projection shortcut: 1x1 conv (stride) + BN; with `avg_down` an AvgPool does the stride."""
  features: int
  stride: int
  avg_down: bool
  dtype: Dtype
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, x, train):
    stride = self.stride
    if self.avg_down and stride > 1:
      # timm 'd' variants: AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False).
      x = nn.avg_pool(x, (stride, stride), (stride, stride), padding="SAME",
                      count_include_pad=False)
      stride = 1
    x = conv(self.features, 1, stride, dtype=self.dtype, lowering=self.lowering, name="conv")(x)
    return batch_norm(train, self.dtype, name="bn")(x)


class BasicBlock(nn.Module):
  """Two 3x3 convs (both dilated, as FLANet's code), the stride on the first."""
  features: int
  stride: int = 1
  dilation: int = 1
  project: bool = False
  avg_down: bool = False
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT
  expansion = 1

  def residual(self, x, train):
    kw = dict(dtype=self.dtype, lowering=self.lowering)
    y = conv(self.features, 3, self.stride, self.dilation, **kw, name="conv1")(x)
    y = nn.relu(batch_norm(train, self.dtype, name="bn1")(y))
    y = conv(self.features, 3, 1, self.dilation, **kw, name="conv2")(y)
    return batch_norm(train, self.dtype, name="bn2")(y)

  @nn.compact
  def __call__(self, x, train):
    y = self.residual(x, train)
    if self.project:
      x = Shortcut(self.features * self.expansion, self.stride, self.avg_down, self.dtype,
                   self.lowering, name="downsample")(x, train)
    return add_relu(y, x)


class Bottleneck(BasicBlock):
  """1x1 -> 3x3 (stride, dilation; "pytorch" style) -> 1x1 to 4x the width."""
  expansion = 4

  def residual(self, x, train):
    kw = dict(dtype=self.dtype, lowering=self.lowering)
    y = conv(self.features, 1, **kw, name="conv1")(x)
    y = nn.relu(batch_norm(train, self.dtype, name="bn1")(y))
    y = conv(self.features, 3, self.stride, self.dilation, **kw, name="conv2")(y)
    y = nn.relu(batch_norm(train, self.dtype, name="bn2")(y))
    y = conv(self.features * 4, 1, **kw, name="conv3")(y)
    return batch_norm(train, self.dtype, name="bn3")(y)


class ResNet(nn.Module):
  """Dilated ResNet returning {'c2', 'c3', 'c4', 'c5'}; see the module docstring."""
  depth: int = 50
  stem: str = "deep"
  output_stride: int = 8
  contract_dilation: bool = False
  multi_grid: Optional[Sequence[int]] = None
  avg_down: bool = False
  width: int = 64
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  def feature_spec(self) -> dict:
    """{name: (stride, channels)} of the features `__call__` returns (no input needed)."""
    self.check()
    strides, _ = OUTPUT_STRIDES[self.output_stride]
    channels = feature_channels(self.depth, self.width)
    out, stride = {}, 4
    for s, key in enumerate(("c2", "c3", "c4", "c5")):
      stride *= strides[s]
      out[key] = (stride, channels[key])
    return out

  def check(self):
    """One-line errors for fields the network cannot have."""
    if self.depth not in DEPTHS:
      raise ConfigError(f"model.backbone.depth={self.depth}: choose one of {sorted(DEPTHS)}")
    if self.stem not in STEMS:
      raise ConfigError(f"model.backbone.stem={self.stem!r}: choose one of {STEMS}")
    if self.output_stride not in OUTPUT_STRIDES:
      raise ConfigError(f"model.backbone.output_stride={self.output_stride}: choose 8, 16 or 32")

  @nn.compact
  def __call__(self, x, train: bool = False):
    self.check()
    kind, blocks = DEPTHS[self.depth]
    block_cls = BasicBlock if kind == "basic" else Bottleneck
    w = self.width
    x = x.astype(self.dtype)
    if self.stem == "torchvision":
      stem = [(w, 7, 2)]
    elif self.stem == "v1c":
      stem = [(w // 2, 3, 2), (w // 2, 3, 1), (w, 3, 1)]
    else:
      stem = [(w, 3, 2), (w, 3, 1), (2 * w, 3, 1)]
    for i, (features, kernel, stride) in enumerate(stem):
      x = conv(features, kernel, stride, dtype=self.dtype, lowering=self.lowering,
               name=f"stem_conv{i + 1}")(x)
      x = nn.relu(batch_norm(train, self.dtype, name=f"stem_bn{i + 1}")(x))
    x = max_pool(x, 3, 2, ((1, 1), (1, 1)))

    strides, dilations = OUTPUT_STRIDES[self.output_stride]
    feats = {}
    for s, (n_blocks, stride, dilation) in enumerate(zip(blocks, strides, dilations)):
      features = w * 2 ** s
      for b in range(n_blocks):
        d = dilation
        if s == 3 and self.multi_grid:
          d = self.multi_grid[b % len(self.multi_grid)]
        elif b == 0 and self.contract_dilation and dilation > 1:
          d = dilation // 2
        project = b == 0 and (stride != 1 or x.shape[-1] != features * block_cls.expansion)
        x = block_cls(features, stride if b == 0 else 1, d, project, self.avg_down, self.dtype,
                      self.lowering, name=f"layer{s + 1}_{b}")(x, train)
      feats[f"c{s + 2}"] = x
    return feats


def feature_channels(depth: int, width: int = 64) -> dict:
  """Channels of c2..c5 for a backbone, without building it."""
  expansion = 1 if DEPTHS[depth][0] == "basic" else 4
  return {f"c{s + 2}": width * 2 ** s * expansion for s in range(4)}
