"""Denoised NL (Song, Li, Guo, Huang, TNNLS 2023): NL with global rectifying and local retention.

Reproduces maggiesong7/DenoisedNL `model.py` (attention-heads.md §5) on {'c3', 'c4', 'c5'}:

  f = ConvBNReLU 3x3 (2048 -> 512)(layer4)
  f = DownBlock(f)                  # BasicBlock stride 2, shortcut 3x3 s2 conv + BN + ReLU: 1/16
  f, aux2 = DenoisedNLBlock(f, layer3)   # official `DNL`; aux2 = conv_out3(layer3), the GR
                                         # classifier
  out  = DenoisedNLOutput(2560 -> 512 -> K)(cat[layer4, f])
  aux1 = DenoisedNLOutput(512 -> 64 -> K)(layer2)

DenoisedNLOutput is 3x3 conv + BN + ReLU + Dropout2d(0.05) + 1x1 conv with bias, without the
FLANet pre-upsampling (`OutputBlock(upsample=False)`). The backbone's multi-grid (4, 8, 16)
comes from the config (`model.backbone.multi_grid`).

Deviation: the official block upsamples its 1/16 output to exactly 2x and concatenates it with
layer4, which fails for odd feature sizes (e.g. 97 -> 49 -> 98); flaseg resizes to layer4's
size instead (bilinear, align_corners=True), identical whenever the 1/8 size is even.

Full-resolution inference: above `Lowering.relation_max_bytes` per image the rectified
relation is computed one block of query rows at a time (`attention.map_query_blocks`), never
as a whole N x N map.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaseg.models.attention import map_query_blocks, query_rows
from flaseg.models.heads.head import Head
from flaseg.models.heads.outputs import OutputBlock
from flaseg.models.layers import ConvBNReLU, batch_norm, conv, resize_bilinear
from flaseg.models.lowering import DEFAULT, Lowering

Dtype = Any


def local_retention_values(q, k, v):
  """The local retention (LR) term moved onto the values, NHWC -> (B, H, W, C).

  The official code re-weights the rectified relation R (B, N, N) by the 3x3 local relation
  L[j, o] = sigmoid(q_j . k_{j+o}) (keys zero-padded):
    R'[i, j] = sum_o R[i, j+o] L[j, o]   (`unfold` of R over the key grid, zero outside),
  then aggregates out_i = sum_j R'[i, j] v_j. Substituting m = j + o gives
    out_i = sum_m R[i, m] v'_m,   v'_m = sum_o L[m-o, o] v_{m-o}   (zero where m-o is outside),
  so the whole LR term is 9 shifted (B, H, W, C) products and R is never unfolded: the same
  result without the (B, N, 9, N) tensor (or even 9 copies of (B, N, N)).
  """
  _, h, w, _ = q.shape
  kp = jnp.pad(k, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = jnp.zeros_like(v)
  for di in range(3):
    for dj in range(3):
      # Offset o = (di - 1, dj - 1); the key of j + o sits at kp[j + (di, dj)].
      energy = jnp.sum(q * kp[:, di:di + h, dj:dj + w], axis=-1).astype(jnp.float32)
      term = jax.nn.sigmoid(energy).astype(v.dtype)[..., None] * v
      # v'[m] += term[m - o], zero where m - o is off the grid.
      tp = jnp.pad(term, ((0, 0), (1, 1), (1, 1), (0, 0)))
      out = out + tp[:, 2 - di:2 - di + h, 2 - dj:2 - dj + w]
  return out


def _rectified_aggregate(q, p, k, p_all, values):
  """(softmax_j(q_i . k_j) * sigmoid(p_i . p_j)) @ values for the queries q (B, n, c) with
  their class probabilities p (B, n, K), against all keys k (B, N, c), p_all (B, N, K)."""
  relation = jax.nn.softmax(jnp.einsum("bic,bjc->bij", q, k).astype(jnp.float32), axis=-1)
  relation = relation * jax.nn.sigmoid(jnp.einsum("bik,bjk->bij", p, p_all))
  return jnp.einsum("bij,bjc->bic", relation.astype(values.dtype), values)


def denoised_attention(q, k, v, probs, lowering: Lowering = DEFAULT):
  """The DNL core, NHWC: R = softmax_j(q_i . k_j) * sigmoid(P_i . P_j) (global rectifying;
  P = class probabilities (B, H, W, K); no re-normalisation, no scaling), then local retention
  (see `local_retention_values`). Returns the aggregated values (B, H, W, C), no residual.

  When one image's N x N float32 relation exceeds `lowering.relation_max_bytes` (lower than
  `attention_max_bytes`: the direct form holds several N x N maps) it is computed for one
  block of query rows at a time (same outputs and gradients)."""
  b, h, w, _ = q.shape
  n = h * w
  qf, kf = q.reshape(b, n, -1), k.reshape(b, n, -1)
  p = probs.reshape(b, n, -1).astype(jnp.float32)
  values = local_retention_values(q, k, v).reshape(b, n, -1)
  if n * n * 4 <= lowering.relation_max_bytes:
    out = _rectified_aggregate(qf, p, kf, p, values)
  else:
    rows = query_rows(b, n, lowering.attention_chunk_bytes)
    out = map_query_blocks(_rectified_aggregate, (qf, p), (kf, p, values), rows)
  return out.reshape(b, h, w, v.shape[-1])


class DownBlock(nn.Module):
  """`BasicBlock(512, 512, stride=2, downsample=interp)`: 3x3 s2 conv, BN, ReLU, 3x3 conv, BN,
  plus the shortcut `interp` = 3x3 s2 conv + BN + ReLU, then ReLU."""
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, x, train):
    c = x.shape[-1]
    kw = dict(dtype=self.dtype, lowering=self.lowering)
    y = conv(c, 3, 2, **kw, name="conv1")(x)
    y = nn.relu(batch_norm(train, self.dtype, name="bn1")(y))
    y = conv(c, 3, **kw, name="conv2")(y)
    y = batch_norm(train, self.dtype, name="bn2")(y)
    shortcut = ConvBNReLU(c, 3, 2, **kw, name="interp")(x, train)
    return nn.relu(y + shortcut)


def rectified_attention(module: nn.Module, x, probs, reduction: int = 8):
  """x + gamma * denoised_attention(q, k, v, probs) (gamma init 0); q, k: 1x1 conv -> C /
  `reduction`, v: 1x1 conv -> C (no bias, no BN). Creates its layers in `module` (call it from
  a compact method; scripts/cost.py counts it)."""
  c = x.shape[-1]
  kw = dict(dtype=module.dtype, lowering=module.lowering)
  q = conv(max(c // reduction, 1), 1, **kw, name="conv1")(x)
  k = conv(max(c // reduction, 1), 1, **kw, name="conv2")(x)
  v = conv(c, 1, **kw, name="conv3")(x)
  gamma = module.param("gamma", nn.initializers.zeros, (), jnp.float32)
  return x + gamma.astype(x.dtype) * denoised_attention(q, k, v, probs, module.lowering)


class DenoisedNLBlock(nn.Module):
  """The official `DNL(plane, K)` on the 1/16 map `x` with the layer3 features `x2` for the
  rectifier.

  `conv_out3` classifies layer3; its logits, resized to x's grid (bilinear,
  align_corners=True) and softmaxed over classes, give P; then `rectified_attention`, resized
  to `out_size` (bilinear, align_corners=True), then 3x3 conv + BN + ReLU. Returns (out,
  layer3 logits).
  """
  num_classes: int
  gr_channels: int = 512
  reduction: int = 8
  dropout: float = 0.05
  dtype: Dtype = jnp.float32
  lowering: Lowering = DEFAULT

  @nn.compact
  def __call__(self, x, x2, out_size, train):
    aux = OutputBlock(self.num_classes, self.gr_channels, dropout=self.dropout,
                      dtype=self.dtype, lowering=self.lowering, name="conv_out3")(x2, train)
    pred = resize_bilinear(aux.astype(jnp.float32), x.shape[1:3], align_corners=True)
    y = rectified_attention(self, x, jax.nn.softmax(pred, axis=-1), self.reduction)
    y = resize_bilinear(y, out_size, align_corners=True)
    return ConvBNReLU(x.shape[-1], 3, dtype=self.dtype, lowering=self.lowering,
                      name="conv")(y, train), aux


class DenoisedNLHead(Head):
  """Denoised NL head on {'c3', 'c4', 'c5'}; see the module docstring. Outputs 'out', 'aux1'
  (layer2) and 'aux2' (the layer3 classifier of the global rectifier), at 1/8."""
  channels: int = 512
  aux_channels: int = 64
  gr_channels: int = 512
  dropout: float = 0.05

  @nn.compact
  def __call__(self, feats, train: bool = False):
    kw = self.layer_kw
    x3 = feats["c5"]
    f = ConvBNReLU(self.channels, 3, **kw, name="conv")(x3, train)
    f = DownBlock(**kw, name="down_sample")(f, train)
    f, aux2 = DenoisedNLBlock(self.num_classes, self.gr_channels, dropout=self.dropout, **kw,
                              name="dnl")(f, feats["c4"], x3.shape[1:3], train)
    out = OutputBlock(self.num_classes, self.channels, dropout=self.dropout, **kw,
                      name="conv_out1")(jnp.concatenate([x3, f], -1), train)
    aux1 = OutputBlock(self.num_classes, self.aux_channels, dropout=self.dropout, **kw,
                       name="conv_out2")(feats["c3"], train)
    return {"out": out, "aux1": aux1, "aux2": aux2}
