"""Small building blocks shared by every flaseg model (NHWC).

They reproduce PyTorch semantics so that converted weights give the same outputs:
symmetric padding `dilation * (k - 1) // 2` (never 'SAME', which pads stride-2 convs
asymmetrically), BatchNorm with eps 1e-5 and torch momentum 0.1 (flax momentum 0.9), and
`F.interpolate` bilinear (both `align_corners` conventions, no antialiasing) and nearest.
"""
import functools
import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaseg.models.conv import conv_general_dilated
from flaseg.models.lowering import DEFAULT, Lowering

Dtype = Any

# torch `kaiming_normal_(a=1)` (FLANet, AttaNet): std = 1 / sqrt(fan_in).
conv_init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")


def conv(features: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
         bias: bool = False, dtype: Dtype = jnp.float32, name: Optional[str] = None,
         kernel_init=conv_init, bias_init=nn.initializers.zeros,
         lowering: Lowering = DEFAULT, groups: int = 1, padding=None) -> nn.Conv:
  """A Conv2d with PyTorch's symmetric padding `dilation * (kernel - 1) // 2`, computed as
  `lowering` says (flaseg/models/conv.py). `groups` is torch's `groups` (= the input channels
  for a depthwise conv); grouped convs always run as `lax.conv_general_dilated`. `padding`
  ((top, bottom), (left, right)) replaces the symmetric padding (EfficientNet's TF "same"
  padding, which depends on the input size)."""
  pad = dilation * (kernel - 1) // 2
  padding = ((pad, pad), (pad, pad)) if padding is None else tuple(map(tuple, padding))
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 kernel_dilation=(dilation, dilation), padding=padding,
                 feature_group_count=groups, use_bias=bias, dtype=dtype,
                 param_dtype=jnp.float32, kernel_init=kernel_init, bias_init=bias_init,
                 conv_general_dilated=functools.partial(conv_general_dilated, lowering=lowering),
                 name=name)


def torch_bias_init(fan_in: int):
  """torch `nn.Conv2d` default bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def plain_conv(features: int, fan_in: int, dtype: Dtype = jnp.float32, name=None,
               lowering: Lowering = DEFAULT) -> nn.Conv:
  """A 1x1 torch `nn.Conv2d(bias=True)` with torch's default init: kernel and bias
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5))."""
  return conv(features, 1, bias=True, dtype=dtype, name=name,
              kernel_init=nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
              bias_init=torch_bias_init(fan_in), lowering=lowering)


def batch_norm(train: bool, dtype: Dtype = jnp.float32, name: Optional[str] = None,
               scale_init=nn.initializers.ones, epsilon: float = 1e-5) -> nn.BatchNorm:
  """BatchNorm with PyTorch defaults (`epsilon`: torch's eps; networks ported from
  TensorFlow use 1e-3). Under `jax.jit` on a batch sharded over a mesh the statistics are
  computed over the global batch, i.e. this is SyncBN."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=epsilon,
                      dtype=dtype, param_dtype=jnp.float32, scale_init=scale_init, name=name)


def max_pool(x: jax.Array, window: int, stride: int, padding) -> jax.Array:
  """`MaxPool2d(window, stride)` with explicit `padding` ((top, bottom), (left, right)): the
  input padded with -inf (as PyTorch and `nn.max_pool`'s own padding), then a VALID pool.
  Written with keyword arguments and a string padding, the form that jax2onnx's replacement
  of `flax.linen.max_pool` accepts (`python -m flaseg.export_model --format=onnx`)."""
  pads = ((0, 0),) + tuple(map(tuple, padding)) + ((0, 0),)
  if any(p for pair in pads for p in pair):
    x = jnp.pad(x, pads, constant_values=-jnp.inf)
  return nn.max_pool(x, window_shape=(window, window), strides=(stride, stride),
                     padding="VALID")


def add_relu(y: jax.Array, x: jax.Array) -> jax.Array:
  """relu(y + x), the end of a residual block, written so that XLA keeps it (and its
  gradient) as one array.

  Same values as `nn.relu(y + x)` (y + x where that is positive, else exactly 0; NaN stays
  NaN) and the same gradient (relu'(0) = 0, to both inputs). Why: XLA's CPU fusion pass
  copies an elementwise producer into every consumer that can fuse it, whenever the producer
  reads at most one array (relu = max(v, 0)) or all its consumers are fusible. Through a
  chain of residual blocks, where each block's output feeds the next block's add, every
  block's fusion then recomputes all earlier blocks' BN + add + relu from their conv outputs:
  quadratic in depth. Measured on HRNetV2-W48 (the deepest chains, 4 blocks x 8 modules),
  256x512, batch 2, 2-core CPU: inference 2.06 -> 1.15-1.19 s; train step 7.2 -> 5.3 s with
  the forward form below alone (its autodiff gradient chain was still recomputed, up to 40
  blocks of select/add per fusion), 4.5-5.0 s with the custom backward.
  - Forward: x + where(y <= -x, -x, y) ends in a binary add, which a convolution consumer
    does not fuse, so the block output is materialised once.
  - Backward (`jax.custom_vjp`): one mask of the saved output, the same array returned to
    both inputs; autodiff's form (a select, a negate and two adds per block) was copied down
    the chain as well. (`lax.optimization_barrier` does not help: the CPU pipeline removes it
    before fusion.)
  """
  y, x = jnp.broadcast_arrays(*(v.astype(jnp.result_type(y, x)) for v in (y, x)))
  return _add_relu(y, x)


@jax.custom_vjp
def _add_relu(y, x):
  return x + jnp.where(y <= -x, -x, y)


def _add_relu_fwd(y, x):
  out = _add_relu(y, x)
  return out, out


def _add_relu_bwd(out, g):
  d = jnp.where(out > 0, g, jnp.zeros_like(g))
  return d, d


_add_relu.defvjp(_add_relu_fwd, _add_relu_bwd)


class ConvBNReLU(nn.Module):
  """Conv (no bias) -> BN -> ReLU: mmcv `ConvModule` and AttaNet `ConvBNReLU`."""
  features: int
  kernel: int = 3
  stride: int = 1
  dilation: int = 1
  relu: bool = True
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, x, train: bool):
    x = conv(self.features, self.kernel, self.stride, self.dilation, dtype=self.dtype,
             name="conv", lowering=self.lowering)(x)
    x = batch_norm(train, self.dtype, name="bn")(x)
    return nn.relu(x) if self.relu else x


class Dropout2d(nn.Module):
  """`nn.Dropout2d`: drops whole channels (the same mask over H and W)."""
  rate: float

  @nn.compact
  def __call__(self, x, train: bool):
    return nn.Dropout(self.rate, broadcast_dims=(1, 2))(x, deterministic=not train)


def _linear_taps(in_size: int, out_size: int, align_corners: bool):
  """(i0, i1, frac) of torch's 1-D linear interpolation (`upsample_bilinear2d`): output o is
  (1 - frac[o]) * x[i0[o]] + frac[o] * x[i1[o]]."""
  dst = np.arange(out_size, dtype=np.float64)
  if align_corners:
    src = dst * ((in_size - 1) / (out_size - 1)) if out_size > 1 else np.zeros_like(dst)
  else:
    src = np.maximum((dst + 0.5) * (in_size / out_size) - 0.5, 0.0)
  i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  return i0, i1, src - i0


def _linear_weights(in_size: int, out_size: int, align_corners: bool) -> np.ndarray:
  """(out, in) matrix of `_linear_taps`."""
  i0, i1, frac = _linear_taps(in_size, out_size, align_corners)
  m = np.zeros((out_size, in_size), np.float64)
  np.add.at(m, (np.arange(out_size), i0), 1.0 - frac)
  np.add.at(m, (np.arange(out_size), i1), frac)
  return m


# Up to this many entries, an axis is resized by multiplying with its (out, in) interpolation
# matrix (matmuls run well everywhere, the model's own small maps); above, by gathering the two
# source rows of every output row, whose cost grows with out, not out x in (a full-resolution
# 512x1024 -> 1024x2048 upsampling of 19 logits: ~100 GFLOP as matmuls, 0.1 as gathers).
RESIZE_MATMUL_MAX_ENTRIES = 2**16


def _upsample_axis(x: jax.Array, axis: int, scale: int) -> jax.Array:
  """`_resize_axis` for an integer upsampling `scale` and align_corners=False.

  Output row i * scale + r reads rows i - 1 and i, or i and i + 1, with the same two weights
  for every i (the phase r): each phase is a weighted sum of `x` and `x` shifted by one row
  (edge rows repeated, as torch clamps), and the phases interleave. Elementwise: about one
  pass over memory each way, where the matrix product costs `in` multiply-adds per output
  (HRNetV2's 96 channels x2 to 128x256, batch 2, CPU: forward 29.0 -> 5.1 ms, forward +
  backward 60.1 -> 14.8 ms; torch 5.1 / 24.3; scripts/resize_benchmark.py)."""
  n = x.shape[axis]
  i0, _, frac = _linear_taps(n, n * scale, False)
  row = 1 if n > 1 else 0  # the phases are read off row 1: row 0 may be clamped
  rows = functools.partial(jax.lax.slice_in_dim, x, axis=axis)
  previous = jnp.concatenate([rows(0, 1), rows(0, n - 1)], axis)
  following = jnp.concatenate([rows(1, n), rows(n - 1, n)], axis)
  phases = []
  for r in range(scale):
    f = frac[row * scale + r]
    lo, hi = (previous, x) if i0[row * scale + r] < row else (x, following)
    phases.append(lo * jnp.asarray(1 - f, x.dtype) + hi * jnp.asarray(f, x.dtype))
  y = jnp.stack(phases, axis + 1)
  return y.reshape(x.shape[:axis] + (n * scale,) + x.shape[axis + 1:])


def _resize_axis(x: jax.Array, axis: int, out_size: int, align_corners: bool) -> jax.Array:
  """torch's 1-D linear interpolation of NHWC `x` along `axis` (1: H, 2: W)."""
  in_size = x.shape[axis]
  if out_size == in_size:  # torch copies the rows either way
    return x
  if not align_corners and out_size > in_size and out_size % in_size == 0:
    return _upsample_axis(x, axis, out_size // in_size)
  return _interpolate_axis(x, axis, out_size, align_corners)


def _interpolate_axis(x: jax.Array, axis: int, out_size: int, align_corners: bool):
  """`_resize_axis` for any sizes: the interpolation matrix product or the two-tap gather."""
  in_size = x.shape[axis]
  hp = jax.lax.Precision.HIGHEST
  if out_size * in_size <= RESIZE_MATMUL_MAX_ENTRIES:
    m = jnp.asarray(_linear_weights(in_size, out_size, align_corners), x.dtype)
    spec = "oh,bhwc->bowc" if axis == 1 else "ow,bhwc->bhoc"
    return jnp.einsum(spec, m, x, precision=hp)
  i0, i1, frac = _linear_taps(in_size, out_size, align_corners)
  shape = [1] * x.ndim
  shape[axis] = out_size
  w = jnp.asarray(frac, x.dtype).reshape(shape)
  return jnp.take(x, i0, axis) * (1 - w) + jnp.take(x, i1, axis) * w


def resize_bilinear(x: jax.Array, size: Sequence[int], align_corners: bool = False) -> jax.Array:
  """Bilinear resize of NHWC `x` to `size` = (H, W), exactly as torch `F.interpolate`.

  Separable: one axis at a time; an integer upsampling as interleaved two-row phases, any
  other size as a small interpolation matrix product or, for large axes, a two-tap gather
  (`RESIZE_MATMUL_MAX_ENTRIES`); the same weights every way. Unlike
  `jax.image.resize`, it never antialiases when shrinking, as torch.
  """
  h, w = int(size[0]), int(size[1])
  if (h, w) == tuple(x.shape[1:3]):
    return x
  return _resize_axis(_resize_axis(x, 1, h, align_corners), 2, w, align_corners)


def resize_nearest(x: jax.Array, size: Sequence[int]) -> jax.Array:
  """Nearest resize of NHWC `x`, torch `mode='nearest'`: src = floor(dst * in / out)."""
  h, w = int(size[0]), int(size[1])
  ih = np.minimum(np.floor(np.arange(h) * (x.shape[1] / h)).astype(np.int32), x.shape[1] - 1)
  iw = np.minimum(np.floor(np.arange(w) * (x.shape[2] / w)).astype(np.int32), x.shape[2] - 1)
  return x[:, ih][:, :, iw]
