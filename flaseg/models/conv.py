"""2-D convolution with a CPU lowering built from matmuls; lax's convolution elsewhere.

`conv_general_dilated` has the signature of `lax.conv_general_dilated`, so `nn.Conv` takes it
as its `conv_general_dilated` field. `lax.platform_dependent` chooses at lowering time:

* GPU and TPU: `lax.conv_general_dilated` unchanged (cuDNN / the TPU's conv units).
* CPU: XLA's convolutions (YNNPACK) run a matmul at about 170-200 GFLOP/s on the 2-core
  AVX-512 test machine but a conv weight gradient at 17-80 and a 1x1 conv at 35-100
  (`python scripts/conv_benchmark.py`). So
    - a 1x1 conv is a matmul over channels (a strided one subsamples first): forward, input
      and weight gradients are all matmuls;
    - a KxK conv keeps XLA's forward and input gradient (near the matmul rate) and takes its
      weight gradient from K*K matmuls, one per kernel tap:
      dW[i, j] = sum_{n,h,w} x_pad[n, h*s + i*d, w*s + j*d, :]^T dy[n, h, w, :]
      (a `custom_vjp`).

Same results as `lax.conv_general_dilated` up to float rounding (tests/test_conv.py).
Anything but NHWC/HWIO, no input dilation and one feature group goes to lax unchanged.
"""
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1),
                                 out_spec=(0, 3, 1, 2))


def _is_nhwc(dimension_numbers, ndim):
  if dimension_numbers is None or ndim != 4:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return dimension_numbers == _NHWC
  return tuple(dimension_numbers) == ("NHWC", "HWIO", "NHWC")


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated`, lowered through matmuls on CPU (see the module docstring)."""
  lax_conv = functools.partial(
      lax.conv_general_dilated, window_strides=window_strides, padding=padding,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)
  plain = (_is_nhwc(dimension_numbers, lhs.ndim) and feature_group_count == 1
           and batch_group_count == 1 and not isinstance(padding, str)
           and all(v == 1 for v in (lhs_dilation or (1, 1)))
           and preferred_element_type is None)
  if not plain:
    return lax_conv(lhs, rhs)
  strides = tuple(int(s) for s in window_strides)
  dilation = tuple(int(d) for d in (rhs_dilation or (1, 1)))
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  cpu = functools.partial(_cpu_conv, strides=strides, padding=pads, dilation=dilation,
                          precision=precision)
  return lax.platform_dependent(lhs, rhs, cpu=cpu, default=lax_conv)


def _cpu_conv(x, w, strides, padding, dilation, precision):
  kh, kw, cin, cout = w.shape
  if (kh, kw) == (1, 1) and padding == ((0, 0), (0, 0)):
    if strides != (1, 1):
      x = x[:, ::strides[0], ::strides[1]]
    n, h, wd, _ = x.shape
    y = jnp.dot(x.reshape(n * h * wd, cin), w.reshape(cin, cout), precision=precision)
    return y.reshape(n, h, wd, cout)
  return _conv_tap_weight_grad(x, w, strides, padding, dilation, precision)


def _lax_nhwc(x, w, strides, padding, dilation, precision):
  return lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation,
                                  dimension_numbers=_NHWC, precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv_tap_weight_grad(x, w, strides, padding, dilation, precision):
  return _lax_nhwc(x, w, strides, padding, dilation, precision)


def _tap_fwd(x, w, strides, padding, dilation, precision):
  return _lax_nhwc(x, w, strides, padding, dilation, precision), (x, w)


def _tap_bwd(strides, padding, dilation, precision, residuals, dy):
  x, w = residuals
  _, input_vjp = jax.vjp(lambda v: _lax_nhwc(v, w, strides, padding, dilation, precision), x)
  (dx,) = input_vjp(dy)
  dw = weight_grad_by_taps(x, dy, w.shape, strides, padding, dilation, precision)
  return dx, dw.astype(w.dtype)


_conv_tap_weight_grad.defvjp(_tap_fwd, _tap_bwd)


def weight_grad_by_taps(x, dy, kernel_shape: Sequence[int], strides, padding, dilation,
                        precision=None):
  """dW of an NHWC/HWIO conv as one (C, N*H*W) x (N*H*W, O) matmul per kernel tap.

  Stride 1 shifts the output gradient against the unpadded input,
  dW[i, j] = sum_q x[q]^T dy[q - (i, j) * d + pad_lo], so only dy (usually the narrower) is
  copied per tap; a strided conv shifts the padded input instead.
  """
  kh, kw, cin, cout = kernel_shape
  n, h, w, _ = x.shape
  _, ho, wo, _ = dy.shape
  (pt, _), (pl, _) = padding
  acc = jnp.promote_types(x.dtype, jnp.float32)  # bfloat16 accumulates in float32
  dot = functools.partial(lax.dot_general, dimension_numbers=(((0,), (0,)), ((), ())),
                          precision=precision, preferred_element_type=acc)
  taps = []
  if strides == (1, 1):
    # dy rows pt - i*d .. pt - i*d + h - 1 for every tap i, zero outside [0, ho).
    top, left = max(0, (kh - 1) * dilation[0] - pt), max(0, (kw - 1) * dilation[1] - pl)
    dyp = jnp.pad(dy, ((0, 0), (top, max(0, pt + h - ho)), (left, max(0, pl + w - wo)),
                       (0, 0)))
    x_flat = x.reshape(n * h * w, cin)
    for i in range(kh):
      for j in range(kw):
        r, c = top + pt - i * dilation[0], left + pl - j * dilation[1]
        window = lax.slice(dyp, (0, r, c, 0), (n, r + h, c + w, cout))
        taps.append(dot(x_flat, window.reshape(n * h * w, cout)))
  else:
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    dy_flat = dy.reshape(n * ho * wo, cout)
    for i in range(kh):
      for j in range(kw):
        start = (0, i * dilation[0], j * dilation[1], 0)
        limit = (n, start[1] + (ho - 1) * strides[0] + 1,
                 start[2] + (wo - 1) * strides[1] + 1, cin)
        window = lax.slice(xp, start, limit, (1, strides[0], strides[1], 1))
        taps.append(dot(window.reshape(n * ho * wo, cin), dy_flat))
  return jnp.stack(taps).reshape(kh, kw, cin, cout)
