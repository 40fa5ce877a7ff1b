"""grain transforms on examples `{"image": uint8 (H, W, 3), "label": uint8 (H, W), ...}`.

Random transforms take all their randomness from the `np.random.Generator` that grain
passes in (seeded from the pipeline seed and the example's position), so an augmented
example depends only on (seed, position): pipelines stay deterministic and resumable.
Keys other than "image" and "label" (e.g. "name") pass through unchanged.
"""
from typing import Optional, Sequence

import grain
import numpy as np
from PIL import Image

from flaseg.errors import ConfigError


def _resize(array: np.ndarray, height: int, width: int, resample) -> np.ndarray:
  """Resizes a uint8 (H, W) or (H, W, 3) array with PIL."""
  return np.asarray(Image.fromarray(array).resize((width, height), resample))


class RandomScaleCropFlip(grain.transforms.RandomMap):
  """Random scale, pad, crop and horizontal flip, shared by image and label.

  The image is resized bilinearly and the label with nearest neighbour by a factor drawn
  uniformly from `scale_range`; both are padded on the bottom and right to at least
  `crop_size` (image with 0, label with `ignore_label`), cropped at a random position to
  `crop_size` = (height, width), and flipped left-right with probability 1/2 if `flip`.

  Options for the recipes that crop otherwise:
  - `cat_max_ratio` < 1 (mmseg's `RandomCrop(cat_max_ratio=0.75)`): the crop position is
    drawn again, up to 10 times, while one class (`ignore_label` aside) covers
    `cat_max_ratio` or more of the crop or the crop holds a single class; the 11th position
    is kept unchecked, as mmseg does.
  - `upsize_crop` (AttaNet's transform.py `RandomCrop`): a scaled image smaller than the crop
    is resized up to int(s * w + 1) x int(s * h + 1), s = max(crop_w / w, crop_h / h), so that
    it covers the crop, instead of being padded (AttaNet's s, for its square crops).
  - `rotate90` (AttaNet's `Rotation`): with this probability the (flipped) image and label
    are rotated by 90 degrees counter-clockwise (PIL's ROTATE_90) before scaling; as AttaNet
    flips before it rotates, the flip is then done first.
  - `pad=False` leaves crops smaller than `crop_size` unpadded, for a transform that must see
    only image pixels (mmseg's `PhotoMetricDistortion`) before `PadCrop`.
  """

  def __init__(self, crop_size: Sequence[int], scale_range: Sequence[float] = (0.5, 2.0),
               flip: bool = True, ignore_label: int = 255, cat_max_ratio: float = 1.0,
               upsize_crop: bool = False, rotate90: float = 0.0, pad: bool = True):
    self.crop_size = tuple(int(s) for s in crop_size)
    self.scale_range = tuple(float(s) for s in scale_range)
    self.flip = flip
    if not 0 <= int(ignore_label) <= 255:
      raise ConfigError(f"ignore_label={ignore_label}: labels are uint8, expected 0..255")
    self.ignore_label = int(ignore_label)
    if not 0 < float(cat_max_ratio) <= 1:
      raise ConfigError(f"config.data.cat_max_ratio={cat_max_ratio!r}: expected 0 < ratio <= 1 "
                        f"(1 turns the check off)")
    self.cat_max_ratio = float(cat_max_ratio)
    if not 0 <= float(rotate90) <= 1:
      raise ConfigError(f"config.data.rotate90={rotate90!r}: expected a probability in [0, 1]")
    self.rotate90 = float(rotate90)
    self.upsize_crop = bool(upsize_crop)
    self.pad = bool(pad)

  def _crop_ok(self, label: np.ndarray) -> bool:
    """mmseg's cat_max_ratio rule: >1 class and none covering `cat_max_ratio` or more."""
    counts = np.bincount(label.ravel(), minlength=256)
    counts[self.ignore_label] = 0
    counts = counts[counts > 0]
    return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

  def random_map(self, element: dict, rng: np.random.Generator) -> dict:
    image, label = element["image"], element["label"]
    crop_h, crop_w = self.crop_size
    # Draw everything up front, in a fixed order, so the draws never depend on the data
    # (the options' draws come after the default ones, which they leave unchanged).
    scale = rng.uniform(*self.scale_range)
    offsets = [rng.random(2)]
    flip = self.flip and rng.random() < 0.5
    if self.cat_max_ratio < 1:
      offsets += list(rng.random((10, 2)))
    rotate = self.rotate90 > 0 and rng.random() < self.rotate90

    if rotate:
      if flip:
        image, label = image[:, ::-1], label[:, ::-1]
        flip = False
      image = np.ascontiguousarray(np.rot90(image))
      label = np.ascontiguousarray(np.rot90(label))

    h, w = label.shape
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if self.upsize_crop and (new_h < crop_h or new_w < crop_w):
      up = max(crop_w / new_w, crop_h / new_h)
      new_h, new_w = int(up * new_h + 1), int(up * new_w + 1)
    if (new_h, new_w) != (h, w):
      image = _resize(image, new_h, new_w, Image.BILINEAR)
      label = _resize(label, new_h, new_w, Image.NEAREST)

    for offset_y, offset_x in offsets:
      y0 = int(offset_y * (max(new_h - crop_h, 0) + 1))
      x0 = int(offset_x * (max(new_w - crop_w, 0) + 1))
      label_crop = label[y0:y0 + crop_h, x0:x0 + crop_w]
      if len(offsets) == 1 or self._crop_ok(label_crop):
        break
    image, label = image[y0:y0 + crop_h, x0:x0 + crop_w], label_crop
    if self.pad:
      image, label = _pad(image, label, self.crop_size, self.ignore_label)
    if flip:
      image, label = image[:, ::-1], label[:, ::-1]
    return {**element, "image": np.ascontiguousarray(image, np.uint8),
            "label": np.ascontiguousarray(label, np.uint8)}


def _pad(image: np.ndarray, label: np.ndarray, size: Sequence[int], ignore_label: int):
  """Pads image (with 0) and label (with `ignore_label`) on the bottom and right to `size`."""
  h, w = label.shape
  pad_h, pad_w = max(size[0], h), max(size[1], w)
  if (pad_h, pad_w) == (h, w):
    return image, label
  padded_image = np.zeros((pad_h, pad_w, 3), np.uint8)
  padded_label = np.full((pad_h, pad_w), ignore_label, np.uint8)
  padded_image[:h, :w] = image
  padded_label[:h, :w] = label
  return padded_image, padded_label


class PadCrop(grain.transforms.Map):
  """Pads image (0) and label (`ignore_label`) on the bottom and right to `crop_size`, as
  mmseg's data preprocessor pads its batch after the photometric distortion."""

  def __init__(self, crop_size: Sequence[int], ignore_label: int = 255):
    self.crop_size = tuple(int(s) for s in crop_size)
    self.ignore_label = int(ignore_label)

  def map(self, element: dict) -> dict:
    image, label = _pad(element["image"], element["label"], self.crop_size, self.ignore_label)
    return {**element, "image": image, "label": label}


def _grayscale(image: np.ndarray) -> np.ndarray:
  """ITU-R 601 luma (as torchvision's `rgb_to_grayscale`), shape (H, W, 1)."""
  return image @ np.array([[0.299], [0.587], [0.114]], np.float32)


class ColorJitter(grain.transforms.RandomMap):
  """Random brightness, contrast and saturation of the image, like torchvision's.

  Each factor is drawn uniformly from [max(0, 1 - x), 1 + x]; the three adjustments are
  applied in a random order, each clipped to [0, 255]: brightness scales the image,
  contrast blends with the mean grey level and saturation with the grey image.
  """

  def __init__(self, brightness: float = 0.25, contrast: float = 0.25,
               saturation: float = 0.25):
    self.strengths = (brightness, contrast, saturation)

  def random_map(self, element: dict, rng: np.random.Generator) -> dict:
    factors = [rng.uniform(max(0.0, 1.0 - s), 1.0 + s) for s in self.strengths]
    order = rng.permutation(3)
    image = element["image"].astype(np.float32)
    for op in order:
      if self.strengths[op] <= 0:
        continue
      if op == 0:  # Brightness: blend with black.
        image = image * factors[0]
      elif op == 1:  # Contrast: blend with the mean grey level.
        mean = _grayscale(image).mean()
        image = mean + factors[1] * (image - mean)
      else:  # Saturation: blend with the grey image.
        grey = _grayscale(image)
        image = grey + factors[2] * (image - grey)
      image = np.clip(image, 0.0, 255.0)
    return {**element, "image": np.round(image).astype(np.uint8)}


def _convert(array: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
  """alpha * array + beta in float32, clipped to [0, 255] and truncated to uint8 (mmseg's
  `PhotoMetricDistortion.convert`)."""
  return np.clip(array.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distortion(image: np.ndarray, brightness: Optional[float] = None,
                           contrast: Optional[float] = None,
                           saturation: Optional[float] = None, hue: Optional[int] = None,
                           contrast_first: bool = True) -> np.ndarray:
  """mmseg 1.2.2's `PhotoMetricDistortion` on a uint8 RGB image with given draws.

  In mmseg's order: brightness (add `brightness`), contrast (scale by `contrast`) if
  `contrast_first`, saturation (scale HSV's S by `saturation`), hue (add `hue` to HSV's H,
  modulo 180), contrast if not `contrast_first`; None skips an operation. Every step rounds
  to uint8 as mmseg does; HSV is OpenCV's uint8 HSV (H in [0, 180)), which on RGB input is
  mmseg's on BGR.
  """
  import cv2  # Only this transform needs OpenCV (mmseg's HSV is cv2's).
  if brightness is not None:
    image = _convert(image, beta=brightness)
  if contrast is not None and contrast_first:
    image = _convert(image, alpha=contrast)
  if saturation is not None:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hsv[:, :, 1] = _convert(hsv[:, :, 1], alpha=saturation)
    image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
  if hue is not None:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + hue) % 180
    image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
  if contrast is not None and not contrast_first:
    image = _convert(image, alpha=contrast)
  return image


class PhotoMetricDistortion(grain.transforms.RandomMap):
  """mmseg's `PhotoMetricDistortion` (mmseg/datasets/transforms/transforms.py) of the image.

  Each of brightness (+U(-`brightness_delta`, `brightness_delta`)), contrast
  (xU(`contrast_range`)), saturation (xU(`saturation_range`)) and hue (+ an integer in
  [-`hue_delta`, `hue_delta`), numpy's `randint`) is applied with probability 1/2, contrast
  first or last with probability 1/2 (`photometric_distortion` gives the order). The draws
  come from grain's generator instead of numpy's global one.
  """

  def __init__(self, brightness_delta: float = 32, contrast_range: Sequence[float] = (0.5, 1.5),
               saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: int = 18):
    self.brightness_delta = float(brightness_delta)
    self.contrast_range = tuple(float(x) for x in contrast_range)
    self.saturation_range = tuple(float(x) for x in saturation_range)
    self.hue_delta = int(hue_delta)

  def random_map(self, element: dict, rng: np.random.Generator) -> dict:
    apply = rng.random(4) < 0.5  # brightness, contrast, saturation, hue
    contrast_first = bool(rng.random() < 0.5)
    brightness = float(rng.uniform(-self.brightness_delta, self.brightness_delta))
    contrast = float(rng.uniform(*self.contrast_range))
    saturation = float(rng.uniform(*self.saturation_range))
    hue = int(rng.integers(-self.hue_delta, self.hue_delta))
    image = photometric_distortion(
        element["image"], brightness if apply[0] else None, contrast if apply[1] else None,
        saturation if apply[2] else None, hue if apply[3] else None, contrast_first)
    return {**element, "image": np.ascontiguousarray(image, np.uint8)}
