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
