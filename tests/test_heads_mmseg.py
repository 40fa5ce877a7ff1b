"""mmseg attention heads (attention-heads.md §7): every attention core against a naive numpy
loop over the reference (torch, NCHW flattened row-major) semantics; the DNL, CC (with its
recurrence, block and whole CCHead) and ISA blocks with their real projections, every weight
and BN statistic random, against numpy written from mmseg's code (tests/numpy_layers.py), not
from flaseg's cores; the blocks' identity at init, the EMA bases, and every head and config end
to end on tiny shapes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaseg.models import HEADS
from flaseg.models.attention import spatial_attention
from flaseg.models.heads import ccnet as cc, danet, dnl, emanet as ema, isanet as isa, nl
from flaseg.models.lowering import DEFAULT
import numpy_layers as npl

TOL = dict(rtol=1e-5, atol=1e-5)
B, H, W = 2, 3, 4   # H != W


def _softmax(x):
  e = np.exp(x - x.max())
  return e / e.sum()


def _f32(*arrays):
  return [jnp.asarray(a, jnp.float32) for a in arrays]


def _positions(h, w):
  return [(i, j) for i in range(h) for j in range(w)]


# Tiny widths for the whole-head tests (fake ResNet features: c4 16, c5 32 channels).
TINY = {
    "nl": dict(channels=16, aux_channels=8),
    "dnl": dict(channels=16, aux_channels=8),
    "danet": dict(channels=16, pam_channels=4, aux_channels=8),
    "emanet": dict(channels=16, ema_channels=8, num_bases=4, aux_channels=8),
    "isanet": dict(channels=16, isa_channels=8, down_factor=(2, 3), aux_channels=8),
    "ccnet": dict(channels=16, aux_channels=8),
}
KEYS = {"danet": {"out", "pam", "cam", "aux"}}


def _feats(batch, h=5, w=7):
  ks = jax.random.split(jax.random.key(batch), 4)
  return {"c2": jax.random.normal(ks[0], (batch, h, w, 8)),
          "c3": jax.random.normal(ks[1], (batch, h, w, 16)),
          "c4": jax.random.normal(ks[2], (batch, h, w, 16)),
          "c5": jax.random.normal(ks[3], (batch, h, w, 32))}


def naive_nl(theta, phi, g, scale):
  """out[b, n] = sum_m softmax_m(theta[b, n] . phi[b, m] * scale) g[b, m], one pixel at a time."""
  b_, h, w, _ = theta.shape
  out = np.zeros(g.shape)
  for b in range(b_):
    pos = _positions(h, w)
    for (y, x) in pos:
      a = _softmax(np.array([theta[b, y, x] @ phi[b, i, j] * scale for (i, j) in pos]))
      out[b, y, x] = sum(a[m] * g[b, i, j] for m, (i, j) in enumerate(pos))
  return out


def naive_dnl(theta, phi, g, mask, scale, temp):
  """mmseg DisentangledNonLocal2d's core, one pixel at a time: (pairwise (B, H, W, E),
  unary (B, E)); whitening by the means over the positions, logits * scale / temperature."""
  b_, h, w, _ = theta.shape
  pos = _positions(h, w)
  pair, unary = np.zeros(g.shape), np.zeros((b_, g.shape[-1]))
  for b in range(b_):
    t_mean = sum(theta[b, i, j] for (i, j) in pos) / len(pos)
    p_mean = sum(phi[b, i, j] for (i, j) in pos) / len(pos)
    for (y, x) in pos:
      logits = [(theta[b, y, x] - t_mean) @ (phi[b, i, j] - p_mean) * scale / temp
                for (i, j) in pos]
      a = _softmax(np.array(logits))
      pair[b, y, x] = sum(a[m] * g[b, i, j] for m, (i, j) in enumerate(pos))
    m = _softmax(np.array([mask[b, i, j, 0] for (i, j) in pos]))
    unary[b] = sum(m[n] * g[b, i, j] for n, (i, j) in enumerate(pos))
  return pair, unary


def naive_cc(q, k, v):
  """Criss-cross attention, one pixel at a time: one softmax over the H + W - 1 positions of
  its column (i, x), i != y, and its row (y, j) (speedinghzl/CCNet `ca_weight`)."""
  b_, h, w, _ = q.shape
  out = np.zeros(v.shape)
  for b in range(b_):
    for y in range(h):
      for x in range(w):
        pos = [(i, x) for i in range(h) if i != y] + [(y, j) for j in range(w)]
        a = _softmax(np.array([q[b, y, x] @ k[b, i, j] for (i, j) in pos]))
        out[b, y, x] = sum(a[m] * v[b, i, j] for m, (i, j) in enumerate(pos))
  return out


# ---------------------------------------------------------------------------------------------
# (1) attention cores vs naive loops


def test_spatial_attention_matches_naive():
  rng = np.random.default_rng(0)
  theta, phi, g = rng.normal(size=(B, H, W, 6)), rng.normal(size=(B, H, W, 6)), rng.normal(
      size=(B, H, W, 5))
  scale = 6 ** -0.5
  got = spatial_attention(*_f32(theta, phi, g), scale)
  np.testing.assert_allclose(got, naive_nl(theta, phi, g, scale), **TOL)


def test_nonlocal2d_block_matches_naive():
  """mmcv NonLocal2d wiring: g/theta/phi, scale 1/sqrt(C/2), conv_out + BN (eval)."""
  rng = np.random.default_rng(1)
  c = 8
  x = rng.normal(size=(B, H, W, c))
  block = nl.NonLocal2d()
  v = block.init(jax.random.key(0), jnp.asarray(x, jnp.float32))
  p = jax.tree.map(np.asarray, v["params"])
  assert p["g"]["kernel"].shape == (1, 1, c, c // 2)
  assert np.all(p["g"]["bias"] == 0) and np.std(p["theta"]["kernel"]) < 0.05
  # Non-zero BN affine so that the conv_out path is visible.
  bn_scale, bn_bias = rng.normal(size=c), rng.normal(size=c)
  params = dict(v["params"])
  params["conv_out"] = {"conv": v["params"]["conv_out"]["conv"],
                        "bn": {"scale": jnp.asarray(bn_scale, jnp.float32),
                               "bias": jnp.asarray(bn_bias, jnp.float32)}}
  # theta/phi/g near-zero init makes the softmax flat: use larger random projections.
  for k in ("g", "theta", "phi"):
    params[k] = {"kernel": jnp.asarray(rng.normal(size=(1, 1, c, c // 2)), jnp.float32),
                 "bias": jnp.asarray(rng.normal(size=c // 2), jnp.float32)}
  got = block.apply({"params": params, "batch_stats": v["batch_stats"]},
                    jnp.asarray(x, jnp.float32))
  proj = {k: x @ np.asarray(params[k]["kernel"][0, 0], np.float64)
          + np.asarray(params[k]["bias"], np.float64) for k in ("g", "theta", "phi")}
  y = naive_nl(proj["theta"], proj["phi"], proj["g"], (c // 2) ** -0.5)
  y = y @ np.asarray(params["conv_out"]["conv"]["kernel"][0, 0], np.float64)
  want = x + y / np.sqrt(1 + 1e-5) * bn_scale + bn_bias
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_dnl_attention_matches_naive():
  """Whitened pairwise term (means over positions, scale / temperature) and unary term."""
  rng = np.random.default_rng(2)
  theta, phi, g = (0.3 * rng.normal(size=(B, H, W, 4)), 0.3 * rng.normal(size=(B, H, W, 4)),
                   rng.normal(size=(B, H, W, 3)))
  mask = rng.normal(size=(B, H, W, 1))
  scale, temp = 4 ** -0.5, 0.05   # mmseg's temperature: logits x 20
  pairwise, unary = dnl.dnl_attention(*_f32(theta, phi, g, mask), scale, temp)
  want_pair, want_unary = naive_dnl(theta, phi, g, mask, scale, temp)
  np.testing.assert_allclose(pairwise, want_pair, **TOL)
  np.testing.assert_allclose(unary, want_unary, **TOL)


def test_dnl_block_adds_unary_term_before_conv_out():
  """The whole block against numpy: x + BN(conv_out(pairwise + unary)), every weight and BN
  statistic random, the core from `naive_dnl` (not flaseg's)."""
  rng = np.random.default_rng(3)
  c = 8
  x = 0.5 * rng.normal(size=(B, H, W, c))
  block = dnl.DisentangledNonLocal2d()
  v = block.init(jax.random.key(0), jnp.asarray(x, jnp.float32))
  assert set(v["params"]) == {"g", "theta", "phi", "conv_mask", "conv_out"}
  assert v["params"]["conv_mask"]["kernel"].shape == (1, 1, c, 1)
  v32, v64 = npl.random_variables(v, 3)
  for k in ("theta", "phi"):   # keep the softmax (x 20 by the temperature) from saturating
    v64["params"][k]["kernel"] = v64["params"][k]["kernel"] * 0.2
    v32["params"][k]["kernel"] = jnp.asarray(v64["params"][k]["kernel"], jnp.float32)
  p, st = v64["params"], v64["batch_stats"]
  got = block.apply(v32, jnp.asarray(x, jnp.float32))
  proj = {k: npl.conv(x, p[k]) for k in ("g", "theta", "phi", "conv_mask")}
  pair, unary = naive_dnl(proj["theta"], proj["phi"], proj["g"], proj["conv_mask"],
                          (c // 2) ** -0.5, 0.05)
  y = npl.conv(pair + unary[:, None, None, :], p["conv_out"]["conv"])
  bn_p, bn_s = p["conv_out"]["bn"], st["conv_out"]["bn"]
  want = x + (y - bn_s["mean"]) / np.sqrt(bn_s["var"] + 1e-5) * bn_p["scale"] + bn_p["bias"]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_pam_matches_naive():
  rng = np.random.default_rng(4)
  q, k, v = (rng.normal(size=(B, H, W, 3)), rng.normal(size=(B, H, W, 3)),
             rng.normal(size=(B, H, W, 5)))
  np.testing.assert_allclose(spatial_attention(*_f32(q, k, v)), naive_nl(q, k, v, 1.0), **TOL)


def test_cam_matches_naive():
  """energy = X X^T over positions; softmax_d(max_d energy - energy); out = A X."""
  rng = np.random.default_rng(5)
  c = 5
  x = rng.normal(size=(B, H, W, c)) * 0.5
  want = np.zeros(x.shape)
  for b in range(B):
    flat = [x[b, i, j] for (i, j) in _positions(H, W)]
    energy = np.array([[sum(f[ci] * f[di] for f in flat) for di in range(c)] for ci in range(c)])
    for ci in range(c):
      a = _softmax(energy[ci].max() - energy[ci])
      for (i, j) in _positions(H, W):
        want[b, i, j, ci] = sum(a[di] * x[b, i, j, di] for di in range(c))
  np.testing.assert_allclose(danet.cam(jnp.asarray(x, jnp.float32)), want, **TOL)


def test_pam_block_wiring():
  rng = np.random.default_rng(6)
  x = jnp.asarray(rng.normal(size=(B, H, W, 8)), jnp.float32)
  block = danet.PAM(channels=2)
  p = dict(block.init(jax.random.key(0), x)["params"])
  assert p["query_project"]["kernel"].shape == (1, 1, 8, 2)
  assert p["value_project"]["kernel"].shape == (1, 1, 8, 8)
  p["gamma"] = jnp.asarray(0.7)
  xp = np.asarray(x, np.float64)
  proj = {k: xp @ np.asarray(p[k]["kernel"][0, 0], np.float64) + np.asarray(p[k]["bias"])
          for k in ("query_project", "key_project", "value_project")}
  want = xp + 0.7 * naive_nl(proj["query_project"], proj["key_project"], proj["value_project"],
                             1.0)
  np.testing.assert_allclose(block.apply({"params": p}, x), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(B, 3, 5), (B, 5, 3)])
def test_criss_cross_matches_explicit_loop(shape):
  """One softmax over the H + W - 1 criss-cross positions: column (i, w) for i != h and the
  whole row (h, j), the pixel itself counted once (speedinghzl/CCNet `ca_weight`)."""
  b_, h, w = shape
  rng = np.random.default_rng(7)
  q, k, v = (rng.normal(size=(b_, h, w, 3)), rng.normal(size=(b_, h, w, 3)),
             rng.normal(size=(b_, h, w, 4)))
  np.testing.assert_allclose(cc.criss_cross_attention(*_f32(q, k, v)), naive_cc(q, k, v), **TOL)


def _naive_rcca(x, p, recurrence):
  """mmcv CrissCrossAttention applied `recurrence` times with the same weights, numpy."""
  for _ in range(recurrence):
    x = x + p["gamma"] * naive_cc(npl.conv(x, p["query_conv"]), npl.conv(x, p["key_conv"]),
                                  npl.conv(x, p["value_conv"]))
  return x


@pytest.mark.parametrize("recurrence", [1, 2])
def test_cc_block_matches_naive_recurrence(recurrence):
  """x <- x + gamma * CCA(q(x), k(x), v(x)), `recurrence` times with one set of weights."""
  rng = np.random.default_rng(8)
  x = rng.normal(size=(B, H, W, 16))
  block = cc.CrissCrossAttention(recurrence)
  v32, v64 = npl.random_variables(block.init(jax.random.key(0), jnp.asarray(x, jnp.float32)), 8)
  assert v64["params"]["query_conv"]["kernel"].shape == (1, 1, 16, 2)   # C // 8
  assert v64["params"]["value_conv"]["kernel"].shape == (1, 1, 16, 16)
  got = block.apply(v32, jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(got, _naive_rcca(x, v64["params"], recurrence), rtol=1e-4,
                             atol=1e-4)


def test_cc_head_applies_rcca_twice():
  """mmseg CCHead against numpy: convs_0 (3x3) -> RCCA (R = 2, shared weights) -> convs_1
  (3x3) -> conv_cat(cat[x, y]) (3x3) -> conv_seg, eval mode, every weight and BN statistic
  random. A head applying the attention once fails."""
  head = cc.CCNetHead(num_classes=3, channels=16, aux_channels=0)
  feats = _feats(1, 3, 4)
  v32, v64 = npl.random_variables(head.init(jax.random.key(0), feats), 9)
  p, st = v64["params"], v64["batch_stats"]
  x = np.asarray(feats["c5"], np.float64)
  y = npl.conv_bn_relu(x, p["convs_0"], st["convs_0"])
  y = _naive_rcca(y, p["cca"], 2)
  y = npl.conv_bn_relu(y, p["convs_1"], st["convs_1"])
  y = npl.conv_bn_relu(np.concatenate([x, y], -1), p["conv_cat"], st["conv_cat"])
  assert np.mean(y > 0) > 0.3   # the ReLUs leave the test something to compare
  want = npl.conv(y, p["cls"]["conv_seg"])
  got = head.apply(v32, feats)["out"]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def _naive_pad(x, lh, lw):
  b_, h, w, c = x.shape
  ph, pw = -(-h // lh) * lh - h, -(-w // lw) * lw - w
  out = np.zeros((b_, h + ph, w + pw, c))
  out[:, ph // 2:ph // 2 + h, pw // 2:pw // 2 + w] = x
  return out, ph // 2, pw // 2


@pytest.mark.parametrize("factor", [(2, 3), (3, 2), (8, 8)])
def test_isa_partition_regroup_unpartition(factor):
  lh, lw = factor
  rng = np.random.default_rng(9)
  x = rng.normal(size=(B, 5, 7, 3))
  padded, _, _ = _naive_pad(x, lh, lw)
  gh, gw = padded.shape[1] // lh, padded.shape[2] // lw
  want_glb = np.zeros((B * lh * lw, gh, gw, 3))
  want_loc = np.zeros((B * gh * gw, lh, lw, 3))
  for b in range(B):
    for i in range(lh):
      for j in range(lw):
        for p in range(gh):
          for q in range(gw):
            want_glb[(b * lh + i) * lw + j, p, q] = padded[b, p * lh + i, q * lw + j]
            want_loc[(b * gh + p) * gw + q, i, j] = padded[b, p * lh + i, q * lw + j]
  glb = isa.isa_partition(jnp.asarray(x, jnp.float32), factor)
  np.testing.assert_allclose(glb, want_glb, **TOL)
  loc = isa.isa_regroup(glb, B, factor)
  np.testing.assert_allclose(loc, want_loc, **TOL)
  back = isa.isa_unpartition(loc, B, (5, 7), factor)
  np.testing.assert_array_equal(back, np.asarray(x, np.float32))


class _Relations(nn.Module):
  """`isa.interlaced_relations` as a module of its own (ISAHead between in_conv and out_conv)."""
  channels: int
  down_factor: tuple
  dtype = jnp.float32
  lowering = DEFAULT

  @nn.compact
  def __call__(self, x):
    return isa.interlaced_relations(self, x, self.channels, self.down_factor, False)


def test_isa_relations_match_masked_naive():
  """ISAHead's two relations with their real projections (mmseg SelfAttentionBlock: q and k
  two 1x1 ConvBNReLU each, v a 1x1 conv with bias, scale channels^-0.5, output_project
  ConvBNReLU), every weight and BN statistic random, eval mode, against numpy: attention over
  the zero-padded map restricted to the pixels with the same (y % lh, x % lw), then to the
  same lh x lw block; the padding pixels take part (projected) as in mmseg."""
  lh, lw = 2, 3
  rng = np.random.default_rng(10)
  x = rng.normal(size=(B, 5, 4, 3))
  module = _Relations(channels=4, down_factor=(lh, lw))
  variables = module.init(jax.random.key(0), jnp.asarray(x, jnp.float32))
  v32, v64 = npl.random_variables(variables, 10)
  p, st = v64["params"], v64["batch_stats"]
  padded, top, left = _naive_pad(x, lh, lw)
  hp, wp = padded.shape[1:3]

  def relation(t, name, same):
    pp, ss = p[name], st[name]
    q, k = t, t
    for i in range(2):
      q = npl.conv_bn_relu(q, pp[f"query_project_{i}"], ss[f"query_project_{i}"])
      k = npl.conv_bn_relu(k, pp[f"key_project_{i}"], ss[f"key_project_{i}"])
    v = npl.conv(t, pp["value_project"])
    out = np.zeros(v.shape)
    for b in range(B):
      for (y, xx) in _positions(hp, wp):
        keys = [(i, j) for (i, j) in _positions(hp, wp) if same(y, xx, i, j)]
        a = _softmax(np.array([q[b, y, xx] @ k[b, i, j] * 4 ** -0.5 for (i, j) in keys]))
        out[b, y, xx] = sum(a[m] * v[b, i, j] for m, (i, j) in enumerate(keys))
    return npl.conv_bn_relu(out, pp["output_project"], ss["output_project"])

  want = relation(padded, "global_relation",
                  lambda y, xx, i, j: y % lh == i % lh and xx % lw == j % lw)
  want = relation(want, "local_relation",
                  lambda y, xx, i, j: y // lh == i // lh and xx // lw == j // lw)
  want = want[:, top:top + 5, left:left + 4]
  # The ReLUs leave something to compare, and the pixels of a block differ (a block-constant
  # output would hide a mis-ordered regroup).
  assert np.mean(want > 0) > 0.5 and np.std(want[:, :2, :3], axis=(1, 2)).max() > 1e-2
  got = module.apply(v32, jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _naive_em(feats, bases, stages):
  """mmseg EMAModule.forward in numpy, loop over the batch."""
  mus, zs = [], []
  for b in range(feats.shape[0]):
    f = feats[b]                      # (N, C)
    mu = bases.copy()                 # (C, K)
    for _ in range(stages):
      z = np.stack([_softmax(f[n] @ mu) for n in range(f.shape[0])])    # (N, K) over bases
      zn = z / z.sum(axis=0, keepdims=True)                             # L1 over N
      mu = f.T @ zn
      mu = mu / np.linalg.norm(mu, axis=0, keepdims=True)               # L2 over C
    mus.append(mu)
    zs.append(z)
  return np.stack(mus), np.stack(zs)


def test_em_iterations_recon_and_moving_average():
  rng = np.random.default_rng(11)
  c, k = 6, 4
  x = rng.normal(size=(B, H, W, c))
  module = ema.EMAModule(num_bases=k, num_stages=3, momentum=0.1)
  v = module.init(jax.random.key(0), jnp.asarray(x, jnp.float32))
  bases0 = np.asarray(v["ema"]["bases"], np.float64)
  assert bases0.shape == (c, k)
  np.testing.assert_allclose(np.linalg.norm(bases0, axis=0), 1.0, **TOL)  # init L2 over C
  mu, z = _naive_em(x.reshape(B, -1, c), bases0, 3)
  want_recon = np.einsum("bck,bnk->bnc", mu, z).reshape(x.shape)
  got_mu, got_z = ema.em_iterations(*_f32(x.reshape(B, -1, c), np.broadcast_to(bases0,
                                                                               (B, c, k))), 3)
  np.testing.assert_allclose(got_mu, mu, **TOL)
  np.testing.assert_allclose(got_z, z, **TOL)
  # Eval: the bases do not move (even when the collection is mutable).
  recon, upd = module.apply(v, jnp.asarray(x, jnp.float32), train=False, mutable=["ema"])
  np.testing.assert_allclose(recon, want_recon, **TOL)
  np.testing.assert_array_equal(upd["ema"]["bases"], v["ema"]["bases"])
  # Train: bases <- 0.9 bases + 0.1 l2norm(mean_b mu), not re-normalised after the blend.
  recon, upd = module.apply(v, jnp.asarray(x, jnp.float32), train=True, mutable=["ema"])
  np.testing.assert_allclose(recon, want_recon, **TOL)
  mean = mu.mean(axis=0)
  mean = mean / np.linalg.norm(mean, axis=0, keepdims=True)
  want_bases = 0.9 * bases0 + 0.1 * mean
  np.testing.assert_allclose(upd["ema"]["bases"], want_bases, **TOL)
  assert np.all(np.linalg.norm(np.asarray(upd["ema"]["bases"]), axis=0) <= 1 + 1e-6)
  # No gradient flows through the EM module (torch.no_grad in mmseg).
  grad = jax.grad(lambda t: module.apply(v, t, train=False).sum())(jnp.asarray(x, jnp.float32))
  assert np.all(np.asarray(grad) == 0)


# ---------------------------------------------------------------------------------------------
# (3) identity at init where the reference says so


@pytest.mark.parametrize("make", [nl.NonLocal2d, dnl.DisentangledNonLocal2d])
def test_zero_init_bn_makes_nl_blocks_identity(make):
  x = jax.random.normal(jax.random.key(1), (B, H, W, 8))
  block = make()
  v = block.init(jax.random.key(0), x)
  bn = v["params"]["conv_out"]["bn"]
  assert np.all(np.asarray(bn["scale"]) == 0) and np.all(np.asarray(bn["bias"]) == 0)
  np.testing.assert_array_equal(block.apply(v, x), x)
  out, _ = block.apply(v, x, train=True, mutable=["batch_stats"])
  np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("make", [lambda: danet.PAM(4), danet.CAM, cc.CrissCrossAttention])
def test_zero_gamma_makes_blocks_identity(make):
  x = jax.random.normal(jax.random.key(1), (B, H, W, 16))
  block = make()
  v = block.init(jax.random.key(0), x)
  assert float(v["params"]["gamma"]) == 0.0 and v["params"]["gamma"].shape == ()
  np.testing.assert_array_equal(block.apply(v, x), x)


# ---------------------------------------------------------------------------------------------
# (2) whole heads under jit


@pytest.mark.parametrize("name", sorted(TINY))
def test_head_jit_shapes_and_grads(name):
  """Init (its forward is the eval forward) at batch 1 and a train-mode gradient at batch 3,
  both under jit, on a 5x7 map. ('rbg' keys: their init compiles ~3x faster on CPU.)"""
  head = HEADS[name](num_classes=3, **TINY[name])
  keys = KEYS.get(name, {"out", "aux"})

  out, variables = jax.jit(head.init_with_output)(jax.random.key(0, impl="rbg"), _feats(1))
  assert set(out) == keys and all(o.shape == (1, 5, 7, 3) for o in out.values())
  params = variables["params"]
  state = {k: v for k, v in variables.items() if k != "params"}

  def loss(p, f):
    o, new_state = head.apply({"params": p, **state}, f, train=True, mutable=list(state),
                              rngs={"dropout": jax.random.key(1, impl="rbg")})
    return sum(jnp.mean(v ** 2) for v in o.values()), (o, new_state)

  grads, (o3, new_state) = jax.jit(jax.grad(loss, has_aux=True))(params, _feats(3))
  assert set(o3) == keys and all(o.shape == (3, 5, 7, 3) for o in o3.values())
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert "aux_head" in params
  if name == "emanet":
    assert "ema_mid_conv" not in params   # frozen: in the 'ema' collection, out of the optimizer
    old, new = state["ema"], new_state["ema"]
    assert not np.allclose(old["ema_module"]["bases"], new["ema_module"]["bases"])
    np.testing.assert_array_equal(old["ema_mid_conv"]["kernel"], new["ema_mid_conv"]["kernel"])
