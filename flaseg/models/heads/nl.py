"""NLHead: mmseg `nl_head.py` with mmcv `NonLocal2d` (embedded Gaussian), attention-heads.md §7.1.

Also holds what the other mmseg heads (DNL, DANet, ISA, CC) share: the attention core
`nl_attention` and `plain_conv` (a torch `nn.Conv2d` with its default init).

Whole-image inference at full resolution (mmseg#99: NL runs out of memory at 1024x2048, where
one image's N x N map at output stride 8 is 4 GiB): when one image's float32 N x N map would
exceed `MAX_ATTENTION_BYTES`, `nl_attention` runs query-chunked (`map_query_blocks`), with the
same outputs and gradients and never more than a (B, rows, N) slice of the map.

Init follows mmcv where it is visible at init: theta/phi/g are normal(0.01) with zero bias and
the BN after `conv_out` starts at weight 0, bias 0 (`zeros_init=True`), so the block is the
identity at init. ConvModules (conv + BN + ReLU) use flaseg's `ConvBNReLU` init, not mmcv's
kaiming fan_out; a BN follows each of them, so only the pre-BN scale differs.
"""
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaseg.models.conv import conv_general_dilated
from flaseg.models.heads.fcn import FCNHead
from flaseg.models.layers import batch_norm, conv

Dtype = Any


def torch_bias_init(fan_in: int):
  """torch `nn.Conv2d` default bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def plain_conv(features: int, fan_in: int, dtype: Dtype = jnp.float32, name=None,
               kernel_init=None, bias_init=None) -> nn.Conv:
  """A 1x1 torch `nn.Conv2d(bias=True)`. Default init as torch: kernel and bias
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5))."""
  return nn.Conv(features, (1, 1), padding=((0, 0), (0, 0)), use_bias=True, dtype=dtype,
                 param_dtype=jnp.float32,
                 kernel_init=kernel_init or nn.initializers.variance_scaling(
                     1.0 / 3.0, "fan_in", "uniform"),
                 bias_init=bias_init or torch_bias_init(fan_in),
                 conv_general_dilated=conv_general_dilated, name=name)


# Above this many bytes for ONE image's float32 N x N attention map, `nl_attention` processes
# the queries in blocks instead of materialising the map. 1 GiB: whole-image 1024x2048 at output
# stride 8 (N = 32768, 4 GiB) is chunked; training crops (769: 354 MB) stay direct. Per image,
# not per batch: under jit over a mesh the traced batch is the global one, not a device's.
# Set it to 0 to always chunk, or to float('inf') never to.
MAX_ATTENTION_BYTES = 2**30
# Bytes of the float32 (B, rows, N) map slice of one query block (sets `rows`): 64 MiB.
CHUNK_BYTES = 2**26


def query_rows(batch: int, n_keys: int) -> int:
  """Queries per block such that the float32 (batch, rows, n_keys) slice fits `CHUNK_BYTES`;
  at least 1."""
  return max(1, int(CHUNK_BYTES // (4 * batch * n_keys)))


def map_query_blocks(fn, queries, keys, rows: int):
  """out[:, block] = fn(*(a[:, block] for a in queries), *keys), one block of `rows` query
  positions at a time (`jax.lax.map`), so a query x key map is only ever held for one block.

  queries: tuple of (B, N, ...) arrays split along N (zero-padded up to whole blocks; the
  padded rows are dropped); keys: arrays passed whole to every block; fn returns (B, rows, E).
  `fn` is rematerialised (`jax.checkpoint`): the backward pass recomputes each block's map
  rather than keeping all of them. Returns (B, N, E).
  """
  b, n = queries[0].shape[:2]
  blocks = -(-n // rows)
  rows = -(-n // blocks)  # the same number of blocks, as little padding as possible
  pad = blocks * rows - n

  def split(a):
    a = jnp.pad(a, [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2))
    return jnp.moveaxis(a.reshape(b, blocks, rows, *a.shape[2:]), 1, 0)

  body = jax.checkpoint(fn, prevent_cse=False)
  out = jax.lax.map(lambda qs: body(*qs, *keys), tuple(split(a) for a in queries))
  out = jnp.moveaxis(out, 0, 1)
  return out.reshape(b, blocks * rows, *out.shape[3:])[:, :n]


def _softmax_attention(q, k, v, scale):
  """softmax_m(q_n . k_m * scale) @ v for q (B, n, D), k (B, M, D), v (B, M, E); float32
  logits and softmax."""
  logits = jnp.einsum("bnd,bmd->bnm", q, k, preferred_element_type=jnp.float32)
  attn = jax.nn.softmax(logits * scale, axis=-1).astype(v.dtype)
  return jnp.einsum("bnm,bme->bne", attn, v)


def nl_attention(theta, phi, g, scale=1.0, max_bytes=None):
  """Embedded-Gaussian attention over all positions: softmax_m(theta_n . phi_m * scale) @ g.

  theta, phi: (B, *S, D) queries and keys; g: (B, *S, E) values, with the same positions S
  (any spatial rank, flattened row-major as torch `.view(n, c, -1)`). The softmax runs over the
  keys (last axis, mmcv `softmax(dim=-1)`) in float32. Returns (B, *S, E).

  When one image's N x N float32 map exceeds `max_bytes` (default `MAX_ATTENTION_BYTES`; the
  shapes are static under jit), the queries are processed in blocks of `query_rows` rows
  (`map_query_blocks`): each row's softmax is the same, only the map is never whole.
  """
  b = theta.shape[0]
  q = theta.reshape(b, -1, theta.shape[-1])
  k = phi.reshape(b, -1, phi.shape[-1])
  v = g.reshape(b, -1, g.shape[-1])
  limit = MAX_ATTENTION_BYTES if max_bytes is None else max_bytes
  if q.shape[1] * k.shape[1] * 4 <= limit:
    out = _softmax_attention(q, k, v, scale)
  else:
    out = map_query_blocks(lambda qi, ki, vi: _softmax_attention(qi, ki, vi, scale), (q,),
                           (k, v), query_rows(b, k.shape[1]))
  return out.reshape(*theta.shape[:-1], v.shape[-1])


def nl_projections(x, inter: int, dtype: Dtype):
  """mmcv `_NonLocalNd` g, theta, phi: 1x1 ConvModules with bias and no norm/act, weights
  normal(0.01) and bias 0 (`init_weights(std=0.01)`). Called inside a compact module."""
  init = nn.initializers.normal(0.01)
  return [conv(inter, 1, bias=True, dtype=dtype, kernel_init=init, name=n)(x)
          for n in ("g", "theta", "phi")]


class ZeroInitConvBN(nn.Module):
  """mmcv NonLocal `conv_out`: 1x1 conv (no bias) + BN, no activation; with `zeros_init=True`
  the BN weight and bias start at 0 so that `x + conv_out(y)` starts as the identity."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = conv(self.features, 1, dtype=self.dtype, name="conv")(x)
    return batch_norm(train, self.dtype, name="bn", scale_init=nn.initializers.zeros)(x)


class NonLocal2d(nn.Module):
  """mmcv `NonLocal2d(C, reduction, use_scale, mode='embedded_gaussian')`:
  out = x + conv_out(softmax(theta phi^T / sqrt(C/r)) g)."""
  reduction: int = 2
  use_scale: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    inter = c // self.reduction
    g, theta, phi = nl_projections(x, inter, self.dtype)
    scale = inter ** -0.5 if self.use_scale else 1.0
    y = nl_attention(theta, phi, g, scale)
    return x + ZeroInitConvBN(c, self.dtype, name="conv_out")(y, train)


class NLHead(FCNHead):
  """mmseg NLHead on 'c5': FCNHead (convs_0 -> convs_1 -> conv_cat on cat[x, out] -> Dropout2d ->
  1x1) with NonLocal2d after convs_0, plus the aux head. Returns {'out', 'aux'}."""
  reduction: int = 2
  use_scale: bool = True
  aux_channels: int = 256

  def block(self, y, train):
    return NonLocal2d(self.reduction, self.use_scale, self.dtype, name="nl_block")(y, train)
