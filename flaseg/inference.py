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
