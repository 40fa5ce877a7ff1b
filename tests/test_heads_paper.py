"""The FLANet-line paper heads: FLA, FLANet's ablation blocks (Channel NL, Spatial / Dual /
CS NL), Denoised NL, RecoNet, AttaNet, SANet.

Each attention core is checked against a naive numpy transcription of the reference
semantics (explicit loops, B = 2, H != W, few channels); where official code exists, against
its transcription in reference/torch/ with transferred weights (the FLA block with its
`.repeat`, RecoNet's released TGM/TRM, AttaNet's head); SANet's SA module against numpy
layers (tests/numpy_layers.py) with random weights. Each head runs under jax.jit on tiny fake
features (gradients at batch 1, shapes at batch 1 and 3); each config's ':smoke' model builds
and traces init + apply at 32x48 with jax.eval_shape.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flaseg.config_lib
import flaseg.errors
import flaseg.models
from flaseg.models import HEADS
from flaseg.models.heads import attanet, danet, denoised_nl, fla, fla_ablation, reconet, sanet
from flaseg.models.lowering import DEFAULT
import numpy_layers as npl

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


# ---------------------------------------------------------------------------- FLA

def numpy_fla(x, enc_h, enc_w, mix):
  """FLANet Eq. 2-4 as loops, NHWC: column (b, w) attends with the keys enc_h of sample
  (b * W + w) % B if `mix` (the official `.repeat`), else of sample b; rows likewise."""
  bsz, h, w, c = x.shape
  out = np.zeros(x.shape)
  for b in range(bsz):
    for j in range(w):
      kb = (b * w + j) % bsz if mix else b
      a = np.stack([softmax(np.array([sum(x[b, i, j, ci] * enc_h[kb, i, d] for i in range(h))
                                      for d in range(c)])) for ci in range(c)])
      out[b, :, j] += x[b, :, j] @ a.T
    for i in range(h):
      kb = (b * h + i) % bsz if mix else b
      a = np.stack([softmax(np.array([sum(x[b, i, j, ci] * enc_w[kb, j, d] for j in range(w))
                                      for d in range(c)])) for ci in range(c)])
      out[b, i] += x[b, i] @ a.T
  return out


def test_fla_block_equals_official_transcription():
  """flaseg's FullyAttentionalBlock against the official block, transcribed line by line with
  its `.repeat` (reference/torch/flanet.py), weights transferred: equal at batch 1; at batch 2
  the official block pairs column w of sample b with sample (b * W + w) % B's keys (the
  documented difference), flaseg with sample b's, each checked against `numpy_fla`."""
  from torch_equivalence import import_torch, randomise
  from reference.torch import flanet as torch_flanet
  torch = import_torch()
  c, h, w = 4, 3, 5
  net = randomise(torch, torch_flanet.fla_block(c))
  sd = {k: v.detach().numpy().astype(np.float64) for k, v in net.state_dict().items()}
  params = {"conv1": {"kernel": sd["conv1.weight"].T, "bias": sd["conv1.bias"]},
            "conv2": {"kernel": sd["conv2.weight"].T, "bias": sd["conv2.bias"]},
            "gamma": sd["gamma"][0],
            "conv": {"conv": {"kernel": sd["conv.0.weight"].transpose(2, 3, 1, 0)},
                     "bn": {"scale": sd["conv.1.weight"], "bias": sd["conv.1.bias"]}}}
  stats = {"conv": {"bn": {"mean": sd["conv.1.running_mean"], "var": sd["conv.1.running_var"]}}}
  variables = jax.tree.map(lambda t: jnp.asarray(t, jnp.float32),
                           {"params": params, "batch_stats": stats})
  block = fla.FullyAttentionalBlock()
  for batch in (1, 2):
    x = rand(30 + batch, batch, h, w, c, scale=1.0)
    with torch.no_grad():
      want = net(torch.from_numpy(x.transpose(0, 3, 1, 2)).float()).numpy().transpose(0, 2, 3, 1)
    got = np.asarray(jax.jit(block.apply)(variables, jnp.asarray(x, jnp.float32)))
    if batch == 1:
      close(got, want, 1e-5)
      continue
    # Both against the loops, before the block's 3x3 conv: the FLA output is the conv's input.
    enc_h = x.mean(2) @ params["conv1"]["kernel"] + params["conv1"]["bias"]
    enc_w = x.mean(1) @ params["conv2"]["kernel"] + params["conv2"]["bias"]
    pre = {mix: x + params["gamma"] * numpy_fla(x, enc_h, enc_w, mix) for mix in (False, True)}
    with torch.no_grad():
      conv = lambda t: net.conv(torch.from_numpy(t.transpose(0, 3, 1, 2)).float()).numpy(
          ).transpose(0, 2, 3, 1)
      close(want, conv(pre[True]), 1e-5)   # official: samples mix
      close(got, conv(pre[False]), 1e-5)   # flaseg: per sample
    assert np.max(np.abs(got - want)) > 1e-2


# ---------------------------------------------------------------------------- FLANet's ablations

def numpy_channel_nl(x):
  """FLANet's Channel NL, loops: A[c, d] = softmax_d(sum_n x[n, c] x[n, d]) (the plain
  similarity), out[n, c] = sum_d A[c, d] x[n, d]."""
  out = np.zeros(x.shape)
  for b in range(x.shape[0]):
    flat = x[b].reshape(-1, x.shape[-1])
    c = flat.shape[1]
    for ci in range(c):
      a = softmax(np.array([sum(f[ci] * f[di] for f in flat) for di in range(c)]))
      out[b].reshape(-1, c)[:, ci] = flat @ a
  return out


def numpy_pam(x, p):
  """DANet's PAM as loops: x + gamma softmax_m(q_n . k_m) v_m, q/k/v 1x1 convs with bias."""
  q, k, v = (npl.conv(x, p[n]) for n in ("query_project", "key_project", "value_project"))
  out = np.zeros(x.shape)
  for b in range(x.shape[0]):
    qf, kf, vf = (t[b].reshape(-1, t.shape[-1]) for t in (q, k, v))
    for n in range(qf.shape[0]):
      out[b].reshape(-1, x.shape[-1])[n] = softmax(kf @ qf[n]) @ vf
  return x + p["gamma"] * out


def test_channel_nl_is_the_plain_similarity():
  """FLANet's Channel NL against loops; DANet's CAM (softmax(max - E)) weights the channels
  the other way round, so the two differ."""
  x = rand(23, B, H, W, 4)
  got = fla_ablation.channel_nl_attention(jnp.asarray(x, jnp.float32))
  close(got, numpy_channel_nl(x), 1e-5)
  assert np.max(np.abs(np.asarray(danet.cam(jnp.asarray(x, jnp.float32))) - got)) > 1e-2


class _Core(nn.Module):
  """`fla_ablation.attention_core` as a module of its own."""
  block: str
  dtype = jnp.float32
  lowering = DEFAULT

  @nn.compact
  def __call__(self, x):
    return fla_ablation.attention_core(self, self.block, x, False, pam_channels=2)


@pytest.mark.parametrize("block", ["none", "channel_nl", "spatial_nl", "dual_nl", "cs_nl"])
def test_ablation_cores_match_numpy(block):
  """The NL ablation blocks of FLANet's Table 3, random weights: Channel NL, Spatial NL (PAM),
  their parallel sum (Dual NL) and Channel-then-Spatial series (CS NL), against loops."""
  x = rand(24, B, H, W, 4)
  module = _Core(block)
  variables = module.init(jax.random.PRNGKey(0), jnp.asarray(x, jnp.float32))
  v32, v64 = npl.random_variables(variables, 25) if variables else ({}, {})
  p = v64.get("params", {})
  channel = lambda t: t + p["channel"]["gamma"] * numpy_channel_nl(t)  # noqa: E731
  spatial = lambda t: numpy_pam(t, p["spatial"])  # noqa: E731
  want = {"none": lambda t: t, "channel_nl": channel, "spatial_nl": spatial,
          "dual_nl": lambda t: channel(t) + spatial(t),
          "cs_nl": lambda t: spatial(channel(t))}[block](x)
  close(module.apply(v32, jnp.asarray(x, jnp.float32)), want, 1e-5)


def test_ablation_fla_block_is_flanet():
  """block_type='fla' is FLAHead parameter for parameter and output for output; every other
  block has its attention core and `block_conv`; EMA's bases train in the head."""
  feats = {k: jnp.asarray(rand(i, 1, *s), jnp.float32) for i, (k, s) in enumerate(OS8.items())}
  kw = dict(num_classes=K, channels=8, aux_channels=4)
  ref = HEADS["fla"](**kw)
  want, variables = jax.jit(ref.init_with_output, compiler_options=FAST)(
      jax.random.PRNGKey(0), feats)
  ablation = HEADS["fla_ablation"](block_type="fla", **kw)
  got = jax.eval_shape(ablation.init, jax.random.PRNGKey(0), feats)
  assert jax.tree.structure(got) == jax.tree.structure(variables)
  got = jax.jit(ablation.apply, compiler_options=FAST)(variables, feats)
  for key in want:
    np.testing.assert_array_equal(got[key], want[key])
  for block, core in (("none", None), ("rcca", "cca"), ("ema", "ema_module")):
    head = HEADS["fla_ablation"](block_type=block, **kw)
    v = jax.eval_shape(head.init, jax.random.PRNGKey(0), feats)
    assert "block_conv" in v["params"] and "fully" not in v["params"]
    names = set(v["params"]) | set(v.get("ema", {}))
    assert (core in names) if core else names == {"conv_0", "conv_1", "block_conv", "conv_out1",
                                                  "conv_out2", "conv_out3"}, names
  head = HEADS["fla_ablation"](block_type="ema", **kw)
  rngs = {"dropout": jax.random.PRNGKey(1)}
  _, new = jax.eval_shape(lambda: head.apply(head.init(jax.random.PRNGKey(0), feats), feats,
                                             True, rngs=rngs, mutable=["batch_stats", "ema"]))
  assert "bases" in new["ema"]["ema_module"]


# ---------------------------------------------------------------------------- Channel / CS NL

# Channel NL: above; PAM: DANet's, checked against loops in test_heads_mmseg.py.
@pytest.mark.parametrize("module", [fla_ablation.ChannelNL(), danet.PAM(channels=2)])
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


def test_attanet_head_equals_official_transcription():
  """AttaNetHead (AFM fusion, SAM, the three outputs) against the official head's forward
  (reference/torch/attanet.py `head.decode`), random weights and BN statistics converted with
  flaseg.convert, on features of odd sizes (1/8 7x9, 1/16 4x5, 1/32 2x3), batch 2."""
  from torch_equivalence import import_torchvision, randomise
  from flaseg import convert
  from reference.torch import attanet as torch_attanet
  from configs import attanet_cityscapes
  torch, torchvision = import_torchvision()
  net = randomise(torch, torch_attanet.attanet(torch, torchvision, K))
  config = attanet_cityscapes.get_config()
  config.model.num_classes = K
  sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
  v = convert.convert(sd, "attanet", convert.abstract_variables(config), config.model.backbone,
                      "model")
  head_vars = {"params": v["params"]["head"], **{k: t["head"] for k, t in v["model_state"].items()}}
  feats = {"c3": rand(40, 2, 7, 9, 128), "c4": rand(41, 2, 4, 5, 256), "c5": rand(42, 2, 2, 3, 512)}
  with torch.no_grad():
    t = {k: torch.from_numpy(f.transpose(0, 3, 1, 2)).float() for k, f in feats.items()}
    out8, f32_up, f8 = net.head.decode(t["c3"], t["c4"], t["c5"])
    want = {"out": net.conv_out(out8), "aux1": net.conv_out1(f32_up), "aux2": net.conv_out2(f8)}
  head = HEADS["attanet"](num_classes=K)
  got = jax.jit(head.apply)(head_vars, {k: jnp.asarray(f, jnp.float32) for k, f in feats.items()})
  for key, w in want.items():
    w = w.numpy().transpose(0, 2, 3, 1)
    assert got[key].shape == w.shape, key
    close(got[key], w, 1e-4 * np.abs(w).max())


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


def test_tgm_trm_released_equals_transcription():
  """`released=True` against the released TGMandTRM transcribed (reference/torch/reconet.py)
  at its 64x64 map, weights transferred (conv1_1 -> channel_kernel, conv1_2 (the file's `H`,
  the width profile) -> width_kernel, conv1_3 -> height_kernel), batch 2, rank 4, 8 channels.
  The file is called twice: its lambda stays 1/R. The generalised default differs there."""
  from torch_equivalence import import_torch, randomise
  from reference.torch import reconet as torch_reconet
  torch = import_torch()
  r, c, l = 4, 8, 64
  net = randomise(torch, torch_reconet.tgm_trm(torch, c, l, r))
  x = rand(22, 2, l, l, c, scale=1.0) + np.linspace(-1, 1, l)[None, :, None, None]  # H != W
  with torch.no_grad():
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2)).float()
    want = net(tx).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(net(tx).numpy().transpose(0, 2, 3, 1), want)
  kernels = lambda name: np.stack([getattr(net, name)[i][0].weight.detach().numpy()[:, :, 0, 0].T
                                   for i in range(r)])
  params = {"channel_kernel": kernels("conv1_1"), "width_kernel": kernels("conv1_2"),
            "height_kernel": kernels("conv1_3")}
  module = reconet.TGMTRM(rank=r, profile_size=l, released=True)
  got = jax.jit(module.apply)({"params": params}, jnp.asarray(x, jnp.float32))
  close(got, want, 1e-5)
  params["lam"] = np.ones(r, np.float32)
  general = reconet.TGMTRM(rank=r, profile_size=l).apply({"params": params},
                                                         jnp.asarray(x, jnp.float32))
  assert np.max(np.abs(np.asarray(general) - want)) > 1e-3
  with pytest.raises(flaseg.errors.ConfigError, match="released=True"):
    module.apply({"params": params}, jnp.zeros((1, l, l - 1, c)))


@pytest.mark.parametrize("size", [(4, 4), (3, 5)])
def test_tgm_trm_generalised_matches_reference(size):
  """The default (flaseg's generalisation, module docstring): height profile on the H axis,
  width profile on the W axis, profiles resampled to L and back, lambda a trained softmax;
  a numpy loop of that formula (the released file is the test above)."""
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
def test_sa_module_matches_numpy(sigmoid_attention):
  """The SA module from SANet's text (Eq. 3-4) in numpy with the module's (random) weights:
  main = 2 x ConvBNReLU 3x3; attention = 2 x ConvBNReLU 3x3 on the input max-pooled by `pool`
  (ceil mode), [sigmoid,] nearest up to the main branch's size; out = attn * main + attn."""
  x = rand(20, B, 5, 7, 4, scale=1.0)
  module = sanet.SAModule(features=3, pool=4, sigmoid_attention=sigmoid_attention)
  variables = jax.eval_shape(lambda t: module.init(jax.random.PRNGKey(0), t, False),
                             jnp.zeros(x.shape))
  v32, v64 = npl.random_variables(variables, 21)
  p, st = v64["params"], v64["batch_stats"]
  main = npl.conv_bn_relu(npl.conv_bn_relu(x, p["main_0"], st["main_0"]), p["main_1"],
                          st["main_1"])
  pooled = np.zeros((B, 2, 2, 4))  # ceil(5 / 4), ceil(7 / 4): partial windows kept
  for i in range(2):
    for j in range(2):
      pooled[:, i, j] = x[:, 4 * i:4 * i + 4, 4 * j:4 * j + 4].max((1, 2))
  attn = npl.conv_bn_relu(npl.conv_bn_relu(pooled, p["attn_0"], st["attn_0"]), p["attn_1"],
                          st["attn_1"])
  if sigmoid_attention:
    attn = sigmoid(attn)
  attn = np.stack([nearest(a, (5, 7)) for a in attn])
  assert np.std(attn) > 0.05 and np.mean(main > 0) > 0.3
  got = jax.jit(lambda v, t: module.apply(v, t, False))(v32, jnp.asarray(x, jnp.float32))
  close(got, attn * main + attn, 1e-4)


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
