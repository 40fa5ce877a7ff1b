"""HRNetV2-W18/W32/W48 backbone (NHWC), PyTorch-exact to mmseg 1.2.2's `HRNet`.

Reproduces mmseg `mmseg/models/backbones/hrnet.py` (`HRNet` with the `extra` of
`configs/_base_/models/fcn_hr18.py`, widths of `fcn_hr48_*`), which has the structure of
HRNet/HRNet-Semantic-Segmentation `lib/models/seg_hrnet.py` and timm `hrnet_w*`
(Wang et al., "Deep High-Resolution Representation Learning", TPAMI 2020):

  stem     3x3/2 conv 3->64, BN, ReLU, 3x3/2 conv 64->64, BN, ReLU (1/4)
  layer1   4 Bottlenecks, planes 64 (out 256), 1x1 + BN projection on the first
  stage2   transition1: 3x3 256->C0 (+BN, ReLU), 3x3/2 256->C1 (+BN, ReLU); 1 module
  stage3   transition2 adds a 3x3/2 C1->C2 branch; 4 modules
  stage4   transition3 adds a 3x3/2 C2->C3 branch; 3 modules
with (C0, C1, C2, C3) = width * (1, 2, 4, 8). A module runs 4 BasicBlocks on every branch,
then fuses: output i sums, over the branches j, x_j itself (j = i), 1x1 conv + BN then
bilinear upsampling (j > i), or (i - j) 3x3/2 conv + BN with ReLU except after the last
(j < i); then ReLU.

Upsampling in the fuse layers is mmseg's, align_corners=False, in its two steps: mmcv
`Upsample(scale_factor=2**(j-i))` (size int(h * 2**(j-i))), then `resize` to x_i's exact size
(a no-op when H and W are multiples of 32; for other sizes this makes odd sizes match mmseg
too). The official seg code resizes once to x_i's size; timm uses nearest (the ImageNet
classification code): weights transfer, outputs differ slightly.

Returns the four branches as 'c2', 'c3', 'c4', 'c5' (strides 4, 8, 16, 32), so that the
`resize_concat` neck builds HRNetV2's 'concat' representation (720 channels for W48).
"""
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from flaseg.errors import ConfigError
from flaseg.models.layers import ConvBNReLU, add_relu, batch_norm, conv, resize_bilinear
from flaseg.models.lowering import DEFAULT, Lowering
from flaseg.models.resnet import BasicBlock, Bottleneck

Dtype = Any

WIDTHS = (18, 32, 48)
FEATURES = ("c2", "c3", "c4", "c5")


class HRModule(nn.Module):
  """mmseg `HRModule`: `num_blocks` BasicBlocks per branch ('branch{b}_{k}'), then the fuse layers
  ('fuse{i}_{j}' for j > i: 1x1 conv + BN; 'fuse{i}_{j}_{k}' for j < i: 3x3/2 conv + BN)."""
  channels: tuple
  num_blocks: int = 4
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, xs, train: bool):
    kw = dict(dtype=self.dtype, lowering=self.lowering)
    xs = list(xs)
    for b, c in enumerate(self.channels):
      for k in range(self.num_blocks):
        xs[b] = BasicBlock(c, **kw, name=f"branch{b}_{k}")(xs[b], train)
    outs = []
    for i, ci in enumerate(self.channels):
      terms = []
      for j, cj in enumerate(self.channels):
        if j == i:
          z = xs[j]
        elif j > i:
          z = conv(ci, 1, **kw, name=f"fuse{i}_{j}_conv")(xs[j])
          z = batch_norm(train, self.dtype, name=f"fuse{i}_{j}_bn")(z)
          factor = 2 ** (j - i)  # mmcv Upsample(scale_factor), then resize to x_i's size
          z = resize_bilinear(z, (z.shape[1] * factor, z.shape[2] * factor), False)
          z = resize_bilinear(z, xs[i].shape[1:3], False)
        else:
          z = xs[j]
          for k in range(i - j):
            last = k == i - j - 1
            z = ConvBNReLU(ci if last else cj, 3, 2, relu=not last, **kw,
                           name=f"fuse{i}_{j}_{k}")(z, train)
        terms.append(z)
      outs.append(add_relu(sum(terms[1:-1], terms[0]), terms[-1]))
    return outs


class HRNet(nn.Module):
  """HRNetV2-W`width` returning {'c2', 'c3', 'c4', 'c5'}; see the module docstring.

  `num_blocks` (Bottlenecks of layer1 and BasicBlocks per branch of every module) and
  `num_modules` (of stages 2, 3, 4) are mmseg's `extra` num_blocks / num_modules: (4, (1, 4, 3))
  is HRNetV2; (2, (1, 3, 2)) with width 18 is mmseg's HRNetV2-W18-Small (fcn_hr18s); (1, (1, 1,
  1)) is for `:smoke` runs (SMOKE_FIELDS: a tenth of the layers and of the compile time).
  """
  # config_lib.apply_smoke: the smallest real width, a tenth of the layers.
  SMOKE_FIELDS: ClassVar[dict] = {"width": 18, "num_blocks": 1, "num_modules": (1, 1, 1)}
  width: int = 48
  num_blocks: int = 4
  num_modules: Sequence[int] = (1, 4, 3)
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  def check(self):
    if self.width not in WIDTHS:
      raise ConfigError(f"model.backbone.width={self.width}: choose one of {WIDTHS}")
    if not (isinstance(self.num_blocks, int) and self.num_blocks >= 1):
      raise ConfigError(f"model.backbone.num_blocks={self.num_blocks!r}: a positive int (4)")
    if len(tuple(self.num_modules)) != 3 or min(self.num_modules) < 1:
      raise ConfigError(f"model.backbone.num_modules={self.num_modules!r}: three positive "
                        "ints, modules of stages 2, 3, 4 ((1, 4, 3))")

  def branch_channels(self) -> tuple:
    self.check()
    return tuple(self.width * 2 ** b for b in range(4))

  def feature_spec(self) -> dict:
    """{name: (stride, channels)} of the features `__call__` returns (no input needed)."""
    return {k: (4 * 2 ** b, c) for b, (k, c) in enumerate(zip(FEATURES, self.branch_channels()))}

  @nn.compact
  def __call__(self, x, train: bool = False):
    channels = self.branch_channels()
    kw = dict(dtype=self.dtype, lowering=self.lowering)
    x = x.astype(self.dtype)
    x = conv(64, 3, 2, **kw, name="conv1")(x)
    x = nn.relu(batch_norm(train, self.dtype, name="bn1")(x))
    x = conv(64, 3, 2, **kw, name="conv2")(x)
    x = nn.relu(batch_norm(train, self.dtype, name="bn2")(x))
    for k in range(self.num_blocks):
      x = Bottleneck(64, project=k == 0, **kw, name=f"layer1_{k}")(x, train)
    xs = [x]
    for stage in (2, 3, 4):
      n = stage  # branches of this stage
      prev = len(xs)
      new = []
      for b in range(n):
        if b < prev:  # mmseg transition{t}.{b}: a 3x3 conv where the channels change
          y = xs[b]
          if y.shape[-1] != channels[b]:
            y = ConvBNReLU(channels[b], 3, **kw, name=f"transition{stage - 1}_{b}")(y, train)
        else:  # a new branch from the lowest-resolution one: transition{t}.{b}.0
          y = ConvBNReLU(channels[b], 3, 2, **kw,
                         name=f"transition{stage - 1}_{b}")(xs[-1], train)
        new.append(y)
      xs = new
      for m in range(self.num_modules[stage - 2]):
        xs = HRModule(channels[:n], self.num_blocks, **kw, name=f"stage{stage}_{m}")(xs, train)
    return dict(zip(FEATURES, xs))

  @staticmethod
  def torch_name(path: tuple, source: str, backbone_cfg) -> str:
    """Torch prefix of a flaseg HRNet module (path relative to the backbone) in the mmseg /
    official / timm layout (one naming for the sources 'mmseg', 'hrnet', 'timm')."""
    del backbone_cfg
    if source not in ("mmseg", "hrnet", "timm"):
      raise KeyError(path)
    first = path[0]
    sub = {"conv": 0, "bn": 1}
    if first in ("conv1", "bn1", "conv2", "bn2") and len(path) == 1:
      return first
    if first.startswith("layer1_"):
      k = first.split("_")[1]
      if path[1] == "downsample":
        return f"layer1.{k}.downsample.{sub[path[2]]}"
      return f"layer1.{k}.{path[1]}"
    if first.startswith("transition"):
      t, b = (int(v) for v in first[len("transition"):].split("_"))
      # transition t follows a stage with t branches: branch b >= t is new (a Sequential).
      return f"transition{t}.{b}.{'0.' if b >= t else ''}{sub[path[1]]}"
    if first.startswith("stage"):
      s, m = first[len("stage"):].split("_")
      inner = path[1]
      if inner.startswith("branch"):
        b, k = inner[len("branch"):].split("_")
        return f"stage{s}.{m}.branches.{b}.{k}.{path[2]}"
      if inner.startswith("fuse"):
        parts = inner[len("fuse"):].split("_")
        if parts[-1] in sub:  # fuse{i}_{j}_conv / _bn (j > i)
          return f"stage{s}.{m}.fuse_layers.{parts[0]}.{parts[1]}.{sub[parts[-1]]}"
        i, j, k = parts
        return f"stage{s}.{m}.fuse_layers.{i}.{j}.{k}.{sub[path[2]]}"
    raise KeyError(path)
