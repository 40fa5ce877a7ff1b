"""flaseg.models.conv: the CPU matmul lowering of convolutions equals lax's convolution in
value, input gradient and weight gradient, and is the path the CPU actually compiles."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from flaseg.models import conv as conv_lib
from flaseg.models.layers import conv
from flaseg.models.lowering import Lowering

HI = lax.Precision.HIGHEST

# (H, W, Cin, Cout, kernel, stride, dilation, padding): H != W everywhere; odd sizes with
# strides, asymmetric and zero padding, 1x1 strided shortcuts, the 7x7 stem.
CASES = [
    (9, 13, 5, 6, 3, 1, 1, ((1, 1), (1, 1))),
    (9, 13, 5, 6, 3, 1, 2, ((2, 2), (2, 2))),
    (11, 8, 4, 7, 3, 1, 4, ((4, 4), (4, 4))),
    (9, 13, 5, 6, 3, 1, 1, ((0, 0), (0, 0))),
    (9, 13, 5, 6, 3, 1, 1, ((0, 2), (1, 0))),
    (9, 12, 5, 6, 3, 2, 1, ((1, 1), (1, 1))),
    (10, 7, 3, 4, 3, 2, 2, ((2, 2), (2, 2))),
    (15, 10, 3, 4, 7, 2, 1, ((3, 3), (3, 3))),
    (9, 13, 6, 5, 1, 1, 1, ((0, 0), (0, 0))),
    (9, 13, 6, 5, 1, 2, 1, ((0, 0), (0, 0))),
    (9, 13, 6, 5, 1, 1, 1, ((1, 0), (0, 1))),
]


def _lax(x, w, stride, dilation, padding):
  return lax.conv_general_dilated(x, w, (stride, stride), padding, rhs_dilation=(dilation,) * 2,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HI)


@pytest.mark.parametrize("h,w,cin,cout,k,stride,dilation,padding", CASES)
@pytest.mark.parametrize("batch", [1, 3])
def test_value_and_gradients_equal_lax(h, w, cin, cout, k, stride, dilation, padding, batch):
  rng = np.random.default_rng(k * 100 + stride * 10 + dilation)
  x = jnp.asarray(rng.standard_normal((batch, h, w, cin)), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((k, k, cin, cout)), jnp.float32)
  ref_y, ref_vjp = jax.vjp(lambda a, b: _lax(a, b, stride, dilation, padding), x, kernel)
  dy = jnp.asarray(rng.standard_normal(ref_y.shape), jnp.float32)

  def ours(a, b):
    return conv_lib.conv_general_dilated(a, b, (stride, stride), padding,
                                         rhs_dilation=(dilation, dilation),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                         precision=HI)
  y, vjp = jax.jit(lambda a, b: jax.vjp(ours, a, b))(x, kernel)
  np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)
  for got, ref in zip(vjp(dy), ref_vjp(dy)):
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


def test_cpu_compiles_the_matmul_path():
  """On CPU the weight gradient is K*K dots and a 1x1 conv has no convolution at all; the
  platform-dependent switch leaves no conditional behind."""
  x = jnp.ones((2, 12, 10, 8))

  def grads(k):
    kernel = jnp.ones((k, k, 8, 16))
    f = lambda w: conv_lib.conv_general_dilated(
        x, w, (1, 1), ((k // 2, k // 2),) * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()
    return jax.jit(jax.grad(f)).lower(kernel).as_text("hlo")

  one, three = grads(1), grads(3)
  assert "convolution(" not in one and "dot(" in one
  assert three.count("dot(") == 9, three.count("dot(")
  assert "conditional(" not in three


def test_strided_input_gradient_is_one_matmul_not_a_dilated_convolution():
  """A strided KxK conv's input gradient on CPU is one dot spread back with interior pads;
  XLA's own (a convolution over the zero-dilated dy, run outside its fast conv library) is
  absent from the compiled gradient. Its values: test_value_and_gradients_equal_lax."""
  f = lambda x, w: conv_lib.conv_general_dilated(
      x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()
  text = jax.jit(jax.grad(f)).lower(jnp.ones((2, 12, 10, 8)), jnp.ones((3, 3, 8, 16))).as_text(
      "hlo")
  assert " convolution(" not in text and text.count(" dot(") == 1, text


def test_other_layouts_fall_back_to_lax():
  """Grouped convs, string padding and NCHW go to lax unchanged."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((1, 7, 9, 4)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((3, 3, 2, 6)), jnp.float32)
  dn = ("NHWC", "HWIO", "NHWC")
  for kwargs in [dict(padding=((1, 1), (1, 1)), feature_group_count=2),
                 dict(padding="SAME", feature_group_count=2)]:
    got = conv_lib.conv_general_dilated(x, w, (1, 1), dimension_numbers=dn, **kwargs)
    ref = lax.conv_general_dilated(x, w, (1, 1), dimension_numbers=dn, **kwargs)
    np.testing.assert_array_equal(got, ref)
  xn = jnp.transpose(x, (0, 3, 1, 2))
  wn = jnp.asarray(rng.standard_normal((6, 4, 3, 3)), jnp.float32)
  np.testing.assert_array_equal(
      conv_lib.conv_general_dilated(xn, wn, (1, 1), ((1, 1), (1, 1))),
      lax.conv_general_dilated(xn, wn, (1, 1), ((1, 1), (1, 1))))


def test_flax_conv_keeps_its_parameters_and_bfloat16():
  """`layers.conv` keeps nn.Conv's parameter tree (checkpoints, converters) and computes in
  bfloat16 with float32 parameters and float32-accumulated weight gradients."""
  layer = conv(6, 3, dilation=2, dtype=jnp.bfloat16)
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 10, 7, 5)), jnp.float32)
  params = layer.init(jax.random.key(0), x)["params"]
  ref_params = nn.Conv(6, (3, 3), padding=((2, 2), (2, 2)), kernel_dilation=(2, 2),
                       use_bias=False).init(jax.random.key(0), x)["params"]
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ref_params)
  y = layer.apply({"params": params}, x)
  assert y.dtype == jnp.bfloat16
  g = jax.grad(lambda p: layer.apply({"params": p}, x).astype(jnp.float32).sum())(params)
  assert g["kernel"].dtype == jnp.float32
  ref = jax.grad(lambda w: _lax(x, w, 1, 2, ((2, 2), (2, 2))).sum())(params["kernel"])
  np.testing.assert_allclose(g["kernel"], ref, rtol=2e-2, atol=2e-2 * float(jnp.abs(ref).max()))


# (batch, H, W, Cin, Cout, dilation): "same" 3x3 convs the CPU computes as Winograd F(2x2,
# 3x3). H != W; sizes that are not a multiple of the 2*d tile (padded and cropped), one that is
# smaller than a tile, asymmetric dilation, Cin != Cout.
WINOGRAD_CASES = [
    (1, 9, 13, 128, 130, (1, 1)),
    (3, 11, 8, 128, 128, (2, 2)),
    (2, 7, 10, 129, 128, (4, 1)),
    (2, 5, 6, 128, 131, (4, 4)),
]


def _tap_windows_float64(x, dilation):
  """The 9 windows of the "same"-padded x in float64 numpy: window [i][j] at a pixel is
  x_pad[pixel + (i, j) * d]."""
  x = np.asarray(x, np.float64)
  (dh, dw), (_, h, wd, _) = dilation, x.shape
  xp = np.pad(x, ((0, 0), (dh, dh), (dw, dw), (0, 0)))
  return [[xp[:, i * dh:i * dh + h, j * dw:j * dw + wd] for j in range(3)] for i in range(3)]


def _naive_conv_float64(x, w, dilation):
  """The "same" 3x3 conv as a sum over taps in float64 numpy: the independent reference."""
  w = np.asarray(w, np.float64)
  windows = _tap_windows_float64(x, dilation)
  return sum(windows[i][j] @ w[i, j] for i in range(3) for j in range(3))


# Winograd also for the tests' small maps (by default it needs 4096 output positions).
SMALL_WINOGRAD = Lowering(winograd_min_positions=1)


def _same_3x3_against_lax(batch, h, w, cin, cout, dilation):
  """A random "same" 3x3 conv through flaseg's CPU path (`SMALL_WINOGRAD`) and through lax:
  asserts the value, input and weight gradient equal lax's within 1e-5 of their largest
  entry; returns x, kernel, dy, flaseg's (y, dx, dw) and lax's."""
  rng = np.random.default_rng(cin + cout + h)
  x = jnp.asarray(rng.standard_normal((batch, h, w, cin)), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((3, 3, cin, cout)), jnp.float32)
  pad = tuple((d, d) for d in dilation)
  dn = ("NHWC", "HWIO", "NHWC")
  ref = lambda a, b: lax.conv_general_dilated(a, b, (1, 1), pad, rhs_dilation=dilation,
                                              dimension_numbers=dn)
  ours = lambda a, b: conv_lib.conv_general_dilated(a, b, (1, 1), pad, rhs_dilation=dilation,
                                                    dimension_numbers=dn,
                                                    lowering=SMALL_WINOGRAD)
  ref_y, ref_vjp = jax.vjp(ref, x, kernel)
  y, vjp = jax.jit(lambda a, b: jax.vjp(ours, a, b))(x, kernel)
  dy = jnp.asarray(rng.standard_normal(ref_y.shape), jnp.float32)
  got, want = (y, *vjp(dy)), (ref_y, *ref_vjp(dy))
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(jnp.abs(b).max()))
  return x, kernel, dy, got, want


@pytest.mark.parametrize("batch,h,w,cin,cout,dilation", WINOGRAD_CASES)
def test_winograd_equals_lax_and_is_as_accurate(batch, h, w, cin, cout, dilation):
  """Value, input gradient and weight gradient equal lax's convolution; the value's error
  against a float64 sum over taps is within 4x of lax's own float32 error."""
  x, kernel, _, (y, _, _), (ref_y, _, _) = _same_3x3_against_lax(batch, h, w, cin, cout,
                                                                 dilation)
  pad = tuple((d, d) for d in dilation)
  assert conv_lib.winograd_applies(x, kernel, (1, 1), pad, dilation, SMALL_WINOGRAD)
  exact = _naive_conv_float64(x, kernel, dilation)
  assert np.abs(np.asarray(y) - exact).max() <= 4 * np.abs(np.asarray(ref_y) - exact).max()
  np.testing.assert_array_equal(conv_lib.winograd_conv3x3(x, kernel, list(dilation)), y)


# (batch, H, W, Cin, Cout, dilation): "same" 3x3 convs below the Winograd threshold whose
# weight gradient the CPU computes as F(2x2, 3x3)'s adjoint; the same kinds of sizes as above,
# and a map one row high.
WINOGRAD_WEIGHT_GRAD_CASES = [
    (1, 9, 13, 64, 70, (1, 1)),
    (3, 11, 8, 64, 64, (2, 2)),
    (2, 7, 10, 65, 64, (4, 1)),
    (2, 1, 3, 64, 66, (1, 1)),
]


def _naive_weight_grad_float64(x, dy, dilation):
  """dW[i, j] = sum over pixels of x_pad[pixel + (i, j) * d]^T dy[pixel], in float64 numpy."""
  dy = np.asarray(dy, np.float64)
  windows = _tap_windows_float64(x, dilation)
  return np.stack([np.stack([np.einsum("nhwc,nhwo->co", windows[i][j], dy) for j in range(3)])
                   for i in range(3)])


@pytest.mark.parametrize("batch,h,w,cin,cout,dilation", WINOGRAD_WEIGHT_GRAD_CASES)
def test_winograd_weight_grad_equals_lax_and_is_as_accurate(batch, h, w, cin, cout, dilation):
  """The direct conv with F(2x2, 3x3)'s weight gradient: value, input and weight gradient
  equal lax's; the weight gradient's error against a float64 sum over pixels is within 4x of
  lax's own float32 error."""
  x, kernel, dy, (_, _, dw), (_, _, ref_dw) = _same_3x3_against_lax(batch, h, w, cin, cout,
                                                                    dilation)
  pad = tuple((d, d) for d in dilation)
  assert conv_lib.winograd_weight_grad_applies(x, kernel, (1, 1), pad, dilation,
                                               SMALL_WINOGRAD)
  exact = _naive_weight_grad_float64(x, dy, dilation)
  assert np.abs(np.asarray(dw) - exact).max() <= 4 * np.abs(np.asarray(ref_dw) - exact).max()
  np.testing.assert_array_equal(conv_lib.winograd_weight_grad(x, dy, dilation), dw)


def test_winograd_weight_grad_is_the_compiled_path_only_where_it_applies():
  """From `winograd_weight_grad_min_channels` (64) to `winograd_min_channels` (128) the
  gradient compiles to the direct conv (forward, input gradient) and one batched dot over the
  16 tile positions plus the kernel transform instead of 9 per-tap dots; below it, the taps."""
  dn = ("NHWC", "HWIO", "NHWC")

  def hlo(cin):
    f = lambda x, w: conv_lib.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                                   dimension_numbers=dn).sum()
    x = jnp.ones((2, 64, 32, cin))  # 4096 output positions
    return jax.jit(jax.value_and_grad(f, (0, 1))).lower(x, jnp.ones((3, 3, cin, 64))).as_text(
        "hlo")

  winograd_dw, taps = hlo(64), hlo(63)
  assert "convolution(" in winograd_dw and winograd_dw.count(" dot(") < 9, winograd_dw
  assert "f32[16,64,64]" in winograd_dw
  assert taps.count(" dot(") == 9


def test_winograd_is_the_compiled_path_only_where_it_applies():
  """An eligible conv and its gradients compile to dots, no convolution; fewer channels or
  output positions, bfloat16, a stride or other padding keep the direct path."""
  dn = ("NHWC", "HWIO", "NHWC")

  def hlo(cin, stride=1, padding=((1, 1), (1, 1)), dtype=jnp.float32, batch=2):
    x = jnp.ones((batch, 64, 32, cin), dtype)  # 4096 output positions at batch 2
    f = lambda w: conv_lib.conv_general_dilated(x, w, (stride, stride), padding,
                                                dimension_numbers=dn).astype(jnp.float32).sum()
    return jax.jit(jax.value_and_grad(f)).lower(jnp.ones((3, 3, cin, 128), dtype)).as_text(
        "hlo")

  assert "convolution(" not in hlo(128)
  for text in (hlo(127), hlo(128, batch=1), hlo(128, stride=2),
               hlo(128, padding=((0, 0), (0, 0))), hlo(128, dtype=jnp.bfloat16)):
    assert "convolution(" in text


def test_direct_lowering_counts_the_direct_flops():
  """With `Lowering(conv='direct')` an eligible conv lowers as the direct conv (2 * Cin*Cout
  FLOPs per output and kernel tap inside the image: XLA skips the zero padding); with the
  default, Winograd executes its 16 matmuls over the 2x2 tiles and little else."""
  x = jax.ShapeDtypeStruct((2, 16, 12, 128), jnp.float32)
  w = jax.ShapeDtypeStruct((3, 3, 128, 128), jnp.float32)
  def flops(lowering):
    f = lambda a, b: conv_lib.conv_general_dilated(  # noqa: E731
        a, b, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
        lowering=lowering)
    return jax.jit(f).lower(x, w).cost_analysis()["flops"]
  taps_h, taps_w = 16 * 3 - 2, 12 * 3 - 2  # the first and last row (column) lose a tap
  direct = 2 * 2 * taps_h * taps_w * 128 * 128
  winograd = 2 * 16 * (2 * 8 * 6) * 128 * 128  # 16 matmuls over 2 x 8 x 6 tiles
  assert winograd <= flops(SMALL_WINOGRAD) < 1.1 * winograd
  direct_lowering = Lowering(conv="direct", winograd_min_positions=1)
  assert flops(direct_lowering) == pytest.approx(direct, rel=1e-3)
