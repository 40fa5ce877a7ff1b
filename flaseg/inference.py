"""Whole-image and sliding-window inference, multi-scale and flip (pure functions).

`logits_fn(images) -> (B, h, w, K)` logits at the images' resolution (the model's 'out').
"""
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from flaseg.models.layers import resize_bilinear
from flaseg.errors import ConfigError


# whole: the image as it is; slide: mmseg's sliding windows of crop_size every stride;
# resize: the image resized to crop_size (x scale), predicted whole, the logits resized back to
# the label's size (AttaNet's real-time protocol: 1024x2048 -> 512x1024 inside the model).
MODES = ("whole", "slide", "resize")


def check_mode(mode: str) -> None:
  """A one-line error for an unknown `config.eval.mode`, before anything is compiled."""
  if mode not in MODES:
    raise ConfigError(f"config.eval.mode={mode!r}: choose one of {MODES}")


def window_starts(size: int, crop: int, stride: int):
  """mmseg `slide_inference` grid along one axis: windows of `crop` every `stride`, the last
  one shifted back to end at the border; one window covering all if the image is smaller."""
  crop = min(crop, size)
  n = max(size - crop + stride - 1, 0) // stride + 1
  return sorted({max(min(i * stride, size - crop), 0) for i in range(n)}), crop


def slide_logits(logits_fn: Callable, images, crop_size: Sequence[int], stride: Sequence[int]):
  """Average of the logits of overlapping windows (mmseg `slide_inference`). All windows of
  the batch run as one batch of crops, so each scale compiles a single model call."""
  b, h, w, _ = images.shape
  ys, ch = window_starts(h, crop_size[0], stride[0])
  xs, cw = window_starts(w, crop_size[1], stride[1])
  crops = jnp.concatenate([images[:, y:y + ch, x:x + cw] for y in ys for x in xs], axis=0)
  out = logits_fn(crops)
  k = out.shape[-1]
  total = jnp.zeros((b, h, w, k), out.dtype)
  count = jnp.zeros((1, h, w, 1), out.dtype)
  for i, (y, x) in enumerate((y, x) for y in ys for x in xs):
    total = total.at[:, y:y + ch, x:x + cw].add(out[i * b:(i + 1) * b])
    count = count.at[:, y:y + ch, x:x + cw].add(1.0)
  return total / count


def predict_probs(logits_fn: Callable, images, *, mode: str = "whole", scales=(1.0,),
                  flip: bool = False, crop_size=(512, 512), stride=(341, 341),
                  out_size=None, align_corners: bool = False):
  """Mean softmax probability over `scales` (image resized by each, bilinear; in mode
  'resize', `crop_size` resized by each) and, with `flip`, horizontal flips; every prediction
  is resized to `out_size` (default: the input's) before averaging. Returns (B, H, W, K)
  float32."""
  b, h, w, _ = images.shape
  out_size = (h, w) if out_size is None else tuple(out_size)
  x = images.astype(jnp.float32)
  if flip:
    x = jnp.concatenate([x, x[:, :, ::-1]], axis=0)
  probs = 0.0
  check_mode(mode)
  base = tuple(crop_size) if mode == "resize" else (h, w)
  for s in scales:
    size = (int(math.floor(base[0] * s + 0.5)), int(math.floor(base[1] * s + 0.5)))
    xs = resize_bilinear(x, size, align_corners=False)  # image resize: half-pixel, as cv2
    if mode in ("whole", "resize"):
      logits = logits_fn(xs)
    else:
      logits = slide_logits(logits_fn, xs, crop_size, stride)
    p = jax.nn.softmax(resize_bilinear(logits.astype(jnp.float32), out_size, align_corners), -1)
    if flip:
      p = p[:b] + p[b:, :, ::-1]
    probs = probs + p
  return probs / (len(scales) * (2 if flip else 1))


def _source_taps(n_in, n_out, n_max: int, align_corners: bool):
  """Bilinear taps (i0, i1, t) of `n_max` output positions resizing n_in -> n_out (traced
  ints), as torch's F.interpolate (half-pixel with negatives clamped, or align_corners)."""
  o = jnp.arange(n_max, dtype=jnp.float32)
  n_in, n_out = n_in.astype(jnp.float32), n_out.astype(jnp.float32)
  if align_corners:
    src = o * (n_in - 1) / jnp.maximum(n_out - 1, 1)
  else:
    src = jnp.maximum((o + 0.5) * n_in / n_out - 0.5, 0.0)
  src = jnp.minimum(src, n_in - 1)
  i0 = jnp.floor(src).astype(jnp.int32)
  i1 = jnp.minimum(i0 + 1, n_in.astype(jnp.int32) - 1)
  return i0, i1, src - i0


def resize_rows(x, sizes, out_shape: Sequence[int], out_sizes, align_corners: bool = False):
  """Resizes row b's top-left `sizes[b]` = (h, w) region of x (B, H, W, C) bilinearly to
  `out_sizes[b]` at the top-left of a (B, *out_shape, C) result (beyond it: edge values).
  The per-row sizes are traced, so one compiled step serves every image size of a padded
  batch (mmseg's resize of each prediction back to its image's original size)."""
  oh, ow = int(out_shape[0]), int(out_shape[1])

  def one(xb, size, out_size):
    y0, y1, ty = _source_taps(size[0], out_size[0], oh, align_corners)
    x0, x1, tx = _source_taps(size[1], out_size[1], ow, align_corners)
    rows = xb[y0] * (1 - ty)[:, None, None] + xb[y1] * ty[:, None, None]
    return rows[:, x0] * (1 - tx)[None, :, None] + rows[:, x1] * tx[None, :, None]
  return jax.vmap(one)(x, sizes, out_sizes)
