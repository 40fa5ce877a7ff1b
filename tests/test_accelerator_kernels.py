"""The accelerator kernels, checked on the CPU: the dilation-free dilated conv
(`conv.subgrid_conv`) against `lax.conv_general_dilated` and a numpy loop, outputs and both
gradients; the `jax.nn.dot_product_attention` path of `spatial_attention` against a numpy
softmax and, in every attention head, against the chunked path; and the one-line errors for
values, platforms and shapes the lowering cannot take."""
import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from flaseg import config_lib
from flaseg.errors import ConfigError
from flaseg.models import build_model, init_variables
from flaseg.models.attention import fused_attention, spatial_attention
from flaseg.models.conv import conv_general_dilated
from flaseg.models.lowering import Lowering, check_platforms

NHWC = ("NHWC", "HWIO", "NHWC")
HIGHEST = lax.Precision.HIGHEST


def numpy_conv(x, w, padding, dilation, groups):
  """Naive stride-1 dilated grouped conv, NHWC/HWIO, float64."""
  x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
  (pt, pb), (pl, pr) = padding
  xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  kh, kw, cin_g, cout = w.shape
  ho, wo = xp.shape[1] - dilation * (kh - 1), xp.shape[2] - dilation * (kw - 1)
  out_g = cout // groups
  y = np.zeros((x.shape[0], ho, wo, cout))
  for g in range(groups):
    xs = xp[..., g * cin_g:(g + 1) * cin_g]
    for i in range(kh):
      for j in range(kw):
        patch = xs[:, i * dilation:i * dilation + ho, j * dilation:j * dilation + wo]
        y[..., g * out_g:(g + 1) * out_g] += patch @ w[i, j, :, g * out_g:(g + 1) * out_g]
  return y


# (N, H, W, C, O, kernel, dilation, groups, padding): H != W, sizes not divisible by the
# dilation, grouped and depthwise (EfficientNet / ShuffleNet), TF-"same" asymmetric padding.
CASES = [
    (2, 13, 10, 8, 6, 3, 2, 1, None),
    (1, 11, 17, 4, 4, 3, 4, 1, None),
    (2, 9, 7, 8, 8, 3, 3, 4, None),
    (1, 12, 9, 6, 6, 5, 2, 6, ((3, 5), (4, 4))),
    (1, 10, 10, 4, 4, 3, 16, 1, None),
]


@pytest.mark.parametrize("n,h,w,c,o,k,d,g,padding", CASES)
def test_subgrid_conv_equals_lax_and_numpy(n, h, w, c, o, k, d, g, padding):
  padding = padding or ((d * (k - 1) // 2,) * 2,) * 2
  x = jax.random.normal(jax.random.key(0), (n, h, w, c))
  wt = jax.random.normal(jax.random.key(1), (k, k, c // g, o))
  dy = jax.random.normal(jax.random.key(2), numpy_conv(x, wt, padding, d, g).shape)

  def run(fn):
    y, vjp = jax.vjp(lambda a, b: fn(a, b, (1, 1), padding, rhs_dilation=(d, d),
                                     dimension_numbers=NHWC, feature_group_count=g,
                                     precision=HIGHEST), x, wt)
    return (y, *vjp(dy))
  ref = run(lax.conv_general_dilated)
  for lowering in (Lowering(dilated="subgrid"), Lowering(dilated="subgrid", conv="direct")):
    got = run(functools.partial(conv_general_dilated, lowering=lowering))
    for a, b in zip(got, ref):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4 * float(jnp.abs(b).max()))
  np.testing.assert_allclose(got[0], numpy_conv(x, wt, padding, d, g), rtol=1e-4, atol=1e-4)


def _lowered_convs(fn, platform, *args):
  text = jax.export.export(jax.jit(fn), platforms=[platform])(*args).mlir_module()
  return [line for line in text.splitlines() if "stablehlo.convolution" in line]


def test_dilated_choice_per_platform():
  """'auto': sub-grids (no kernel dilation) on CUDA only; CPU keeps its own lowering."""
  x = jax.ShapeDtypeStruct((1, 33, 33, 8), jnp.float32)
  w = jax.ShapeDtypeStruct((3, 3, 8, 8), jnp.float32)
  fn = functools.partial(conv_general_dilated, window_strides=(1, 1),
                         padding=((4, 4), (4, 4)), rhs_dilation=(4, 4), dimension_numbers=NHWC)
  cuda = _lowered_convs(fn, "cuda", x, w)
  assert len(cuda) == 1 and "rhs_dilate" not in cuda[0]
  tpu = _lowered_convs(fn, "tpu", x, w)
  assert len(tpu) == 1 and "rhs_dilate = [4, 4]" in tpu[0]
  lax_cuda = _lowered_convs(functools.partial(fn, lowering=Lowering(dilated="lax")), "cuda", x, w)
  assert "rhs_dilate = [4, 4]" in lax_cuda[0]


def numpy_attention(q, k, v, scale):
  q, k, v = (np.asarray(a, np.float64).reshape(a.shape[0], -1, a.shape[-1]) for a in (q, k, v))
  logits = np.einsum("bnd,bmd->bnm", q, k) * scale
  p = np.exp(logits - logits.max(-1, keepdims=True))
  return np.einsum("bnm,bme->bne", p / p.sum(-1, keepdims=True), v)


@pytest.mark.parametrize("d,e", [(4, 12), (16, 16), (12, 5)])
def test_xla_attention_equals_numpy(d, e):
  q = jax.random.normal(jax.random.key(0), (2, 5, 7, d))
  k = jax.random.normal(jax.random.key(1), (2, 5, 7, d))
  v = jax.random.normal(jax.random.key(2), (2, 5, 7, e))
  got = spatial_attention(q, k, v, 0.3, Lowering(attention="xla"))
  assert got.shape == (2, 5, 7, e)
  np.testing.assert_allclose(got.reshape(2, 35, e), numpy_attention(q, k, v, 0.3),
                             rtol=1e-5, atol=1e-5)


def test_values_split_into_heads_sharing_queries():
  """The head split that fits DANet's PAM (q/k 64, v 512) into cuDNN's 256, through 'xla'."""
  q = jax.random.normal(jax.random.key(0), (2, 30, 6))
  k = jax.random.normal(jax.random.key(1), (2, 30, 6))
  v = jax.random.normal(jax.random.key(2), (2, 30, 21))
  got = fused_attention(q, k, v, 0.5, "xla", max_head=8)  # 3 heads of 8
  np.testing.assert_allclose(got, numpy_attention(q, k, v, 0.5), rtol=1e-5, atol=1e-5)


# One config per head that computes its spatial attention with `spatial_attention`.
ATTENTION_CONFIGS = ["nl_cityscapes", "dnl_cityscapes", "danet_cityscapes", "cs_nl_cityscapes",
                     "isanet_cityscapes"]


@pytest.mark.parametrize("name", ATTENTION_CONFIGS)
def test_xla_attention_equals_chunked_in_head(name):
  cfg = importlib.import_module(f"configs.{name}").get_config("smoke")
  cfg.model.num_classes = 5
  images = jax.random.randint(jax.random.key(1), (2, 33, 41, 3), 0, 255).astype(jnp.uint8)
  outs = {}
  for attention in ("chunked", "xla"):
    cfg.model.lowering.attention = attention
    model = build_model(cfg.model)
    variables = dict(zip(("params", "state"),
                         init_variables(model, jax.random.key(0), images.shape)))
    outs[attention] = jax.jit(lambda v, x: model.apply(
        {"params": v["params"], **v["state"]}, x, train=False))(variables, images)
  for key in outs["chunked"]:
    np.testing.assert_allclose(outs["xla"][key], outs["chunked"][key], rtol=1e-4, atol=1e-5)


def test_config_model_attention_overrides_lowering():
  cfg = config_lib.load("configs/nl_cityscapes.py:smoke")
  cfg.model.attention = "xla"
  assert build_model(cfg.model).head.lowering.attention == "xla"


def _one_line_error(fn, *words):
  with pytest.raises(ConfigError) as err:
    fn()
  message = str(err.value)
  assert "\n" not in message and all(w in message for w in words), message


def test_bad_values_platforms_and_cudnn_fail_in_one_line():
  _one_line_error(lambda: Lowering(dilated="sub"), "config.model.lowering.dilated", "'sub'")
  _one_line_error(lambda: Lowering(attention="flash"), "config.model.lowering.attention",
                  "'flash'")
  _one_line_error(lambda: check_platforms(["metal"]), "'metal'", "cuda")
  _one_line_error(lambda: check_platforms(["tpu"], Lowering(attention="cudnn")), "'cudnn'",
                  "'tpu'")
  q = jnp.zeros((1, 4, 4, 8), jnp.bfloat16)
  if jax.default_backend() == "gpu":  # scripts/accelerator_check.sh
    return
  # Without a CUDA backend, 'cudnn' names the value and why it cannot run.
  _one_line_error(lambda: spatial_attention(q, q, q, 1.0, Lowering(attention="cudnn")),
                  "attention='cudnn'", "backend")


def test_cudnn_shapes_that_do_not_fit_fail_in_one_line(monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")  # as on a CUDA machine
  cudnn = Lowering(attention="cudnn")
  f32 = jnp.zeros((1, 4, 4, 8), jnp.float32)
  _one_line_error(lambda: spatial_attention(f32, f32, f32, 1.0, cudnn), "'cudnn'", "float32",
                  "config.model.dtype")
  q, v = jnp.zeros((1, 4, 4, 264), jnp.bfloat16), jnp.zeros((1, 4, 4, 512), jnp.bfloat16)
  _one_line_error(lambda: spatial_attention(q, q, v, 1.0, cudnn), "'cudnn'", "264", "256")
  # 'auto' takes the chunked form for the same shapes instead, and where the shapes fit but
  # cuDNN is missing (this machine) as well.
  for q in (q, q[..., :64]):
    auto = spatial_attention(q, q, v, 1.0, Lowering())
    np.testing.assert_array_equal(auto, spatial_attention(q, q, v, 1.0,
                                                          Lowering(attention="chunked")))
