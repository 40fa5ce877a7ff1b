"""The spatial attention core shared by NL, DNL, DANet's PAM, ISA and Denoised NL, with its
query-chunked form for whole-image inference at full resolution.

mmseg#99: NL runs out of memory on whole 1024x2048 images, where one image's N x N map at
output stride 8 is 4 GiB. When one image's float32 N x N map would exceed
`lowering.attention_max_bytes`, `spatial_attention` processes the queries in blocks
(`map_query_blocks`): the same outputs and gradients, never more than a (B, rows, N) slice of
the map. The limits are fields of `Lowering` (flaseg/models/lowering.py).
"""
import jax
import jax.numpy as jnp

from flaseg.models.lowering import DEFAULT, Lowering


def query_rows(batch: int, n_keys: int, chunk_bytes: int) -> int:
  """Queries per block such that the float32 (batch, rows, n_keys) slice fits `chunk_bytes`;
  at least 1."""
  return max(1, int(chunk_bytes // (4 * batch * n_keys)))


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


def spatial_attention(q, k, v, scale=1.0, lowering: Lowering = DEFAULT):
  """Softmax attention over all positions: softmax_m(q_n . k_m * scale) @ v (mmcv's
  embedded Gaussian NL, DANet's PAM, ISA's self-attention).

  q, k: (B, *S, D) queries and keys; v: (B, *S, E) values, with the same positions S (any
  spatial rank, flattened row-major as torch `.view(n, c, -1)`). The softmax runs over the
  keys (mmcv `softmax(dim=-1)`) in float32. Returns (B, *S, E).

  When one image's N x N float32 map exceeds `lowering.attention_max_bytes` (the shapes are
  static under jit), the queries run in blocks of `query_rows` rows (`map_query_blocks`):
  each row's softmax is the same, only the map is never whole.
  """
  b = q.shape[0]
  qf = q.reshape(b, -1, q.shape[-1])
  kf = k.reshape(b, -1, k.shape[-1])
  vf = v.reshape(b, -1, v.shape[-1])
  if qf.shape[1] * kf.shape[1] * 4 <= lowering.attention_max_bytes:
    out = _softmax_attention(qf, kf, vf, scale)
  else:
    rows = query_rows(b, kf.shape[1], lowering.attention_chunk_bytes)
    out = map_query_blocks(lambda qi, ki, vi: _softmax_attention(qi, ki, vi, scale), (qf,),
                           (kf, vf), rows)
  return out.reshape(*q.shape[:-1], vf.shape[-1])
