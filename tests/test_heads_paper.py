"""The FLANet-line paper heads: Channel NL, CS NL, Denoised NL, RecoNet, AttaNet, SANet.

Each attention core is checked against a naive numpy transcription of the reference
semantics (explicit loops, B = 2, H != W, few channels); each head runs under jax.jit on tiny
fake features (gradients at batch 1, shapes at batch 1 and 3); each config's ':smoke' model
builds and traces init + apply at 32x48 with jax.eval_shape.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flaseg.config_lib
import flaseg.models
from flaseg.models import HEADS
from flaseg.models.heads import attanet, danet, denoised_nl, reconet, sanet

B, H, W = 2, 3, 5
# Many small graphs: LLVM optimisation dominates CPU compile time, so skip it.
FAST = {"xla_backend_optimization_level": 0}


def rand(seed, *shape, scale=0.5):
  return scale * np.random.default_rng(seed).standard_normal(shape)


def softmax(e):
  e = np.exp(e - e.max())
  return e / e.sum()


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def init_and_apply(module, *arrays, train=None, **apply_kwargs):
  """`module.init` then `module.apply` under one jax.jit (op-by-op init is slow on CPU)."""
  extra = () if train is None else (train,)

  def f(*a):
    variables = module.init(jax.random.PRNGKey(0), *a, *extra)
    return variables, module.apply(variables, *a, *extra, **apply_kwargs)
  return jax.jit(f, compiler_options=FAST)(*arrays)


def close(got, want, tol=2e-5):
  np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=tol, atol=tol)


def resample(y, size):
  """1-D linear interpolation with align_corners=True (torch `F.interpolate`)."""
  n = len(y)
  if size == 1:
    return np.array([y[0]])
  return np.interp(np.arange(size) * (n - 1) / (size - 1), np.arange(n), y)


def nearest(x, size):
  """torch nearest resize of (h, w, c): src = floor(dst * in / out)."""
  out = np.zeros((size[0], size[1], x.shape[-1]))
  for i in range(size[0]):
    for j in range(size[1]):
      out[i, j] = x[i * x.shape[0] // size[0], j * x.shape[1] // size[1]]
  return out


# ---------------------------------------------------------------------------- Channel / CS NL

# The CAM / PAM cores are DANet's, checked against loops in test_heads_mmseg.py.
@pytest.mark.parametrize("module", [danet.CAM(), danet.PAM(channels=2)])
def test_nl_gamma_starts_at_zero(module):
  x = jnp.asarray(rand(4, B, H, W, 4), jnp.float32)
  variables, out = init_and_apply(module, x)
  assert float(variables["params"]["gamma"]) == 0.0
  close(out, np.asarray(x))


# ---------------------------------------------------------------------------- AttaNet

@pytest.mark.parametrize("horizontal", [False, True])
def test_strip_attention_matches_reference(horizontal):
  q, k, v = rand(5, B, H, W, 2), rand(6, B, H, W, 2), rand(7, B, H, W, 3)
  n_strips = H if horizontal else W
  want = np.zeros_like(v)
  for b in range(B):
    # Vertical: one strip per column, pooled over H; horizontal: per row, pooled over W.
    strip = (lambda t, s: t[b, s, :, :].mean(0)) if horizontal else (
        lambda t, s: t[b, :, s, :].mean(0))
    qs = np.stack([strip(q, s) for s in range(n_strips)])
    vs = np.stack([strip(v, s) for s in range(n_strips)])
    for i in range(H):
      for j in range(W):
        a = softmax(np.array([np.dot(qs[s], k[b, i, j]) for s in range(n_strips)]))
        want[b, i, j] = sum(a[s] * vs[s] for s in range(n_strips))
  args = [jnp.asarray(t, jnp.float32) for t in (q, k, v)]
  close(attanet.strip_attention(*args, horizontal=horizontal), want)
  # The attention sums to 1 over the strips: constant values come back unchanged.
  ones = attanet.strip_attention(args[0], args[1], jnp.ones_like(args[2]), horizontal)
  close(ones, np.ones(v.shape))


def test_attention_fusion_gate_matches_reference():
  f16, f32 = rand(8, B, 4, 6, 4), rand(9, B, 2, 3, 5)
  module = attanet.AttentionFusion(features=4)
  variables, got = init_and_apply(module, jnp.asarray(f16), jnp.asarray(f32), train=False)
  p, s = variables["params"], variables["batch_stats"]

  def bn(x, pp, ss):
    return (x - ss["mean"]) / np.sqrt(ss["var"] + 1e-5) * pp["scale"] + pp["bias"]

  w1 = np.asarray(p["conv"]["conv"]["kernel"])[0, 0]
  w2 = np.asarray(p["conv_atten"]["kernel"])[0, 0]
  want = np.zeros((B, 1, 1, 4))
  for b in range(B):
    cat = np.concatenate([f16[b], nearest(f32[b], (4, 6))], -1)
    f = np.maximum(bn(cat @ w1, p["conv"]["bn"], s["conv"]["bn"]), 0)
    g = f.mean((0, 1)) @ w2  # GAP then 1x1 conv: one weight per channel
    want[b, 0, 0] = sigmoid(bn(g, p["bn_atten"], s["bn_atten"]))
  close(got, want)
  a = np.asarray(got, np.float64)
  f32c = rand(10, B, 2, 3, 4)  # conv_head32(feat32) at 1/32
  up = np.stack([nearest(f32c[b] * a[b], (4, 6)) for b in range(B)])
  fused, got_up = attanet.fuse(jnp.asarray(f16), jnp.asarray(f32c), jnp.asarray(a, jnp.float32))
  close(got_up, up)
  close(fused, f16 * (1 - a) + up)


# ---------------------------------------------------------------------------- Denoised NL

def test_denoised_attention_matches_unfold_reference():
  k_cls = 3
  q, k, v = rand(10, B, H, W, 2), rand(11, B, H, W, 2), rand(12, B, H, W, 4)
  probs = np.stack([[[softmax(z) for z in row] for row in img]
                    for img in rand(13, B, H, W, k_cls, scale=2.0)])
  n = H * W
  want = np.zeros_like(v)
  for b in range(B):
    qs, ks, vs, ps = (t[b].reshape(n, -1) for t in (q, k, v, probs))
    rel = np.stack([softmax(qs[i] @ ks.T) for i in range(n)])
    rel = rel * sigmoid(ps @ ps.T)  # global rectifying: sigmoid(P^T P)
    # Local retention as the official code: unfold the keys and the relation over the key
    # grid (3x3, zero padding); L[j, o] = sigmoid(q_j . k_{j+o}),
    # R'[i, j] = sum_o R[i, j+o] L[j, o], out = R' v.
    unfold_rel = np.zeros((n, 9, n))
    local = np.zeros((n, 9))
    for y in range(H):
      for x in range(W):
        j = y * W + x
        for o in range(9):
          yy, xx = y + o // 3 - 1, x + o % 3 - 1
          inside = 0 <= yy < H and 0 <= xx < W
          key = ks[yy * W + xx] if inside else np.zeros(2)
          local[j, o] = sigmoid(qs[j] @ key)
          if inside:
            unfold_rel[:, o, j] = rel[:, yy * W + xx]
    aug_rel = np.einsum("iok,ko->ik", unfold_rel, local)
    want[b] = (aug_rel @ vs).reshape(H, W, 4)
  got = denoised_nl.denoised_attention(*(jnp.asarray(t, jnp.float32) for t in (q, k, v, probs)))
  close(got, want)


# ---------------------------------------------------------------------------- RecoNet

def test_low_rank_tensor_matches_loops():
  r, c = 3, 4
  lam = softmax(rand(14, r))
  cf, hf, wf = rand(15, B, r, c), rand(16, B, r, H), rand(17, B, r, W)
  want = np.zeros((B, H, W, c))
  for b in range(B):
    for i in range(r):
      for ch in range(c):
        for y in range(H):
          for x in range(W):
            want[b, y, x, ch] += lam[i] * cf[b, i, ch] * hf[b, i, y] * wf[b, i, x]
  got = reconet.low_rank_tensor(*(jnp.asarray(t, jnp.float32) for t in (lam, cf, hf, wf)))
  close(got, want)


@pytest.mark.parametrize("size", [(4, 4), (3, 5)])
def test_tgm_trm_matches_reference(size):
  """At H = W = profile_size this is the original TGM/TRM (height profile on the H axis);
  otherwise profiles are resampled to the reference length and back."""
  r, c, l = 3, 4, 4
  x = rand(18, B, *size, c)
  module = reconet.TGMTRM(rank=r, profile_size=l)
  variables, got = init_and_apply(module, jnp.asarray(x, jnp.float32))
  p = {k: np.asarray(v, np.float64) for k, v in variables["params"].items()}
  lam = softmax(p["lam"])
  close(lam, np.full(r, 1.0 / r))  # lambda starts uniform
  want = np.zeros(x.shape[:3] + (2 * c,))
  for b in range(B):
    t = np.zeros(x.shape[1:])
    prof_h = resample(x[b].mean((1, 2)), l)  # mean over W and C, per row
    prof_w = resample(x[b].mean((0, 2)), l)  # mean over H and C, per column
    for i in range(r):
      c_r = sigmoid(x[b].mean((0, 1)) @ p["channel_kernel"][i])
      h_r = resample(sigmoid(prof_h @ p["height_kernel"][i]), size[0])
      w_r = resample(sigmoid(prof_w @ p["width_kernel"][i]), size[1])
      t += lam[i] * h_r[:, None, None] * w_r[None, :, None] * c_r[None, None, :]
    want[b] = np.concatenate([x[b], np.maximum(x[b] * t, 0)], -1)
  close(got, want)


# ---------------------------------------------------------------------------- SANet

def test_max_pool_ceil():
  x = rand(19, B, 5, 11, 2)
  want = np.zeros((B, 2, 3, 2))
  for i in range(2):
    for j in range(3):
      want[:, i, j] = x[:, 4 * i:4 * i + 4, 4 * j:4 * j + 4].max((1, 2))
  close(sanet.max_pool_ceil(jnp.asarray(x, jnp.float32), 4), want)


@pytest.mark.parametrize("sigmoid_attention", [True, False])
def test_sa_module_output_formula(sigmoid_attention):
  x = jnp.asarray(rand(20, B, 5, 7, 4), jnp.float32)
  module = sanet.SAModule(features=3, pool=4, sigmoid_attention=sigmoid_attention)
  _, (out, state) = init_and_apply(module, x, train=False, capture_intermediates=True)
  inter = state["intermediates"]
  main = np.asarray(inter["main_1"]["__call__"][0], np.float64)
  attn = np.asarray(inter["attn_1"]["__call__"][0], np.float64)
  assert attn.shape[1:3] == (2, 2)  # ceil(5 / 4), ceil(7 / 4)
  if sigmoid_attention:
    attn = sigmoid(attn)
  attn = np.stack([nearest(a, (5, 7)) for a in attn])
  close(out, attn * main + attn)  # X_out = X_attn * X_res + X_attn


# ---------------------------------------------------------------------------- whole heads

OS8 = {"c2": (10, 14, 8), "c3": (5, 7, 16), "c4": (5, 7, 24), "c5": (5, 7, 32)}
OS32 = {"c2": (14, 18, 8), "c3": (7, 9, 16), "c4": (4, 5, 24), "c5": (2, 3, 32)}
K = 5
# name: (head kwargs, feature layout, {output: spatial size or None for (B, K)})
CASES = {
    "channel_nl": (dict(channels=8, aux_channels=4), OS8,
                   {"out": (10, 14), "aux1": (10, 14), "aux2": (10, 14)}),
    "cs_nl": (dict(channels=8, aux_channels=4), OS8,
              {"out": (10, 14), "aux1": (10, 14), "aux2": (10, 14)}),
    "denoised_nl": (dict(channels=8, aux_channels=4, gr_channels=4), OS8,
                    {"out": (5, 7), "aux1": (5, 7), "aux2": (5, 7)}),
    "reconet": (dict(channels=8, rank=3, profile_size=4, aux_channels=4), OS8,
                {"out": (5, 7), "aux": (5, 7)}),
    "attanet": (dict(channels=8, qk_channels=4, out_channels=8, aux_channels=4), OS32,
                {"out": (7, 9), "aux1": (4, 5), "aux2": (7, 9)}),
    "sanet": (dict(aux_channels=4), OS8, {"out": (10, 14), "se": None, "aux": (5, 7)}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_head_shapes_and_gradients(name):
  """init + one training-mode gradient under jax.jit at batch 1; the same function traced
  with jax.eval_shape (as jit traces it) at batch 3."""
  kwargs, layout, expected = CASES[name]
  head = HEADS[name](num_classes=K, **kwargs)

  def feats(batch):
    return {k: jnp.asarray(rand(i, batch, *s), jnp.float32)
            for i, (k, s) in enumerate(layout.items())}

  def init_and_grad(f):
    variables = head.init(jax.random.PRNGKey(0), f)

    def loss_fn(params):
      outs, _ = head.apply({"params": params, "batch_stats": variables["batch_stats"]}, f, True,
                           rngs={"dropout": jax.random.PRNGKey(1)}, mutable=["batch_stats"])
      return sum(jnp.mean(jnp.square(o)) for o in outs.values()), outs
    return jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])

  (loss, outs), grads = jax.jit(init_and_grad, compiler_options=FAST)(feats(1))
  (_, outs3), _ = jax.eval_shape(init_and_grad, feats(3))
  for batch, o in ((1, outs), (3, outs3)):
    assert set(o) == set(expected)
    for key, size in expected.items():
      want = (batch, K) if size is None else (batch, *size, K)
      assert o[key].shape == want, (key, o[key].shape, want)
  assert np.isfinite(float(loss))
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert sum(float(jnp.sum(jnp.abs(g))) for g in leaves) > 0
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    if "gamma" in jax.tree_util.keystr(path):  # the attention branch is wired into the loss
      assert float(jnp.abs(g)) > 0, path


# ---------------------------------------------------------------------------- configs

@pytest.mark.parametrize("name", ["channel_nl", "cs_nl", "denoised_nl", "reconet", "attanet",
                                  "sanet"])
def test_config_smoke_builds_and_runs(name):
  cfg = flaseg.config_lib.load(f"configs/{name}_cityscapes.py:smoke")
  assert cfg.model.head == name
  if cfg.model.num_classes == 0:
    cfg.model.num_classes = 8
  model = flaseg.models.build_model(cfg.model)
  images = jax.ShapeDtypeStruct((2, 32, 48, 3), jnp.uint8)
  # init + apply traced exactly as under jax.jit, without compiling the backbone (the head
  # numerics are covered above; compiling six ResNets would take minutes on 2 cores).
  outs = jax.eval_shape(lambda x: model.apply(model.init(jax.random.PRNGKey(0), x), x), images)
  for key in cfg.loss.weights:
    want = (2, 8) if key == "se" else (2, 32, 48, 8)
    assert outs[key].shape == want, (key, outs[key].shape)
    assert outs[key].dtype == jnp.float32
