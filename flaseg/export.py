"""Predictions in each benchmark's submission format, and coloured images to look at
(`colorize`, `overlay`, and the image | ground truth | prediction panels of workdir/predictions).

With `--config.eval.export_dir=DIR` the evaluator writes, for every image it evaluates:

  DIR/submission/  what the benchmark's evaluator or server reads (`FORMATS`):
    cityscapes        <city>_<seq>_<frame>_leftImg8bit.png holding labelIds (7 road, ...,
                      33 bicycle): cityscapesScripts' evalPixelLevelSemanticLabeling finds
                      them by name (CITYSCAPES_RESULTS=DIR/submission); zip them for the server
    ade20k            <name>.png holding 1..150 (class k as k + 1), as the SceneParsing
                      benchmark reads them
    voc               results/VOC2012/Segmentation/comp6_test_cls/<name>.png, palette PNGs of
                      0..20 (tar `results/` for the VOC evaluation server)
    pascal_context_*  <name>.png, palette PNGs in SegmentationClassContext's values (59
                      classes: class k as k + 1; 60 classes: as is)
    palette           <name>.png, palette PNGs of the class ids (synthetic data)
  DIR/overlay/<name>.jpg  the image blended with the colours of its prediction.

Predictions have the size of the example's label; when the source resized the example
(`config.data.eval_resize`, recorded in "original_size") they are resized back, nearest
neighbour, so that submissions have the original image size.
"""
import os

import numpy as np
from PIL import Image

from flaseg.data import classes
from flaseg.errors import ConfigError

VOC_RESULTS = os.path.join("results", "VOC2012", "Segmentation", "comp6_test_cls")


def _cityscapes(name, pred, palette):
  del palette
  return f"{name}_leftImg8bit.png", classes.CITYSCAPES_LABEL_IDS[pred], None


def _ade20k(name, pred, palette):
  del palette
  return f"{name}.png", pred + 1, None


def _voc(name, pred, palette):
  del palette
  return os.path.join(VOC_RESULTS, f"{name}.png"), pred, classes.VOC_COLORMAP


def _context_59(name, pred, palette):
  del palette
  return f"{name}.png", pred + 1, classes.VOC_COLORMAP


def _context_60(name, pred, palette):
  del palette
  return f"{name}.png", pred, classes.VOC_COLORMAP


def _palette(name, pred, palette):
  return f"{name}.png", pred, palette


# export_format -> (name, uint8 (H, W) train ids, source palette) -> (path under submission/,
# uint8 (H, W) values to write, PNG palette or None for a grey PNG).
FORMATS = {
    "cityscapes": _cityscapes,
    "ade20k": _ade20k,
    "voc": _voc,
    "pascal_context_59": _context_59,
    "pascal_context_60": _context_60,
    "palette": _palette,
}


def colorize(label: np.ndarray, palette: np.ndarray) -> np.ndarray:
  """(H, W) class ids -> (H, W, 3) uint8 colours; ignored pixels (>= K) are black."""
  pal = np.concatenate([np.asarray(palette, np.uint8), np.zeros((256 - len(palette), 3), np.uint8)])
  return pal[np.asarray(label).astype(np.uint8)]


def save_comparison_png(path: str, image, label, pred, palette) -> None:
  """image | ground truth | prediction side by side."""
  panel = np.concatenate([np.asarray(image, np.uint8), colorize(label, palette),
                          colorize(pred, palette)], axis=1)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(panel).save(path)


def save_png(path: str, values: np.ndarray, palette=None) -> None:
  """A grey ('L') PNG of `values`, or a palette ('P') PNG whose indices are `values`."""
  image = Image.fromarray(np.ascontiguousarray(values, np.uint8))
  if palette is not None:
    pal = np.zeros((256, 3), np.uint8)
    pal[:len(palette)] = np.asarray(palette, np.uint8)[:256]
    image.putpalette(pal.ravel().tolist())  # 'L' -> 'P', indices unchanged
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image.save(path)


def overlay(image: np.ndarray, pred: np.ndarray, palette: np.ndarray,
            alpha: float = 0.5) -> np.ndarray:
  """The image blended with the palette colour of each predicted class."""
  pal = np.zeros((256, 3), np.float32)
  pal[:len(palette)] = np.asarray(palette, np.float32)
  mixed = (1 - alpha) * image.astype(np.float32) + alpha * pal[pred]
  return np.round(mixed).astype(np.uint8)


class Exporter:
  """Writes the predictions of a source's examples under `export_dir` (see module doc)."""

  def __init__(self, source, export_dir: str):
    self.source = source
    self.dir = os.path.abspath(os.path.expanduser(export_dir))
    self.format = getattr(source, "export_format", "palette")
    if self.format not in FORMATS:
      raise ConfigError(f"config.eval.export_dir: no export format {self.format!r}; known: "
                       f"{sorted(FORMATS)}")
    self.palette = np.asarray(source.palette, np.uint8)
    self.count = 0

  def write_batch(self, batch: dict, pred: np.ndarray) -> None:
    """The valid rows of a process-local eval batch (`batch["valid"]`, `batch["index"]`) and
    their (padded) predictions `pred` (B, H, W)."""
    for j in range(len(pred)):
      if batch["valid"][j]:
        self.write(int(batch["index"][j]), pred[j])

  def write(self, index: int, pred: np.ndarray) -> None:
    """Example `index`'s prediction, cropped from the padded batch to the example's size."""
    example = self.source[index]
    height, width = example["label"].shape
    pred = np.asarray(pred)[:height, :width].astype(np.uint8)
    name = example["name"]
    blend = overlay(example["image"], pred, self.palette)
    path = os.path.join(self.dir, "overlay", f"{name}.jpg")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(blend).save(path, quality=90)
    if "original_size" in example and tuple(example["original_size"]) != (height, width):
      h, w = example["original_size"]
      pred = np.asarray(Image.fromarray(pred).resize((w, h), Image.NEAREST))
    relpath, values, palette = FORMATS[self.format](name, pred, self.palette)
    save_png(os.path.join(self.dir, "submission", relpath), values, palette)
    self.count += 1
