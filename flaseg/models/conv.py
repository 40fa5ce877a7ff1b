"""2-D convolution with a CPU lowering built from matmuls; lax's convolution elsewhere.

`conv_general_dilated` has the signature of `lax.conv_general_dilated`, so `nn.Conv` takes it
as its `conv_general_dilated` field. `lax.platform_dependent` chooses at lowering time:

* GPU and TPU: `lax.conv_general_dilated` unchanged (cuDNN / the TPU's conv units), except
  that on CUDA (`Lowering.dilated='auto'`) a dilated stride-1 conv runs as undilated convs on
  its strided sub-grids (`subgrid_conv`); `dilated='subgrid'` does so on every platform.
* CPU (`Lowering.conv='auto'`): XLA's convolutions (YNNPACK) run a matmul at about 170-200
  GFLOP/s on the 2-core AVX-512 test machine but a conv weight gradient at 17-80 and a 1x1
  conv at 35-100 (`python scripts/conv_benchmark.py`). So
    - a 1x1 conv is a matmul over channels (a strided one subsamples first): forward, input
      and weight gradients are all matmuls;
    - a "same" 3x3 conv, stride 1, any dilation, float32, with at least
      `Lowering.winograd_min_channels` input and output channels and
      `Lowering.winograd_min_positions` output positions (ResNet layer2-4 and the heads at
      segmentation sizes) is a Winograd F(2x2, 3x3) convolution (Lavin & Gray, "Fast
      Algorithms for Convolutional Neural Networks", 2016): 16 batched matmuls with 2.25x fewer multiply-adds than the
      direct form, plus additions-only tile transforms. Its gradients are autodiff's, which are
      again 16 matmuls each (input and weight gradient), so forward and backward both run
      at 1.5-1.8x the direct conv's rate. A dilation-d conv is d*d interleaved undilated ones,
      so tiles are taken with stride d: no space-to-batch copy;
    - any other KxK conv keeps XLA's forward (near the matmul rate) and takes its weight
      gradient from K*K matmuls, one per kernel tap:
      dW[i, j] = sum_{n,h,w} x_pad[n, h*s + i*d, w*s + j*d, :]^T dy[n, h, w, :]
      (a `custom_vjp`); its input gradient is XLA's where the stride is 1, and one matmul
      spread back onto the input grid where it is not (`input_grad_by_taps`);
    - except that a "same" 3x3 stride-1 float32 conv below the Winograd channel threshold but
      with at least `Lowering.winograd_weight_grad_min_channels` channels (HRNet's 64- and
      96-channel branches) takes its weight gradient as F(2x2, 3x3)'s adjoint
      (`winograd_weight_grad`): 16 matmuls over the 2x2 tiles instead of 9 over the pixels,
      and no copy of a shifted window per tap.

Same results as `lax.conv_general_dilated` up to float rounding (tests/test_conv.py; F(2x2,
3x3) adds about 1e-6 relative error, the size of the reordering the other paths have).
Anything but NHWC/HWIO, no input dilation and one feature group goes to lax unchanged, and
so does everything with `Lowering.conv='direct'`.
"""
import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import export, lax

from flaseg.models.lowering import DEFAULT, Lowering

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
                         batch_group_count=1, precision=None, preferred_element_type=None,
                         *, lowering: Lowering = DEFAULT):
  """`lax.conv_general_dilated`, lowered as `lowering` says (see the module docstring).
  `nn.Conv` takes `functools.partial(conv_general_dilated, lowering=...)`."""
  lax_conv = functools.partial(
      lax.conv_general_dilated, window_strides=window_strides, padding=padding,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)
  simple = (_is_nhwc(dimension_numbers, lhs.ndim) and batch_group_count == 1
            and not isinstance(padding, str)
            and all(v == 1 for v in (lhs_dilation or (1, 1)))
            and preferred_element_type is None)
  plain = simple and feature_group_count == 1
  dilation = tuple(int(d) for d in (rhs_dilation or (1, 1)))
  subgrid = (simple and lowering.dilated != "lax" and dilation != (1, 1)
             and all(int(s) == 1 for s in window_strides))
  cpu_own = plain and lowering.conv == "auto"
  if not cpu_own and not subgrid:
    return lax_conv(lhs, rhs)
  cpu = lax_conv
  if cpu_own:
    strides = tuple(int(s) for s in window_strides)
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    cpu = functools.partial(_cpu_conv, strides=strides, padding=pads, dilation=dilation,
                            precision=precision, lowering=lowering)
  if not subgrid:
    return lax.platform_dependent(lhs, rhs, cpu=cpu, default=lax_conv)
  undilated = functools.partial(
      conv_general_dilated, window_strides=(1, 1), padding=((0, 0), (0, 0)),
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
      precision=precision, lowering=lowering)
  cuda = functools.partial(subgrid_conv, padding=padding, dilation=dilation,
                           conv=undilated)
  if lowering.dilated == "subgrid":
    return cuda(lhs, rhs)
  return lax.platform_dependent(lhs, rhs, cpu=cpu, cuda=cuda, default=lax_conv)


def subgrid_conv(x, w, padding, dilation, conv):
  """A stride-1 NHWC/HWIO conv at `dilation` d as undilated convs on the d_h * d_w strided
  sub-grids of the padded input: output row q*d + r reads padded rows (q + i)*d + r, i.e. tap
  i of an undilated conv over the rows r, r + d, r + 2d, ... . The sub-grids are moved into
  the batch (space-to-batch), convolved at once by `conv` (an undilated, unpadded conv) and
  interleaved back. XLA's GPU compiler lowers a dilated conv by zero-padding its kernel
  (conv_padding_legalization: a 3x3 at dilation 4 costs a 9x9); this costs a 3x3. Equal to
  `lax.conv_general_dilated` up to float rounding, gradients by autodiff (tests/test_conv.py).
  """
  n, _, _, c = x.shape
  kh, kw = w.shape[:2]
  dh, dw = dilation
  xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  ho, wo = xp.shape[1] - dh * (kh - 1), xp.shape[2] - dw * (kw - 1)
  qh, qw = -(-ho // dh), -(-wo // dw)  # output rows / columns per sub-grid
  # Whole sub-grids: qh + kh - 1 rows of each (the zeros added only feed cropped outputs).
  rows, cols = (qh + kh - 1) * dh, (qw + kw - 1) * dw
  xp = jnp.pad(xp, ((0, 0), (0, rows - xp.shape[1]), (0, cols - xp.shape[2]), (0, 0)))
  xs = xp.reshape(n, qh + kh - 1, dh, qw + kw - 1, dw, c).transpose(2, 4, 0, 1, 3, 5)
  y = conv(xs.reshape(dh * dw * n, qh + kh - 1, qw + kw - 1, c), w)
  y = y.reshape(dh, dw, n, qh, qw, -1).transpose(2, 3, 0, 4, 1, 5)
  return y.reshape(n, qh * dh, qw * dw, -1)[:, :ho, :wo]


def _cpu_conv(x, w, strides, padding, dilation, precision, lowering):
  kh, kw, cin, cout = w.shape
  if (kh, kw) == (1, 1) and padding == ((0, 0), (0, 0)):
    if strides != (1, 1):
      x = x[:, ::strides[0], ::strides[1]]
    n, h, wd, _ = x.shape
    y = jnp.dot(x.reshape(n * h * wd, cin), w.reshape(cin, cout), precision=precision)
    return y.reshape(n, h, wd, cout)
  if winograd_applies(x, w, strides, padding, dilation, lowering):
    return winograd_conv3x3(x, w, dilation, precision)
  winograd_dw = winograd_weight_grad_applies(x, w, strides, padding, dilation, lowering)
  return _conv_tap_weight_grad(x, w, strides, padding, dilation, precision, winograd_dw)


def _winograd_fits(x, w, strides, padding, dilation, min_channels, min_positions) -> bool:
  kh, kw, cin, cout = w.shape
  # A symbolic size (a `jax.export` batch or map size) counts as its least value, 1.
  positions = math.prod(1 if export.is_symbolic_dim(d) else d for d in x.shape[:3])
  return ((kh, kw) == (3, 3) and strides == (1, 1)
          and padding == ((dilation[0],) * 2, (dilation[1],) * 2)
          and x.dtype == jnp.float32 and w.dtype == jnp.float32
          and min(cin, cout) >= min_channels
          and positions >= min_positions)


def winograd_applies(x, w, strides, padding, dilation, lowering: Lowering = DEFAULT) -> bool:
  """Whether the CPU path computes this conv as Winograd F(2x2, 3x3)."""
  return _winograd_fits(x, w, strides, padding, dilation, lowering.winograd_min_channels,
                        lowering.winograd_min_positions)


def winograd_weight_grad_applies(x, w, strides, padding, dilation,
                                 lowering: Lowering = DEFAULT) -> bool:
  """Whether the CPU path computes this conv directly but its weight gradient as the adjoint
  of Winograd F(2x2, 3x3) (`winograd_weight_grad`)."""
  return (not winograd_applies(x, w, strides, padding, dilation, lowering)
          and _winograd_fits(x, w, strides, padding, dilation,
                             lowering.winograd_weight_grad_min_channels,
                             lowering.winograd_min_positions))


# F(2, 3) in 1-D: y = A^T [(G g) * (B^T d)] for 4 inputs d, 3 taps g and 2 outputs y.
_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)


def _combine(matrix, parts):
  """Stacks the rows of `matrix` applied to the list `parts` (adds and subtractions only)."""
  rows = []
  for row in matrix:
    terms = [p if c == 1 else -p if c == -1 else float(c) * p
             for c, p in zip(row, parts) if c != 0]
    rows.append(functools.reduce(jnp.add, terms))
  return jnp.stack(rows)


def _tiles(n_out, d):
  """Tiles along one axis of `n_out` outputs at dilation d: output o = t*2d + j*d + r."""
  return -(-n_out // (2 * d))


def _input_tiles(x, axis, tiles, d):
  """The 4 inputs of every tile along `axis` (padded, length >= (2*tiles + 2) * d): input m
  of tile t, residue r sits at (2t + m) * d + r. Returns 4 arrays with `axis` split into
  (tiles, d)."""
  x = lax.slice_in_dim(x, 0, (2 * tiles + 2) * d, axis=axis)
  x = x.reshape(x.shape[:axis] + (2 * tiles + 2, d) + x.shape[axis + 1:])
  return [lax.slice_in_dim(x, m, m + 2 * tiles - 1, stride=2, axis=axis) for m in range(4)]


def _winograd_input(x, dilation):
  """B^T d B of every 4x4 input tile: (16, N * tiles_h * d_h * tiles_w * d_w, C)."""
  n, h, w, c = x.shape
  (dh, dw), th, tw = dilation, _tiles(h, dilation[0]), _tiles(w, dilation[1])
  xp = jnp.pad(x, ((0, 0), (dh, (2 * th + 1) * dh - h), (dw, (2 * tw + 1) * dw - w), (0, 0)))
  v = _combine(_BT, _input_tiles(xp, 1, th, dh))     # (4, n, th, dh, W, c)
  v = _combine(_BT, _input_tiles(v, 4, tw, dw))      # (4, 4, n, th, dh, tw, dw, c)
  return v.reshape(16, -1, c)


def winograd_conv3x3(x, w, dilation=(1, 1), precision=None):
  """A "same" (padding = dilation) 3x3 NHWC/HWIO conv, stride 1, as Winograd F(2x2, 3x3).

  Every 2x2 output tile is A^T [(G g G^T) * (B^T d B)] A of its 4x4 input tile d: the 16
  elementwise products over channels are 16 (tiles, Cin) x (Cin, Cout) matmuls. Any H, W
  (the last tiles are padded and cropped) and dilation; autodiff gives the gradients.
  """
  return _winograd_remat(x, w, tuple(int(d) for d in dilation), precision)


# Rematerialised: the backward pass recomputes the transformed input v from x (and the
# transformed kernel from w) instead of keeping v, 4x the size of x, alive from the forward.
@functools.partial(jax.checkpoint, static_argnums=(2, 3))
def _winograd_remat(x, w, dilation, precision):
  n, h, wd, _ = x.shape
  cout = w.shape[-1]
  (dh, dw), th, tw = dilation, _tiles(h, dilation[0]), _tiles(wd, dilation[1])
  v = _winograd_input(x, dilation)
  u = jnp.einsum("ak,bl,klio->baio", _G, _G, w, precision=precision)
  m = jnp.einsum("tpc,tco->tpo", v, u.reshape(16, *w.shape[2:]), precision=precision)
  m = m.reshape(4, 4, n, th, dh, tw, dw, cout)
  m = _combine(_AT, list(m))                          # (2, 4, ...): columns first
  m = _combine(_AT, list(jnp.moveaxis(m, 1, 0)))      # (2 rows, 2 columns, ...)
  y = m.transpose(2, 3, 0, 4, 5, 1, 6, 7).reshape(n, th * 2 * dh, tw * 2 * dw, cout)
  return y[:, :h, :wd]


def winograd_weight_grad(x, dy, dilation=(1, 1), precision=None):
  """dW of a "same" 3x3 NHWC/HWIO conv, stride 1, as the adjoint of F(2x2, 3x3) in the kernel.

  The forward is y_tile = A^T [(G g G^T) * (B^T d B)] A, so with V = B^T d B of every input
  tile and dM = A dy_tile A^T of every 2x2 output-gradient tile (zero beyond the image),
  dU = sum_tiles V * dM (16 (Cin, tiles) x (tiles, Cout) matmuls) and dW = G^T dU G. It
  reads x and dy once each into tiles 4x their size, where the per-tap form copies a
  shifted window of dy for each of the 9 taps and runs 9 matmuls over every pixel (2.25x
  the multiply-adds). Equal to lax's weight gradient up to float rounding (tests/test_conv.py).
  """
  n, h, wd, cin = x.shape
  cout = dy.shape[-1]
  (dh, dw), th, tw = dilation, _tiles(h, dilation[0]), _tiles(wd, dilation[1])
  v = _winograd_input(x, dilation)                                  # (16, tiles, cin)
  # Output (t*2 + r)*d + residue of the forward's tiles: rows r, columns s of every tile.
  g = jnp.pad(dy, ((0, 0), (0, th * 2 * dh - h), (0, tw * 2 * dw - wd), (0, 0)))
  g = g.reshape(n, th, 2, dh, tw, 2, dw, cout).transpose(2, 5, 0, 1, 3, 4, 6, 7)
  g = _combine(_AT.T, list(g))                                      # (4 rows, 2 columns, ...)
  g = _combine(_AT.T, list(jnp.moveaxis(g, 1, 0)))                  # (4 columns, 4 rows, ...)
  du = jnp.einsum("tpc,tpo->tco", v, g.reshape(16, -1, cout), precision=precision)
  return jnp.einsum("ak,bl,baio->klio", _G, _G, du.reshape(4, 4, cin, cout),
                    precision=precision)


def _lax_nhwc(x, w, strides, padding, dilation, precision):
  return lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation,
                                  dimension_numbers=_NHWC, precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv_tap_weight_grad(x, w, strides, padding, dilation, precision, winograd_dw):
  return _lax_nhwc(x, w, strides, padding, dilation, precision)


def _tap_fwd(x, w, strides, padding, dilation, precision, winograd_dw):
  return _lax_nhwc(x, w, strides, padding, dilation, precision), (x, w)


def _tap_bwd(strides, padding, dilation, precision, winograd_dw, residuals, dy):
  x, w = residuals
  if strides == (1, 1):
    _, input_vjp = jax.vjp(lambda v: _lax_nhwc(v, w, strides, padding, dilation, precision), x)
    (dx,) = input_vjp(dy)
  else:
    dx = input_grad_by_taps(dy, w, x.shape, strides, padding, dilation, precision)
  if winograd_dw:
    dw = winograd_weight_grad(x, dy, dilation, precision)
  else:
    dw = weight_grad_by_taps(x, dy, w.shape, strides, padding, dilation, precision)
  return dx.astype(x.dtype), dw.astype(w.dtype)


def input_grad_by_taps(dy, w, input_shape: Sequence[int], strides, padding, dilation,
                       precision=None):
  """dX of a strided NHWC/HWIO conv as one (N*Ho*Wo, O) x (O, K*K*C) matmul, each tap's
  columns then spread back onto the input grid:
  dX_pad[n, h*s + i*d, w*s + j*d] += sum_o dy[n, h, w, o] W[i, j, :, o].
  XLA lowers a strided conv's input gradient as a convolution over the zero-dilated dy
  (`lhs_dilation`), which its CPU runtime runs outside its fast conv library: HRNet's
  3x3/2 fuse and transition convs took 105 ms for one 256->96 conv at 64x128 (batch 2).
  The spreading is `lax.pad` with interior padding s - 1, summed over the taps (one fusion).
  """
  kh, kw, cin, cout = w.shape
  n, h, wd, _ = input_shape
  _, ho, wo, _ = dy.shape
  (pt, pb), (pl, pr) = padding
  (sh, sw), (dh, dw) = strides, dilation
  acc = jnp.promote_types(dy.dtype, jnp.float32)
  cols = lax.dot_general(dy.reshape(n * ho * wo, cout), w.reshape(kh * kw * cin, cout),
                         (((1,), (1,)), ((), ())), precision=precision,
                         preferred_element_type=acc)
  cols = cols.reshape(n, ho, wo, kh, kw, cin)
  rows, width = h + pt + pb, wd + pl + pr  # the padded input
  dx = None
  for i in range(kh):
    for j in range(kw):
      top, left = i * dh, j * dw
      tap = lax.pad(cols[:, :, :, i, j], jnp.zeros((), acc),
                    ((0, 0, 0), (top, rows - top - (ho - 1) * sh - 1, sh - 1),
                     (left, width - left - (wo - 1) * sw - 1, sw - 1), (0, 0, 0)))
      dx = tap if dx is None else dx + tap
  return dx[:, pt:pt + h, pl:pl + wd]


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
