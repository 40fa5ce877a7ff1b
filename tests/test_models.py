"""Backbone, resize and FLANet against independent references (numpy loops, torch formulas)."""
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from flaseg import config_lib
from flaseg.models import build_model, layers, resnet
from flaseg.models.heads import fla


def _torch_linear_src(dst, in_size, out_size, align_corners):
  """torch `area_pixel_compute_source_index` for linear modes, one index at a time."""
  if align_corners:
    return dst * (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
  return max((dst + 0.5) * in_size / out_size - 0.5, 0.0)


def _naive_bilinear(x, out_h, out_w, align_corners):
  b, h, w, c = x.shape
  out = np.zeros((b, out_h, out_w, c))
  for i in range(out_h):
    sy = _torch_linear_src(i, h, out_h, align_corners)
    y0 = min(int(np.floor(sy)), h - 1); y1 = min(y0 + 1, h - 1); fy = sy - y0
    for j in range(out_w):
      sx = _torch_linear_src(j, w, out_w, align_corners)
      x0 = min(int(np.floor(sx)), w - 1); x1 = min(x0 + 1, w - 1); fx = sx - x0
      out[:, i, j] = ((1 - fy) * ((1 - fx) * x[:, y0, x0] + fx * x[:, y0, x1])
                      + fy * ((1 - fx) * x[:, y1, x0] + fx * x[:, y1, x1]))
  return out


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(11, 7), (3, 2), (5, 9)])
def test_resize_bilinear_matches_torch_formula(align_corners, size):
  x = np.random.default_rng(0).normal(size=(2, 5, 4, 3))
  got = layers.resize_bilinear(jnp.asarray(x, jnp.float32), size, align_corners)
  np.testing.assert_allclose(got, _naive_bilinear(x, *size, align_corners), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,scale", [((1, 3), (4, 3)), ((2, 5), (2, 8)), ((4, 3), (3, 1))])
def test_integer_upsampling_matches_torch_formula_in_values_and_gradients(shape, scale):
  """An integer upsampling runs as interleaved two-row phases (no matrix product, no gather):
  values against the torch formula, the gradient against the adjoint of the naive loop
  (its matrix applied to dy), one- and two-row inputs (clamped edges) included."""
  h, w = shape
  size = (h * scale[0], w * scale[1])
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, h, w, 3))
  dy = rng.normal(size=(2, *size, 3))
  resize = lambda v: layers.resize_bilinear(v, size)
  got, vjp = jax.vjp(resize, jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(got, _naive_bilinear(x, *size, False), rtol=1e-5, atol=1e-5)
  basis = np.eye(h * w).reshape(h * w, h, w, 1)
  matrix = _naive_bilinear(basis, *size, False).reshape(h * w, -1)  # (in, out) positions
  want = np.einsum("io,boc->bic", matrix, dy.reshape(2, -1, 3)).reshape(x.shape)
  np.testing.assert_allclose(vjp(jnp.asarray(dy, jnp.float32))[0], want, rtol=1e-5, atol=1e-5)
  jaxpr = str(jax.make_jaxpr(resize)(jnp.asarray(x, jnp.float32)))
  assert "dot_general" not in jaxpr and "gather" not in jaxpr


def test_resize_nearest_matches_torch_formula():
  x = np.arange(2 * 5 * 3).reshape(1, 5, 3, 2).astype(np.float32)
  got = np.asarray(layers.resize_nearest(jnp.asarray(x), (10, 7)))
  for i in range(10):
    for j in range(7):
      np.testing.assert_array_equal(got[0, i, j], x[0, int(np.floor(i * 5 / 10)),
                                                     int(np.floor(j * 3 / 7))])


@pytest.mark.parametrize("stem,os_,depth", [("torchvision", 32, 18), ("v1c", 16, 50),
                                             ("deep", 8, 18)])
def test_resnet_feature_shapes(stem, os_, depth):
  model = resnet.ResNet(depth=depth, stem=stem, output_stride=os_, width=8)
  x = jnp.zeros((1, 64, 96, 3))
  variables = model.init(jax.random.key(0), x)
  feats = model.apply(variables, x)
  chans = resnet.feature_channels(depth, 8)
  strides = {8: (4, 8, 8, 8), 16: (4, 8, 16, 16), 32: (4, 8, 16, 32)}[os_]
  for key, s in zip(("c2", "c3", "c4", "c5"), strides):
    assert feats[key].shape == (1, 64 // s, 96 // s, chans[key])
  stem_names = {"torchvision": 1, "v1c": 3, "deep": 3}[stem]
  assert sum(k.startswith("stem_conv") for k in variables["params"]) == stem_names


def _default_platform_eqns(jaxpr):
  """Equations, inlining the platform-independent branch of `lax.platform_dependent` (where
  flaseg.models.conv puts lax's convolution; the CPU branch uses matmuls)."""
  for e in jaxpr.eqns:
    platforms = e.params.get("branches_platforms") if e.primitive.name == "cond" else None
    if platforms:
      yield from _default_platform_eqns(e.params["branches"][list(platforms).index(None)].jaxpr)
    else:
      yield e


def _conv_windows(model, x):
  """(rhs_dilation, padding) of every convolution, in execution order."""
  v = model.init(jax.random.key(0), x)
  eqns = _default_platform_eqns(jax.make_jaxpr(lambda v: model.apply(v, x))(v).jaxpr)
  return [(e.params["rhs_dilation"], e.params["padding"]) for e in eqns
          if e.primitive.name == "conv_general_dilated"]


@pytest.mark.parametrize("contract,multi_grid,expected", [
    (False, None, {2: 6, 4: 3}),          # FLANet: every dilated block at 2 / 4
    (True, None, {2: 5 + 1, 4: 2}),       # mmseg V1c: first blocks at 1 / 2
    (False, (1, 2, 4), {2: 6 + 1, 4: 1}),  # multi-grid: layer4 blocks at 1, 2, 4
])
def test_resnet_dilations_and_torch_padding(contract, multi_grid, expected):
  model = resnet.ResNet(depth=50, stem="v1c", output_stride=8, contract_dilation=contract,
                        multi_grid=multi_grid, width=8)
  windows = _conv_windows(model, jnp.zeros((1, 32, 32, 3)))
  counts = {d: sum(w[0] == (d, d) for w in windows) for d in (2, 4)}
  assert counts == expected
  for dilation, padding in windows:   # symmetric torch padding dilation * (k - 1) // 2
    assert padding[0][0] == padding[0][1] and padding[1][0] == padding[1][1]
  assert ((4, 4), ((4, 4), (4, 4))) in [(d, tuple(map(tuple, p))) for d, p in windows] or \
      expected.get(4, 0) == 0


def _fla_official_numpy(x, w1, b1, w2, b2, gamma):
  """Transcription of the official FullyAttentionalBlock forward (NCHW, torch ops as numpy,
  `.repeat` over the batch included) up to the residual."""
  B, C, H, W = x.shape
  feat_h = x.transpose(0, 3, 1, 2).reshape(B * W, C, H)
  feat_w = x.transpose(0, 2, 1, 3).reshape(B * H, C, W)
  enc_h = x.mean(3).transpose(0, 2, 1) @ w1.T + b1        # (B, H, C)
  enc_w = x.mean(2).transpose(0, 2, 1) @ w2.T + b2        # (B, W, C)
  e_h = feat_h @ np.tile(enc_h, (W, 1, 1))
  e_w = feat_w @ np.tile(enc_w, (H, 1, 1))
  sm = lambda e: np.exp(e - e.max(-1, keepdims=True)) / np.exp(e - e.max(-1, keepdims=True)).sum(-1, keepdims=True)
  aug_h = (sm(e_h) @ feat_h).reshape(B, W, C, H).transpose(0, 2, 3, 1)
  aug_w = (sm(e_w) @ feat_w).reshape(B, H, C, W).transpose(0, 2, 1, 3)
  return gamma * (aug_h + aug_w) + x


def _fla_per_sample_loops(x, enc_h, enc_w):
  """The per-sample FLA math with explicit loops, NHWC."""
  B, H, W, C = x.shape
  out = np.zeros_like(x)
  for b in range(B):
    for w in range(W):
      e = np.array([[sum(x[b, h, w, c] * enc_h[b, h, d] for h in range(H)) for d in range(C)]
                    for c in range(C)])
      a = np.exp(e - e.max(1, keepdims=True)); a /= a.sum(1, keepdims=True)
      for h in range(H):
        out[b, h, w] += a @ x[b, h, w]
    for h in range(H):
      e = np.array([[sum(x[b, h, w, c] * enc_w[b, w, d] for w in range(W)) for d in range(C)]
                    for c in range(C)])
      a = np.exp(e - e.max(1, keepdims=True)); a /= a.sum(1, keepdims=True)
      for w in range(W):
        out[b, h, w] += a @ x[b, h, w]
  return out


def test_fla_core_matches_per_sample_loops():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 3, 5, 4))
  enc_h, enc_w = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))
  got = fla.fla_attention(jnp.asarray(x, jnp.float32), jnp.asarray(enc_h, jnp.float32),
                          jnp.asarray(enc_w, jnp.float32))
  np.testing.assert_allclose(got, _fla_per_sample_loops(x, enc_h, enc_w), rtol=1e-5, atol=1e-5)


def test_fla_block_equals_official_code_at_batch_1_and_not_mixing_samples():
  rng = np.random.default_rng(2)
  C, H, W = 6, 4, 7
  block = fla.FullyAttentionalBlock()
  x = rng.normal(size=(2, H, W, C)).astype(np.float32)
  variables = block.init(jax.random.key(0), jnp.asarray(x))
  p = jax.tree.map(np.asarray, variables["params"])
  p["gamma"] = np.float32(0.7)
  w1, b1 = p["conv1"]["kernel"].T, p["conv1"]["bias"]      # torch Linear layout (out, in)
  w2, b2 = p["conv2"]["kernel"].T, p["conv2"]["bias"]
  # The residual part (before the block's conv) through a bound submodule.
  def pre_conv(x):
    enc_h = x.mean(2) @ w1.T + b1
    enc_w = x.mean(1) @ w2.T + b2
    return x + p["gamma"] * fla.fla_attention(x, enc_h, enc_w)
  ours = np.asarray(pre_conv(jnp.asarray(x)))
  official = lambda x: _fla_official_numpy(x.transpose(0, 3, 1, 2).astype(np.float64), w1, b1,
                                          w2, b2, 0.7).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(ours[:1], official(x[:1]), rtol=1e-4, atol=1e-4)  # B=1 agrees
  # With B=2 the official `.repeat` pairs columns with the other sample's keys: flaseg must
  # compute sample 1 from sample 1 alone.
  alone = np.asarray(pre_conv(jnp.asarray(x[1:])))
  np.testing.assert_allclose(ours[1:], alone, rtol=1e-5, atol=1e-5)
  assert np.abs(ours[1:] - official(x)[1:]).max() > 1e-3
  # gamma = 0 at init: the block starts as conv(x).
  assert float(variables["params"]["gamma"]) == 0.0


def _fla_cfg(**backbone):
  cfg = config_lib.load("configs/fla_cityscapes.py").model
  cfg.backbone.update(backbone)
  return cfg


def test_flanet_cityscapes_parameter_count_and_shapes():
  model = build_model(_fla_cfg())
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 97, 129, 3))))
  n = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes["params"]))
  # deep-stem ResNet-101 (42.7M) + FLANet head (27.3M: 2 convs 11.8M, FLA 2.9M, outputs 12.7M).
  assert n == 70_002_810, n
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 97, 129, 3))), shapes)
  assert {k: v.shape for k, v in out.items()} == {k: (2, 97, 129, 19) for k in ("out", "aux1", "aux2")}


def test_flanet_tiny_any_batch_and_non_square_with_finite_grads():
  cfg = _fla_cfg(depth=18, width=8)
  cfg.head_kwargs = ml_collections.ConfigDict(dict(channels=16, aux_channels=8))
  cfg.num_classes = 5
  model = build_model(cfg)
  for b, (h, w) in [(1, (40, 24)), (3, (24, 56))]:
    x = jnp.asarray(np.random.default_rng(b).uniform(0, 255, (b, h, w, 3)), jnp.float32)
    v = model.init(jax.random.key(0), x)
    def loss(p):
      out, _ = model.apply({**v, "params": p}, x, train=True, mutable=["batch_stats"],
                           rngs={"dropout": jax.random.key(1)})
      return sum(jnp.mean(o ** 2) for o in out.values())
    g = jax.jit(jax.grad(loss))(v["params"])
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(g))
    assert model.apply(v, x)["out"].shape == (b, h, w, 5)


def test_bfloat16_compute_keeps_float32_params():
  cfg = _fla_cfg(depth=18, width=8)
  cfg.head_kwargs = ml_collections.ConfigDict(dict(channels=16, aux_channels=8))
  cfg.dtype = "bfloat16"
  model = build_model(cfg)
  x = jnp.ones((1, 32, 48, 3))
  v = model.init(jax.random.key(0), x)
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(v["params"]))
  out = model.apply(v, x)["out"]
  assert out.dtype == jnp.float32 and np.isfinite(out).all()


def test_bad_model_config_names_the_key():
  cfg = _fla_cfg()
  cfg.backbone.depht = 50
  with pytest.raises(ValueError, match="config.model.backbone.depht"):
    build_model(cfg)
  cfg = _fla_cfg()
  cfg.head = "nope"
  with pytest.raises(ValueError, match="config.model.head='nope'"):
    build_model(cfg)


@pytest.mark.parametrize("align_corners", [False, True])
def test_large_resizes_gather_the_same_taps(align_corners):
  """Above RESIZE_MATMUL_MAX_ENTRIES an axis is resized by gathering its two taps instead of
  a matrix product: the same torch formula (a full-resolution logits upsampling would cost
  ~1000x more as matmuls)."""
  x = np.random.default_rng(1).normal(size=(1, 300, 7, 2))  # 300 -> 601 rows: gathered
  size = (601, 5)  # not an integer scale (those run as phases)
  assert 601 * 300 > layers.RESIZE_MATMUL_MAX_ENTRIES >= 5 * 7
  resize = lambda v: layers.resize_bilinear(v, size, align_corners)
  got = resize(jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(got, _naive_bilinear(x, *size, align_corners), rtol=1e-5,
                             atol=1e-5)
  assert "gather" in str(jax.make_jaxpr(resize)(jnp.asarray(x, jnp.float32)))


def test_add_relu_equals_relu_of_the_sum_in_values_and_gradients():
  """layers.add_relu against numpy: max(y + x, 0) with NaN kept, gradient w * [y + x > 0] to
  both inputs (relu'(0) = 0, as torch), exact ties y = -x included; mixed dtypes and
  broadcasting promote as `y + x` does."""
  rng = np.random.default_rng(0)
  y = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
  x = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
  x[0, 0] = -y[0, 0]  # exact ties: output 0, gradient 0
  y[1, 1, 1, 1] = np.nan
  w = rng.normal(size=y.shape).astype(np.float32)
  want = np.maximum(y + x, 0)
  got = layers.add_relu(jnp.asarray(y), jnp.asarray(x))
  np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
  np.testing.assert_allclose(got, want, rtol=0, atol=0)
  gy, gx = jax.grad(lambda a, b: jnp.nansum(w * layers.add_relu(a, b)), (0, 1))(y, x)
  mask = (y + x > 0)
  np.testing.assert_array_equal(gy, w * mask)
  np.testing.assert_array_equal(gx, w * mask)
  half = layers.add_relu(jnp.asarray(y, jnp.bfloat16), jnp.asarray(x[:1, :1]))
  assert half.dtype == jnp.float32 and half.shape == y.shape
  gb = jax.grad(lambda b: layers.add_relu(jnp.asarray(y), b).sum())(jnp.asarray(x[:1, :1]))
  np.testing.assert_array_equal(gb, (y + x[:1, :1] > 0).sum((0, 1), keepdims=True))


def _largest_fusion_inputs(compiled) -> int:
  return max(s.count("%") for s in re.findall(r"= [^\n]*? fusion\(([^\n]*?)\), kind",
                                              compiled.as_text()))


def test_residual_chains_compile_without_recomputing_earlier_blocks():
  """XLA's CPU fusion copies elementwise producers into every fusible consumer; through a
  chain of residual blocks relu(y + x) and its autodiff gradient were recomputed by every
  later block (quadratic; HRNetV2-W48 at 256x512, batch 2: train step 7.2 s before, 4.5-5.0 s
  after). With `add_relu` the largest fusion of the forward and of the gradient does not grow
  with depth."""
  class Chain(nn.Module):
    blocks: int

    @nn.compact
    def __call__(self, x, train):
      for k in range(self.blocks):
        x = resnet.BasicBlock(8, name=f"b{k}")(x, train)
      return x

  sizes = {}
  for blocks in (3, 9):
    m = Chain(blocks)
    x = jnp.ones((2, 12, 16, 8))
    v = m.init(jax.random.key(0), x, False)

    def loss(p, x):
      out, _ = m.apply({**v, "params": p}, x, True, mutable=["batch_stats"])
      return (out ** 2).mean()
    fwd = jax.jit(lambda v, x: m.apply(v, x, False)).lower(v, x).compile()
    grad = jax.jit(jax.grad(loss)).lower(v["params"], x).compile()
    sizes[blocks] = (_largest_fusion_inputs(fwd), _largest_fusion_inputs(grad))
  assert sizes[9] == sizes[3], sizes
