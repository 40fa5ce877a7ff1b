"""grain transforms on examples `{"image": uint8 (H, W, 3), "label": uint8 (H, W), ...}`.

Random transforms take all their randomness from the `np.random.Generator` that grain
passes in (seeded from the pipeline seed and the example's position), so an augmented
example depends only on (seed, position): pipelines stay deterministic and resumable.
Keys other than "image" and "label" (e.g. "name") pass through unchanged.
"""
from typing import Sequence

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
  """

  def __init__(self, crop_size: Sequence[int], scale_range: Sequence[float] = (0.5, 2.0),
               flip: bool = True, ignore_label: int = 255):
    self.crop_size = tuple(int(s) for s in crop_size)
    self.scale_range = tuple(float(s) for s in scale_range)
    self.flip = flip
    if not 0 <= int(ignore_label) <= 255:
      raise ConfigError(f"ignore_label={ignore_label}: labels are uint8, expected 0..255")
    self.ignore_label = int(ignore_label)

  def random_map(self, element: dict, rng: np.random.Generator) -> dict:
    image, label = element["image"], element["label"]
    crop_h, crop_w = self.crop_size
    # Draw everything up front, in a fixed order, so the draws never depend on the data.
    scale = rng.uniform(*self.scale_range)
    offset_y, offset_x = rng.random(2)
    flip = self.flip and rng.random() < 0.5

    h, w = label.shape
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) != (h, w):
      image = _resize(image, new_h, new_w, Image.BILINEAR)
      label = _resize(label, new_h, new_w, Image.NEAREST)

    pad_h, pad_w = max(crop_h, new_h), max(crop_w, new_w)
    if (pad_h, pad_w) != (new_h, new_w):
      padded_image = np.zeros((pad_h, pad_w, 3), np.uint8)
      padded_label = np.full((pad_h, pad_w), self.ignore_label, np.uint8)
      padded_image[:new_h, :new_w] = image
      padded_label[:new_h, :new_w] = label
      image, label = padded_image, padded_label

    y0 = int(offset_y * (pad_h - crop_h + 1))
    x0 = int(offset_x * (pad_w - crop_w + 1))
    image = image[y0:y0 + crop_h, x0:x0 + crop_w]
    label = label[y0:y0 + crop_h, x0:x0 + crop_w]
    if flip:
      image, label = image[:, ::-1], label[:, ::-1]
    return {**element, "image": np.ascontiguousarray(image, np.uint8),
            "label": np.ascontiguousarray(label, np.uint8)}


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
