"""Query-chunked attention (`attention.map_query_blocks`): the spatial attention core
`spatial_attention` and the Denoised NL core `denoised_attention` give the direct form's
outputs and gradients, are chosen automatically above the `Lowering` limits, and never hold
the N x N map (XLA's buffer assignment).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaseg.models.attention import query_rows, spatial_attention
from flaseg.models.heads import denoised_nl
from flaseg.models.lowering import Lowering

B, H, W = 2, 5, 7  # N = 35 positions
SMALL_CHUNKS = 4 * B * H * W * 6  # blocks of 6 query rows at N = 35: 6 blocks, the last padded
# Buffer assignment without the CPU library fusions, which hide their buffers.
NO_YNN = {"xla_cpu_experimental_ynn_fusion_type": ""}


def rand(seed, *shape):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def lowering(max_bytes, chunk_bytes=SMALL_CHUNKS):
  return Lowering(attention_max_bytes=max_bytes, relation_max_bytes=max_bytes,
                  attention_chunk_bytes=chunk_bytes)


def close(a, b):
  """Equal pytrees: the same structure and shapes, and values within float32 rounding."""
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert x.shape == y.shape
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_small_chunks_are_six_rows():
  assert query_rows(B, H * W, SMALL_CHUNKS) == 6


def test_spatial_attention_chunked_equals_direct():
  theta, phi, g = rand(0, B, H, W, 8), rand(1, B, H, W, 8), rand(2, B, H, W, 6)
  ct = rand(3, B, H, W, 6)

  def run(max_bytes):
    f = lambda t, p, v: spatial_attention(t, p, v, 0.3, lowering(max_bytes))  # noqa: E731
    out, vjp = jax.vjp(f, theta, phi, g)
    return out, vjp(ct)

  direct, chunked = run(float("inf")), run(0)
  close(direct, chunked)


def test_denoised_attention_chunked_equals_direct():
  q, k, v = rand(0, B, H, W, 4), rand(1, B, H, W, 4), rand(2, B, H, W, 6)
  probs = jax.nn.softmax(rand(3, B, H, W, 5), axis=-1)
  ct = rand(4, B, H, W, 6)

  def run(max_bytes):
    f = lambda *a: denoised_nl.denoised_attention(*a, lowering(max_bytes))  # noqa: E731
    out, vjp = jax.vjp(f, q, k, v, probs)
    return out, vjp(ct)

  direct, chunked = run(float("inf")), run(0)
  close(direct, chunked)


def _has_loop(f, *shapes):
  jaxpr = jax.make_jaxpr(f)(*(jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes))
  return "scan" in str(jaxpr) or "while" in str(jaxpr)


def test_automatic_selection():
  """With the default limits: direct at training crops, chunked at whole-image 1024x2048
  (traced only, not run)."""
  attend = lambda t: spatial_attention(t, t, t)  # noqa: E731
  assert not _has_loop(attend, (8, 97, 97, 64))           # 769 crops at OS8: 354 MB per image
  assert _has_loop(attend, (1, 128, 256, 64))             # 1024x2048 at OS8: 4 GiB
  denoise = lambda t, p: denoised_nl.denoised_attention(t, t, t, p)  # noqa: E731
  assert not _has_loop(denoise, (8, 48, 48, 64), (8, 48, 48, 19))   # 768 crops at 1/16
  assert _has_loop(denoise, (1, 64, 128, 64), (1, 64, 128, 19))     # 1024x2048 at 1/16


def _peak_bytes(f, *shapes):
  args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
  m = jax.jit(f).lower(*args).compile(NO_YNN).memory_analysis()
  return m.temp_size_in_bytes + m.output_size_in_bytes


@pytest.mark.parametrize("core", ["spatial", "denoised"])
def test_chunked_never_holds_the_map(core):
  """N = 4096: the direct program holds the 64 MiB N x N map; the chunked one (1 MiB blocks
  of it, a few live at a time) stays under a quarter of it, forward and forward + backward."""
  n_map = (64 * 64) ** 2 * 4
  q, v, p = (1, 64, 64, 16), (1, 64, 64, 32), (1, 64, 64, 19)
  if core == "spatial":
    shapes = (q, q, v)

    def fwd(max_bytes):
      return lambda a, b, c: spatial_attention(a, b, c, 1.0, lowering(max_bytes, 2**20))
  else:
    shapes = (q, q, v, p)

    def fwd(max_bytes):
      return lambda *a: denoised_nl.denoised_attention(*a, lowering(max_bytes, 2**20))

  def train(max_bytes):
    return jax.grad(lambda *a: jnp.sum(fwd(max_bytes)(*a) ** 2), argnums=(0, 1, 2))

  assert _peak_bytes(fwd(float("inf")), *shapes) >= n_map
  assert _peak_bytes(fwd(0), *shapes) < n_map / 4
  assert _peak_bytes(train(float("inf")), *shapes) >= n_map
  assert _peak_bytes(train(0), *shapes) < n_map / 4
