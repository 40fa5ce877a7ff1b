"""The spatial attention core shared by NL, DNL, DANet's PAM, ISA and Denoised NL, with its
query-chunked form for whole-image inference at full resolution.

mmseg#99: NL runs out of memory on whole 1024x2048 images, where one image's N x N map at
output stride 8 is 4 GiB. When one image's float32 N x N map would exceed
`lowering.attention_max_bytes`, `spatial_attention` processes the queries in blocks
(`map_query_blocks`): the same outputs and gradients, never more than a (B, rows, N) slice of
the map. The limits are fields of `Lowering` (flaseg/models/lowering.py).

`Lowering.attention` chooses the kernel: 'chunked' is the above; 'xla' and 'cudnn' are
`jax.nn.dot_product_attention` (cuDNN's fused flash attention never holds the map at all);
'auto' takes cuDNN on a CUDA backend where it fits, else 'chunked' (`attention_implementation`).
"""
import jax
import jax.numpy as jnp

from flaseg.errors import ConfigError
from flaseg.models.lowering import DEFAULT, Lowering

# cuDNN's fused attention: half-precision inputs and a head size up to 256 (Hopper and later;
# 128 before), a multiple of 8 (jax._src.cudnn.fused_attention_stablehlo.check_is_flash_attention).
CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)
CUDNN_MAX_HEAD = 256


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


def chunked_attention(q, k, v, scale, lowering: Lowering = DEFAULT):
  """(B, N, D) q, k and (B, N, E) v: whole, or query-chunked above
  `lowering.attention_max_bytes` per image."""
  if q.shape[1] * k.shape[1] * 4 <= lowering.attention_max_bytes:
    return _softmax_attention(q, k, v, scale)
  rows = query_rows(q.shape[0], k.shape[1], lowering.attention_chunk_bytes)
  return map_query_blocks(lambda qi, ki, vi: _softmax_attention(qi, ki, vi, scale), (q,),
                          (k, v), rows)


def spatial_attention(q, k, v, scale=1.0, lowering: Lowering = DEFAULT):
  """Softmax attention over all positions: softmax_m(q_n . k_m * scale) @ v (mmcv's
  embedded Gaussian NL, DANet's PAM, ISA's self-attention).

  q, k: (B, *S, D) queries and keys; v: (B, *S, E) values, with the same positions S (any
  spatial rank, flattened row-major as torch `.view(n, c, -1)`). The softmax runs over the
  keys (mmcv `softmax(dim=-1)`) in float32. Returns (B, *S, E).

  When one image's N x N float32 map exceeds `lowering.attention_max_bytes` (the shapes are
  static under jit), the queries run in blocks of `query_rows` rows (`map_query_blocks`):
  each row's softmax is the same, only the map is never whole. `lowering.attention` may
  choose `fused_attention` instead (`attention_implementation`).
  """
  b = q.shape[0]
  qf = q.reshape(b, -1, q.shape[-1])
  kf = k.reshape(b, -1, k.shape[-1])
  vf = v.reshape(b, -1, v.shape[-1])
  implementation = attention_implementation(qf, vf, lowering)
  if implementation == "chunked":
    out = chunked_attention(qf, kf, vf, scale, lowering)
  else:
    try:
      out = fused_attention(qf, kf, vf, scale, implementation)
    except ConfigError:
      if lowering.attention != "auto":  # 'auto' falls back where cuDNN refuses the shapes
        raise
      out = chunked_attention(qf, kf, vf, scale, lowering)
  return out.reshape(*q.shape[:-1], vf.shape[-1])


def _round8(n: int) -> int:
  return -(-n // 8) * 8


def cudnn_unfit(q, v) -> str:
  """Why cuDNN's fused attention cannot take (B, N, D) queries and (B, N, E) values; ''
  where it can: the backend, the dtype and the query head size (values of any width are
  split into heads of at most `CUDNN_MAX_HEAD`, see `fused_attention`)."""
  if jax.default_backend() != "gpu":
    return f"cuDNN runs on a CUDA GPU and the backend is {jax.default_backend()!r}"
  if q.dtype not in CUDNN_DTYPES or v.dtype not in CUDNN_DTYPES:
    return f"cuDNN attention takes bfloat16/float16, got {q.dtype} (config.model.dtype)"
  if _round8(q.shape[-1]) > CUDNN_MAX_HEAD:
    return (f"query/key size {q.shape[-1]} is above cuDNN's head size limit "
            f"{CUDNN_MAX_HEAD}")
  return ""


def attention_implementation(q, v, lowering: Lowering = DEFAULT) -> str:
  """'chunked', 'xla' or 'cudnn' for (B, N, D) queries and (B, N, E) values, as
  `lowering.attention` says; 'auto' is cuDNN where `cudnn_unfit` finds nothing against it,
  else 'chunked'. A ConfigError (one line) where 'cudnn' was asked for and cannot run."""
  if lowering.attention in ("chunked", "xla"):
    return lowering.attention
  reason = cudnn_unfit(q, v)
  if lowering.attention == "cudnn" and reason:
    raise ConfigError(f"config.model.lowering.attention='cudnn': {reason}")
  return "chunked" if reason else "cudnn"


def fused_attention(q, k, v, scale, implementation: str, max_head=None):
  """`spatial_attention` of (B, N, D) q, k and (B, N, E) v by `jax.nn.dot_product_attention`,
  which takes one head size h for all three: q and k are zero-padded to h (zeros add nothing
  to q . k), and v is zero-padded and split into heads of h that share q and k (each head's
  softmax is the same; its output columns are v's). h is max(D, E) for 'xla'; for 'cudnn' (or
  with `max_head`) at most `CUDNN_MAX_HEAD`, a multiple of 8 (DANet's PAM: q/k 64, v 512 ->
  2 heads of 256)."""
  b, n, d = q.shape
  e = v.shape[-1]
  max_head = max_head or (CUDNN_MAX_HEAD if implementation == "cudnn" else max(d, e))
  heads = -(-e // max_head)
  h = max(d, -(-e // heads))
  h = _round8(h) if implementation == "cudnn" else h

  def pad(a, width):
    return jnp.pad(a, ((0, 0), (0, 0), (0, width - a.shape[-1])))
  qh, kh = (jnp.broadcast_to(pad(a, h)[:, :, None], (b, a.shape[1], heads, h)) for a in (q, k))
  vh = pad(v, heads * h).reshape(b, v.shape[1], heads, h)
  try:
    out = jax.nn.dot_product_attention(qh, kh, vh, scale=scale, implementation=implementation)
  except (RuntimeError, NotImplementedError) as err:  # no cuDNN, or a shape it refuses
    raise ConfigError(f"config.model.lowering.attention={implementation!r}: "
                      f"{str(err).splitlines()[0]}") from None
  return out.reshape(b, n, heads * h)[:, :, :e]
