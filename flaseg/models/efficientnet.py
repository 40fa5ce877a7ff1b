"""EfficientNet-B0..B8 / L2 backbones as timm's `tf_efficientnet_*` (NHWC), PyTorch-exact.

Reproduces timm 1.0 `EfficientNetFeatures` (timm/models/efficientnet.py `_gen_efficientnet`,
`_efficientnet_builder.py`, `_efficientnet_blocks.py`) for the TF-ported weights
(`tf_efficientnet_b7.{ra,ap,aa,ns_jft}_in1k`), i.e. `timm.create_model('tf_efficientnet_b7',
features_only=True, out_indices=(1, 2, 3, 4), output_stride=...)`:

  * stem: 3x3/2 conv to round(32 * width) channels + BN + SiLU;
  * seven stages of the EfficientNet-B0 table (`STAGES`), channels scaled by the variant's
    width multiplier (`round_channels`: nearest multiple of 8, at most 10% down) and repeats by
    its depth multiplier (ceil); stage 0 is a depthwise-separable block (dw 3x3 + BN + SiLU,
    SE, 1x1 + BN), the others inverted residuals (1x1 expansion x6 + BN + SiLU, dw kxk + BN +
    SiLU, SE, 1x1 projection + BN); identity shortcut when stride 1 and in == out channels;
  * squeeze-excitation as timm's `SqueezeExcite`: global mean, 1x1 conv (bias) to
    round(0.25 * block input channels) (= round(mid * 0.25 / expansion)), SiLU, 1x1 conv (bias)
    back, sigmoid gate;
  * TF "same" padding for every conv (timm `pad_type='same'`: `Conv2dSame` / `pad_same`):
    total pad max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0) per axis, the smaller half
    first, so it is asymmetric for the stride-2 convs and depends on the input size;
  * BatchNorm eps 1e-3 (`BN_EPS_TF_DEFAULT`), torch momentum 0.1 (timm leaves the default).

Output stride 16 / 8 as timm's builder: the running stride starts at 2 (the stem); a block
whose stride would take it past `output_stride` gets stride 1 instead, keeps the current
dilation itself, and the blocks after it get the dilation multiplied by that stride (so the
first block of a dilated stage is undilated at stride 1). The depthwise convs then have
symmetric "same" padding d * (k - 1) / 2 (TF same at stride 1).

Returns the outputs of stages 1, 2, 4 and 6, timm's feature_info indices 1-4: 'c2' (1/4),
'c3' (1/8), 'c4' (1/16), 'c5' (1/32) at output stride 32; B7: 48, 80, 224 and 640 channels.
Like `features_only`, no conv_head / classifier.

Deviations: none in eval mode. In training, stochastic depth (`drop_path_rate`, timm's
per-block rate drop_path_rate * block index / block count on the residual branch of blocks
with a shortcut, per sample, scaled by 1 / keep) uses the 'dropout' rng; timm's default is 0.
Weights are initialised like timm's `_init_weight_goog` (normal, std sqrt(2 / fan_out),
fan_out of a depthwise conv k * k; zero biases; BN 1 / 0).

Converting: `torch_name` maps to timm's state dict names (source 'timm'): conv_stem, bn1,
blocks.{stage}.{block}.{conv_pw, bn1, conv_dw, bn2, se.conv_reduce, se.conv_expand, conv_pwl,
bn3} (stage 0: conv_dw, bn1, se.*, conv_pw, bn2). A full classification checkpoint also holds
conv_head.* and bn2.* (the head, not part of this backbone): save the state dict of
`timm.create_model(..., features_only=True, pretrained=True)` instead, which has neither.
Normalisation: the ra / aa / ns_jft weights use ImageNet mean/std (flaseg's default); the ap
ones the Inception mean/std (0.5, 0.5).
"""
import math
import re
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from flaseg.errors import ConfigError
from flaseg.models.layers import batch_norm, conv
from flaseg.models.lowering import DEFAULT, Lowering

Dtype = Any

# timm `_gen_efficientnet` docstring: variant -> (width multiplier, depth multiplier).
VARIANTS = {"b0": (1.0, 1.0), "b1": (1.0, 1.1), "b2": (1.1, 1.2), "b3": (1.2, 1.4),
            "b4": (1.4, 1.8), "b5": (1.6, 2.2), "b6": (1.8, 2.6), "b7": (2.0, 3.1),
            "b8": (2.2, 3.6), "l2": (4.3, 5.3)}
# timm `_gen_efficientnet` arch_def ('ds_r1_k3_s1_e1_c16_se0.25', 'ir_r2_k3_s2_e6_c24_se0.25',
# ...): (block, repeats, kernel, stride, expansion, channels); SE ratio 0.25 everywhere.
STAGES = (("ds", 1, 3, 1, 1, 16), ("ir", 2, 3, 2, 6, 24), ("ir", 2, 5, 2, 6, 40),
          ("ir", 3, 3, 2, 6, 80), ("ir", 3, 5, 1, 6, 112), ("ir", 4, 5, 2, 6, 192),
          ("ir", 1, 3, 1, 6, 320))
SE_RATIO = 0.25
STEM_CHANNELS = 32
BN_EPS = 1e-3  # timm BN_EPS_TF_DEFAULT
# The stages whose outputs are returned (timm feature_info 1-4: the last stage before each
# stride-2 stage, and the last one).
FEATURE_STAGES = {"c2": 1, "c3": 2, "c4": 4, "c5": 6}
OUTPUT_STRIDES = (8, 16, 32)


def make_divisible(v: float, divisor: int = 8) -> int:
  """timm `make_divisible`: nearest multiple of `divisor` (at least `divisor`), never more
  than 10% below `v`."""
  new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
  return new_v + divisor if new_v < 0.9 * v else new_v


def round_channels(channels: int, multiplier: float) -> int:
  """timm `round_channels` with divisor 8."""
  return make_divisible(channels * multiplier, 8)


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple:
  """TF "same" padding (low, high) of one axis of length `size` (timm `get_same_padding`)."""
  pad = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
  return pad // 2, pad - pad // 2


def block_plan(variant: str, output_stride: int) -> list:
  """The blocks of each stage as timm's builder makes them (see the module docstring): a list
  per stage of dicts with kind, in/mid/out/SE channels, kernel, stride, dilation, skip and the
  output stride after the block ('out_stride')."""
  width, depth = VARIANTS[variant]
  in_chs = round_channels(STEM_CHANNELS, width)
  current_stride, dilation = 2, 1
  stages = []
  for kind, repeats, kernel, stride, expansion, channels in STAGES:
    out_chs = round_channels(channels, width)
    blocks = []
    for b in range(int(math.ceil(repeats * depth))):
      s = stride if b == 0 else 1
      next_dilation = dilation
      if s > 1:
        if current_stride * s > output_stride:
          next_dilation, s = dilation * s, 1
        else:
          current_stride *= s
      mid = in_chs if kind == "ds" else make_divisible(in_chs * expansion)
      blocks.append(dict(kind=kind, in_chs=in_chs, out_chs=out_chs, mid_chs=mid,
                         se_chs=round(mid * (SE_RATIO / expansion)), kernel=kernel, stride=s,
                         dilation=dilation, skip=s == 1 and in_chs == out_chs,
                         out_stride=current_stride))
      dilation, in_chs = next_dilation, out_chs
    stages.append(blocks)
  return stages


def same_conv(x, features: int, kernel: int, stride: int = 1, dilation: int = 1,
              groups: int = 1, bias: bool = False, name: str = None,
              dtype: Dtype = jnp.float32, lowering: Lowering = DEFAULT):
  """timm `create_conv2d(..., padding='same')`: a conv with TF "same" padding for the size
  of `x`, initialised as timm's `_init_weight_goog`: normal, std sqrt(2 / fan_out)
  with fan_out = k * k * features / groups (flax counts k * k * features: hence 2 * groups)."""
  pads = tuple(same_padding(n, kernel, stride, dilation) for n in x.shape[1:3])
  init = nn.initializers.variance_scaling(2.0 * groups, "fan_out", "normal")
  return conv(features, kernel, stride, dilation, bias, dtype=dtype, name=name,
              kernel_init=init, lowering=lowering, groups=groups, padding=pads)(x)


class SqueezeExcite(nn.Module):
  """timm `SqueezeExcite`: mean -> 1x1 conv (bias) -> SiLU -> 1x1 conv (bias) -> sigmoid gate."""
  se_features: int
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    kw = dict(dtype=self.dtype, lowering=self.lowering)
    s = x.mean(axis=(1, 2), keepdims=True)
    s = nn.silu(same_conv(s, self.se_features, 1, bias=True, **kw, name="conv_reduce"))
    s = same_conv(s, c, 1, bias=True, **kw, name="conv_expand")
    return x * nn.sigmoid(s)


class MBBlock(nn.Module):
  """timm `DepthwiseSeparableConv` (kind 'ds') or `InvertedResidual` ('ir'), with SE."""
  kind: str
  out_features: int
  mid_features: int
  se_features: int
  kernel: int
  stride: int = 1
  dilation: int = 1
  skip: bool = False
  drop_path: float = 0.0
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, x, train: bool):
    kw = dict(dtype=self.dtype, lowering=self.lowering)

    def bn(y, name, act=True):
      y = batch_norm(train, self.dtype, name=name, epsilon=BN_EPS)(y)
      return nn.silu(y) if act else y

    shortcut = x
    if self.kind == "ir":
      x = bn(same_conv(x, self.mid_features, 1, **kw, name="conv_pw"), "bn1")
    names = ("conv_dw", "bn1", "conv_pw", "bn2") if self.kind == "ds" else (
        "conv_dw", "bn2", "conv_pwl", "bn3")
    x = same_conv(x, self.mid_features, self.kernel, self.stride, self.dilation,
                  groups=self.mid_features, **kw, name=names[0])
    x = bn(x, names[1])
    x = SqueezeExcite(self.se_features, **kw, name="se")(x)
    x = bn(same_conv(x, self.out_features, 1, **kw, name=names[2]), names[3], act=False)
    if self.skip:
      if self.drop_path > 0:  # timm DropPath: one draw per sample, kept ones scaled 1 / keep
        x = nn.Dropout(self.drop_path, broadcast_dims=(1, 2, 3))(x, deterministic=not train)
      x = x + shortcut
    return x


class EfficientNet(nn.Module):
  """timm `tf_efficientnet_<variant>` features {'c2', 'c3', 'c4', 'c5'}; see the module
  docstring."""
  variant: str = "b7"
  output_stride: int = 32
  drop_path_rate: float = 0.0
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT
  # Fields that make a smoke run small (config_lib.apply_smoke): B0 is the smallest variant.
  SMOKE_FIELDS: ClassVar[dict] = {"variant": "b0"}

  def check(self):
    """One-line errors for fields the network cannot have."""
    if self.variant not in VARIANTS:
      raise ConfigError(f"model.backbone.variant={self.variant!r}: choose one of "
                        f"{sorted(VARIANTS)}")
    if self.output_stride not in OUTPUT_STRIDES:
      raise ConfigError(f"model.backbone.output_stride={self.output_stride}: choose 8, 16 "
                        "or 32")

  def feature_spec(self) -> dict:
    """{name: (stride, channels)} of the features `__call__` returns (no input needed)."""
    self.check()
    stages = block_plan(self.variant, self.output_stride)
    return {key: (stages[s][-1]["out_stride"], stages[s][-1]["out_chs"])
            for key, s in FEATURE_STAGES.items()}

  @nn.compact
  def __call__(self, x, train: bool = False):
    self.check()
    kw = dict(dtype=self.dtype, lowering=self.lowering)
    width, _ = VARIANTS[self.variant]
    x = x.astype(self.dtype)
    x = same_conv(x, round_channels(STEM_CHANNELS, width), 3, 2, **kw, name="conv_stem")
    x = nn.silu(batch_norm(train, self.dtype, name="bn1", epsilon=BN_EPS)(x))
    stages = block_plan(self.variant, self.output_stride)
    total = sum(len(blocks) for blocks in stages)
    index, outputs = 0, {}
    for s, blocks in enumerate(stages):
      for b, p in enumerate(blocks):
        x = MBBlock(p["kind"], p["out_chs"], p["mid_chs"], p["se_chs"], p["kernel"],
                    p["stride"], p["dilation"], p["skip"],
                    self.drop_path_rate * index / total, **kw,
                    name=f"blocks_{s}_{b}")(x, train)
        index += 1
      outputs[s] = x
    return {key: outputs[s] for key, s in FEATURE_STAGES.items()}

  @staticmethod
  def torch_name(path: tuple, source: str, backbone_cfg) -> str:
    """timm name of the module at `path` (relative to the backbone): 'blocks_3_1/se/conv_reduce'
    -> 'blocks.3.1.se.conv_reduce'."""
    if source != "timm":
      raise KeyError(path)
    if path in (("conv_stem",), ("bn1",)):
      return path[0]
    m = re.fullmatch(r"blocks_(\d+)_(\d+)", path[0])
    if m and len(path) > 1:
      return ".".join((f"blocks.{m.group(1)}.{m.group(2)}",) + tuple(path[1:]))
    raise KeyError(path)
