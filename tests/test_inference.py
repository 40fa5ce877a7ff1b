"""Sliding-window, multi-scale and flip inference against naive loops (mmseg semantics)."""
import jax
import jax.numpy as jnp
import numpy as np

from flaseg import inference
from flaseg.models.layers import resize_bilinear


def _context_fn(x):
  """A 'model' whose logits depend on the whole crop (its mean) and on position."""
  k = 3
  b, h, w, _ = x.shape
  pos = jnp.arange(w, dtype=jnp.float32)[None, None, :, None] / w
  return x[..., :k] * 0.01 + x.mean(axis=(1, 2), keepdims=True)[..., :k] * 0.02 + pos


def _naive_slide(fn, img, crop, stride):
  """mmseg slide_inference, window by window."""
  b, h, w, _ = img.shape
  ch, cw = min(crop[0], h), min(crop[1], w)
  hg = max(h - ch + stride[0] - 1, 0) // stride[0] + 1
  wg = max(w - cw + stride[1] - 1, 0) // stride[1] + 1
  total = np.zeros((b, h, w, 3)); count = np.zeros((1, h, w, 1))
  for i in range(hg):
    for j in range(wg):
      y1, x1 = i * stride[0], j * stride[1]
      y2, x2 = min(y1 + ch, h), min(x1 + cw, w)
      y1, x1 = max(y2 - ch, 0), max(x2 - cw, 0)
      total[:, y1:y2, x1:x2] += np.asarray(fn(jnp.asarray(img[:, y1:y2, x1:x2])))
      count[:, y1:y2, x1:x2] += 1
  return total / count


def test_slide_matches_naive_windows():
  img = np.random.default_rng(0).uniform(0, 255, (2, 23, 37, 3)).astype(np.float32)
  for crop, stride in [((10, 16), (7, 11)), ((30, 40), (20, 20)), ((23, 12), (5, 12))]:
    got = inference.slide_logits(_context_fn, jnp.asarray(img), crop, stride)
    np.testing.assert_allclose(got, _naive_slide(_context_fn, img, crop, stride), rtol=1e-5)


def test_multiscale_flip_average_of_softmax():
  img = np.random.default_rng(1).uniform(0, 255, (1, 12, 20, 3)).astype(np.float32)
  got = inference.predict_probs(_context_fn, jnp.asarray(img), mode="whole", scales=(0.5, 1.5),
                                flip=True, align_corners=True)
  want = 0
  for s in (0.5, 1.5):
    for flip in (False, True):
      x = img[:, :, ::-1] if flip else img
      x = resize_bilinear(jnp.asarray(x), (round(12 * s), round(20 * s)), False)
      p = jax.nn.softmax(resize_bilinear(_context_fn(x), (12, 20), True), -1)
      want = want + (np.asarray(p)[:, :, ::-1] if flip else np.asarray(p))
  np.testing.assert_allclose(got, want / 4, rtol=1e-5, atol=1e-6)


def test_slide_with_window_covering_image_equals_whole():
  img = jnp.asarray(np.random.default_rng(2).uniform(0, 255, (2, 9, 13, 3)), jnp.float32)
  whole = inference.predict_probs(_context_fn, img, mode="whole")
  slide = inference.predict_probs(_context_fn, img, mode="slide", crop_size=(16, 16),
                                  stride=(8, 8))
  np.testing.assert_allclose(whole, slide, rtol=1e-6)


def test_resize_mode_predicts_at_crop_size_and_resizes_back():
  """Mode 'resize' (AttaNet's real-time protocol): the model sees the image resized to
  crop_size (bilinear, half-pixel), its logits are resized to the label size (align_corners
  as given) before the softmax; scales multiply crop_size."""
  seen = []

  def logits_fn(x):
    seen.append(x.shape)
    return x * 0.01  # 3 'classes': the resized image itself

  img = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (2, 12, 20, 3)), jnp.float32)
  got = inference.predict_probs(logits_fn, img, mode="resize", crop_size=(6, 10),
                                scales=(1.0, 0.5), align_corners=True)
  assert seen == [(2, 6, 10, 3), (2, 3, 5, 3)]
  want = 0.0
  for size in ((6, 10), (3, 5)):
    small = resize_bilinear(img, size, align_corners=False) * 0.01
    want = want + jax.nn.softmax(resize_bilinear(small, (12, 20), align_corners=True), -1)
  np.testing.assert_allclose(got, want / 2, rtol=1e-6, atol=1e-7)
